"""One output: H.264 packets passed through as they came, mixed audio encoded to AAC 48 kHz.

Containers (`kind` of the planned output): FLV for rtmp (one audio track: one language); MPEG-TS
for srt and file, with one AAC track per language and the original, each tagged with its ISO
639-2 code (the PMT's ISO_639_language_descriptor); HLS (hls.py) builds on the same writer.

Timestamps: video keeps the input's (shifted only when a publisher reconnects, see Timeline);
audio frames carry their timeline position. FFmpeg's AAC encoder emits its first packet 1024
samples (the priming) before the first frame's pts, so a decoder that plays the priming from the
packet timestamp reaches the first real sample exactly at its timeline time: the priming is
compensated by the timestamps themselves, and `av_offset_s` checks that it stays so.

Where the bytes go (PyAV muxes into a file-like sink, never opens a URL itself):
- network outputs (rtmp://, rtmps://, srt://, udp://): a `Relay` (relay.py), a child process fed
  from a bounded queue by its own thread, so one slow destination never holds up the others;
- file outputs (file:// or a path): a new numbered `SegmentFile` (recording.py) per open, so a
  reopen after a reconnect or an error never truncates what was recorded.

Failures raise `OutputError` with a `kind`; the caller drops that output and opens it again later.
A destination that failed is not tried again before its `Backoff` allows (1 s doubling to 30 s):
`OutputWriter.retry_after(url)` says how long that is, and opening earlier raises at once,
without starting anything.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from fractions import Fraction
from typing import NoReturn

import av
import numpy as np

from ..audio.timeline import RATE as AUDIO_RATE  # AAC at the timeline rate: no resampling on the way out
from ..languages import iso639_2
from ..redaction import redact
from ..states import OutputState
from .recording import SegmentFile
from .relay import Relay, RelaySettings, RelayStartError

log = logging.getLogger(__name__)

FRAME = 1024  # AAC frame size
HEALTHY_S = 10.0  # an output that has written this long without failing resets its destination's backoff


class OutputError(RuntimeError):
    """An output could not be opened or written.

    `kind`: `open_failed`, `stalled` (the destination stopped taking data: relay killed),
    `relay_exited` (the relay child ended: refused, closed, timed out), `disk_full`, `write_failed`.
    `retry_in` > 0: the open was refused without trying because the destination failed recently;
    `kind` is then that failure's.
    """

    def __init__(self, message: str, kind: str = "write_failed", retry_in: float = 0.0):
        super().__init__(message)
        self.kind = kind
        self.retry_in = retry_in

    @property
    def state(self) -> OutputState:
        """The output state a snapshot should show for this error."""
        return OutputState.DISK_FULL if self.kind == "disk_full" else OutputState.ERROR


class Backoff:
    """When a failed destination may be tried again: 1 s after the first failure, doubling up to 30 s."""

    def __init__(self, first_s: float = 1.0, max_s: float = 30.0):
        self.first_s, self.max_s = first_s, max_s
        self.failures = 0
        self.next_try = 0.0  # monotonic time
        self.last_error: OutputError | None = None

    def remaining(self, now: float) -> float:
        return max(0.0, self.next_try - now)

    def failed(self, error: OutputError, now: float) -> float:
        """Record a failure; returns the delay before the next attempt."""
        delay = min(self.max_s, self.first_s * 2 ** self.failures)
        self.failures += 1
        self.next_try = now + delay
        self.last_error = error
        return delay


class _Backoffs:
    """Backoff per destination URL, shared by every writer of the process (a writer lives for one
    open; the destination's history outlives it). Only failing destinations have an entry."""

    FORGET_S = 600.0  # entries whose next attempt is this far in the past are dropped

    def __init__(self):
        self._lock = threading.Lock()
        self._by_url: dict[str, Backoff] = {}

    def get(self, url: str) -> Backoff | None:
        with self._lock:
            return self._by_url.get(url)

    def failed(self, url: str, error: OutputError) -> float:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, b in self._by_url.items() if now - b.next_try > self.FORGET_S]:
                del self._by_url[key]
            return self._by_url.setdefault(url, Backoff()).failed(error, now)

    def succeeded(self, url: str) -> None:
        with self._lock:
            self._by_url.pop(url, None)


BACKOFFS = _Backoffs()


def is_network_url(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


FORMAT_OF_KIND = {"rtmp": "flv", "srt": "mpegts", "file": "mpegts"}
SINK_OPTIONS = {"flv": {"flvflags": "no_duration_filesize"}, "mpegts": {}}


class _AudioTrack:
    """One AAC stream of an output and what `av_offset_s` needs of it."""

    def __init__(self, stream):
        self.stream = stream
        self.priming: int | None = None  # encoder delay in samples, learnt from the first packet
        self.av_offset_s = 0.0
        self.pending_pts: list[int] = []


class OutputWriter:
    """Muxes one planned output (one language, or several as tracks); see the module docstring.
    Used by one thread at a time."""

    def __init__(self, url: str, video_template: av.video.stream.VideoStream | None, *,
                 audio: bool = True, bit_rate: int = 128_000, relay_settings: RelaySettings | None = None,
                 kind: str = "rtmp", languages: tuple[str, ...] = ("",)):
        self.url = url
        self.kind = kind
        self.label = redact(url)  # what messages and logs show
        self.relay: Relay | None = None
        self.segment: SegmentFile | None = None
        self._failed: OutputError | None = None
        self._opened_at = time.monotonic()
        self._proven = False  # wrote for HEALTHY_S: the destination's backoff was reset
        backoff = BACKOFFS.get(url)
        wait = backoff.remaining(self._opened_at) if backoff else 0.0
        if wait > 0:
            last = backoff.last_error
            raise OutputError(f"{last} (next attempt in {wait:.1f} s)", kind=last.kind if last else "open_failed",
                              retry_in=wait)
        self.tracks: list[_AudioTrack] = []
        try:
            self.container = self._open_container(relay_settings)
            self.video = self.container.add_stream_from_template(video_template) if video_template else None
            for lang in languages if audio else ():
                # ffmpeg's default AAC search ("twoloop") costs over twice the "fast" coder for no
                # audible gain at 128 kb/s on broadcast speech (bench/README.md).
                stream = self.container.add_stream("aac", rate=AUDIO_RATE, layout="stereo",
                                                   options={"aac_coder": "fast"})
                stream.bit_rate = bit_rate
                if lang and self.kind != "rtmp":  # FLV has no per-track language
                    stream.metadata["language"] = iso639_2(lang)
                self.tracks.append(_AudioTrack(stream))
        except (OSError, RelayStartError, av.FFmpegError, ValueError) as exc:
            self._release_sinks()
            self._fail(_disk_full_or(exc, "open_failed"), f"cannot open output {self.label}: {exc}", exc)
        self.audio = self.tracks[0].stream if self.tracks else None
        self.packets = 0

    def _open_container(self, relay_settings: RelaySettings | None):
        fmt = FORMAT_OF_KIND[self.kind]
        if is_network_url(self.url):
            self.relay = Relay(self.url, relay_settings, fmt=fmt)
            sink = self.relay
        else:
            self.segment = SegmentFile(self.url[len("file://"):] if self.url.startswith("file://") else self.url)
            sink = self.segment
            log.info("output %s: writing %s", self.label, self.segment.path)
        return av.open(sink, mode="w", format=fmt, options=dict(SINK_OPTIONS[fmt]))

    @property
    def av_offset_s(self) -> float:
        """The largest |audio packet time - expected time| over the tracks, at the muxer's
        timestamp resolution (FLV: ms; MPEG-TS: 90 kHz)."""
        return max((t.av_offset_s for t in self.tracks), key=abs, default=0.0)

    @property
    def priming(self) -> int | None:
        return self.tracks[0].priming if self.tracks else None

    @staticmethod
    def retry_after(url: str) -> float:
        """Seconds before `url` may be opened again (0: now). Opening earlier raises `OutputError`."""
        backoff = BACKOFFS.get(url)
        return backoff.remaining(time.monotonic()) if backoff else 0.0

    @property
    def target(self) -> str:
        """Where the bytes go: the segment file written, or the (redacted) network URL."""
        return str(self.segment.path) if self.segment else self.label

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

    def write_audio(self, samples: np.ndarray, pts: int, track: int = 0) -> None:
        """Encode one frame of stereo float32 samples (n, 2) whose first sample is at `pts` / AUDIO_RATE s
        on audio track `track`."""
        if track >= len(self.tracks):
            return
        self._check()
        t = self.tracks[track]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, dtype=np.float32),
                                           format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = pts
        frame.time_base = Fraction(1, AUDIO_RATE)
        t.pending_pts.append(pts)
        for pkt in t.stream.encode(frame):
            self._audio_packet(t, pkt)

    def _audio_packet(self, t: _AudioTrack, pkt: av.Packet) -> None:
        expected_frame = t.pending_pts.pop(0) if t.pending_pts else None
        if t.priming is None and expected_frame is not None and pkt.pts is not None:
            t.priming = expected_frame - pkt.pts
            log.debug("AAC encoder priming: %d samples", t.priming)
        if expected_frame is not None and pkt.pts is not None and t.priming is not None:
            # Time the decoder gives this packet's first real sample, after the muxer's rounding
            # to its time base (FLV: ms; MPEG-TS: 90 kHz, exact for 48 kHz frames).
            tb = t.stream.time_base or Fraction(1, 1000)
            muxed = round(Fraction(pkt.pts, AUDIO_RATE) / tb) * tb
            presented = float(muxed) + t.priming / AUDIO_RATE
            t.av_offset_s = presented - expected_frame / AUDIO_RATE
        self._mux(pkt)

    def _mux(self, pkt: av.Packet) -> None:
        self._check()
        try:
            self.container.mux(pkt)
        except Exception as exc:  # the sink's OSError (ENOSPC, ...) or an av error
            self._check()  # a relay failure explains it better than the muxer's EPIPE/EIO
            self._fail(_disk_full_or(exc, "write_failed"), f"writing to {self.target} failed: {exc}", exc)
        self.packets += 1
        self._check()
        if not self._proven and time.monotonic() - self._opened_at >= HEALTHY_S:
            self._proven = True
            BACKOFFS.succeeded(self.url)

    def _check(self) -> None:
        """Raise the failure the sink has seen, if any (a relay fails on its own threads)."""
        if self._failed is not None:
            raise self._failed
        if self.relay is not None and self.relay.failure is not None:
            self._fail(self.relay.failure.kind, self.relay.failure.message)
        if self.segment is not None and self.segment.error is not None:
            exc = self.segment.error
            kind = "disk_full" if self.segment.disk_full else "write_failed"
            self._fail(kind, f"writing to {self.segment.path} failed: {exc}", exc)

    def _fail(self, kind: str, message: str, cause: BaseException | None = None) -> NoReturn:
        """Raise (and remember) this writer's failure; the destination's backoff grows once per writer."""
        if kind == "disk_full":
            message = f"disk full: {message}"
        error = OutputError(message, kind)
        self._failed = error
        delay = BACKOFFS.failed(self.url, error)
        log.debug("output %s failed (%s); next attempt in %.0f s", self.label, kind, delay)
        raise error from cause

    def _release_sinks(self) -> None:
        if self.relay is not None:
            if self._failed is not None:
                self.relay.kill()
            self.relay.close()
        if self.segment is not None:
            self.segment.close()

    def close(self) -> None:
        """Flush and close; bounded in time (a relay gets `close_timeout_s`, then is killed)."""
        if self._failed is None:
            try:
                for t in self.tracks:
                    for pkt in t.stream.encode(None):
                        self._audio_packet(t, pkt)
            except Exception as exc:  # closing a broken output must not raise past here
                log.debug("flushing %s: %s", self.label, exc)
        try:
            self.container.close()
        except Exception as exc:
            log.debug("closing %s: %s", self.label, exc)
        self._release_sinks()


def _disk_full_or(exc: BaseException, kind: str) -> str:
    return "disk_full" if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else kind
