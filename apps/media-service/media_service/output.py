"""One output: H.264 packets passed through as they came, mixed audio encoded to AAC 48 kHz, FLV.

Timestamps: video keeps the input's (shifted only when a publisher reconnects, see Timeline);
audio frames carry their timeline position. FFmpeg's AAC encoder emits its first packet 1024
samples (the priming) before the first frame's pts, so a decoder that plays the priming from the
packet timestamp reaches the first real sample exactly at its timeline time: the priming is
compensated by the timestamps themselves, and `av_offset_s` checks that it stays so.

Network outputs (rtmp://, srt://) are muxed here, by PyAV, into a pipe to an `ffmpeg -c copy`
relay that does the network part. PyAV holds the GIL while it opens an RTMP publish and while
it writes to the socket: a slow server would freeze every thread of the service, and nginx-rtmp's
`on_publish` hook (answered by this same process) would deadlock the publish handshake. The relay
only copies packets: payloads and timestamps are the ones muxed here.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
FRAME = 1024  # AAC frame size


class OutputError(RuntimeError):
    pass


class OutputWriter:
    def __init__(self, url: str, video_template: av.video.stream.VideoStream | None, *,
                 audio: bool = True, bit_rate: int = 128_000):
        self.url = url
        self.relay: subprocess.Popen | None = None
        target = url
        if "://" in url and not url.startswith("file://"):
            self.relay = _start_relay(url)
            target = self.relay.stdin
        elif url.startswith("file://"):
            target = url[len("file://"):]
        try:
            self.container = av.open(target, mode="w", format="flv",
                                     options={"flvflags": "no_duration_filesize"})
        except Exception as exc:  # av.error.* subclasses: bad path, ...
            self._stop_relay()
            raise OutputError(f"cannot open output {url}: {exc}") from exc
        self.video = self.container.add_stream_from_template(video_template) if video_template else None
        self.audio = None
        if audio:
            self.audio = self.container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            self.audio.bit_rate = bit_rate
        self.priming = None  # encoder delay in samples, learnt from the first packet
        self.av_offset_s = 0.0  # |audio packet time - expected time| at the muxer, after ms rounding
        self.packets = 0
        self._pending_frame_pts: list[int] = []

    def write_video(self, packet: av.Packet, pts_shift: int) -> None:
        """Mux one input video packet unchanged (payload and flags), shifted by `pts_shift` ticks."""
        if self.video is None:
            return
        if packet.pts is not None:
            packet.pts += pts_shift
        if packet.dts is not None:
            packet.dts += pts_shift
        packet.stream = self.video
        self._mux(packet)

    def write_audio(self, samples: np.ndarray, pts: int) -> None:
        """Encode one frame of stereo float32 samples (n, 2) whose first sample is at `pts`/48000 s."""
        if self.audio is None:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, dtype=np.float32),
                                           format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = pts
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._pending_frame_pts.append(pts)
        for pkt in self.audio.encode(frame):
            self._audio_packet(pkt)

    def _audio_packet(self, pkt: av.Packet) -> None:
        expected_frame = self._pending_frame_pts.pop(0) if self._pending_frame_pts else None
        if self.priming is None and expected_frame is not None and pkt.pts is not None:
            self.priming = expected_frame - pkt.pts
            log.debug("AAC encoder priming: %d samples", self.priming)
        if expected_frame is not None and pkt.pts is not None and self.priming is not None:
            # Time the decoder gives this packet's first real sample, after FLV's ms rounding.
            muxed_ms = round(pkt.pts * 1000 / AUDIO_RATE)
            presented = muxed_ms / 1000 + self.priming / AUDIO_RATE
            self.av_offset_s = presented - expected_frame / AUDIO_RATE
        self._mux(pkt)

    def _mux(self, pkt: av.Packet) -> None:
        if self.relay is not None and self.relay.poll() is not None:
            raise OutputError(f"relay to {self.url} exited ({self.relay.returncode}): {_tail(self.relay)}")
        try:
            self.container.mux(pkt)
            self.packets += 1
        except Exception as exc:
            raise OutputError(f"writing to {self.url} failed: {exc}") from exc

    def _stop_relay(self) -> None:
        if self.relay is None:
            return
        try:
            self.relay.stdin.close()
        except OSError:
            pass
        try:
            self.relay.wait(5)
        except subprocess.TimeoutExpired:
            self.relay.kill()
            self.relay.wait()

    def close(self) -> None:
        try:
            if self.audio is not None:
                for pkt in self.audio.encode(None):
                    self._audio_packet(pkt)
        except Exception as exc:  # closing a broken output must not raise past here
            log.debug("flushing %s: %s", self.url, exc)
        try:
            self.container.close()
        except Exception as exc:
            log.debug("closing %s: %s", self.url, exc)
        self._stop_relay()


def _start_relay(url: str) -> subprocess.Popen:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise OutputError("ffmpeg not found (needed to publish to network outputs): install Debian 'ffmpeg'")
    cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "flv", "-i", "pipe:0",
           "-map", "0", "-c", "copy", "-copyts", "-f", "flv", url]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            bufsize=0)


def _tail(proc: subprocess.Popen) -> str:
    try:
        return proc.stderr.read(2000).decode(errors="replace").strip() if proc.stderr else ""
    except Exception:
        return ""
