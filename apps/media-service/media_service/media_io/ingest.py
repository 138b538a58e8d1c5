"""Reading the input with PyAV: video packets as they are, audio decoded once to 48 kHz stereo.

Runs in its own thread (PyAV I/O blocks). One call of `read_session()` is one connection to the
input; the worker calls it again when the publisher drops and comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from ..audio.timeline import RATE
from ..redaction import redact, redact_url
from ..targets import file_path, protocol_whitelist

log = logging.getLogger(__name__)

# The reader takes what has arrived in bursts, not packet by packet: code that runs right after a
# sleep runs from cold caches, so every wake-up costs, and the playout writes in rounds of the same
# size. A packet taken from a burst is dated when it arrived, not when it was taken (ArrivalClock),
# so it still plays D after its arrival. Measurements: bench/README.md, "Measurements behind the code".
BURST_S = 0.1
CAUGHT_UP_S = 0.002  # a read that took longer waited for the source: nothing more is buffered
# ... unless the reader is this far behind the live source (IngestLag): then the read waited for the
# GIL or a core with data buffered. Behind, the reader takes CATCH_UP_CHUNK_S of stream time, then
# yields CATCH_UP_WAIT_S, so it reads several times faster than real time and still lets the playout
# threads run (reading flat out starves them until the RTMP server drops the outputs as idle). A
# yield after every slow read would cap the reader below a 720p30 stream's packet rate whenever
# contention makes every read slow (tests/unit/test_arrival_clock.py simulates it).
CATCH_UP_S = 0.25
CATCH_UP_CHUNK_S = 0.2
CATCH_UP_WAIT_S = 0.02
LAG_REPORT_S = 0.5  # how often the reader reports how far behind the live source it is
TIMELINE_FORMAT = ("fltp", "stereo", RATE)  # decoded AAC in this format is used as it is


def burst_pause(read_s: float, behind_s: float, chunk_s: float = 0.0) -> float:
    """How long the reader sleeps after a read that took `read_s`, `behind_s` behind the source,
    `chunk_s` of stream time after the packet it last paused at.

    Caught up, a read that waited for the source (longer than CAUGHT_UP_S): sleep a burst, so the
    next packets gather in the socket and are taken together; a quick read: keep reading. Behind
    the source, how long a read took says nothing (it waited for the GIL or a core, not for data):
    yield briefly once per CATCH_UP_CHUNK_S of stream time read, else keep reading.
    """
    if behind_s >= CATCH_UP_S:
        return CATCH_UP_WAIT_S if chunk_s >= CATCH_UP_CHUNK_S else 0.0
    return BURST_S if read_s > CAUGHT_UP_S else 0.0


class ArrivalClock:
    """When a packet taken from a burst really arrived (monotonic seconds).

    The output plays each packet D after it arrived, and a dub's deadline is counted from the
    same moment, so a packet stamped when the burst was taken would play up to BURST_S late. A
    live source delivers in real time: a packet `d` seconds of stream time after the last one seen
    arriving (a read that waited for it) arrived about `d` after it. Never later than now, never
    more than ``max_lag_s`` before it (a timestamp jump backwards cannot date a packet far back).
    """

    def __init__(self, max_lag_s: float = BURST_S + 0.05):
        self.max_lag_s = max_lag_s
        self._wall: float | None = None
        self._ts: float | None = None

    def saw_arrive(self, ts: float | None, wall: float) -> None:
        if ts is not None:
            self._wall, self._ts = wall, ts

    def arrival(self, ts: float | None, now: float) -> float:
        if ts is None or self._wall is None or self._ts is None:
            return now
        return max(now - self.max_lag_s, min(now, self._wall + max(0.0, ts - self._ts)))


class IngestLag:
    """How far the reading has fallen behind a live source (seconds; ~0 while it keeps up).

    A live source sends in real time, so wall time minus stream time stays about constant while
    the reader keeps up; when it cannot (a starved thread), every packet is read later than the
    one before and the difference grows. The lag is that difference above its smallest value in
    the session. The output delay and the dubs' deadlines count from when a packet was read, so
    this is the part of the glass-to-glass delay the service cannot see otherwise. Stream time
    going back by more than ``jump_s`` (a timestamp jump, not a stall) starts a new reference.
    """

    def __init__(self, jump_s: float = 1.0):
        self.jump_s = jump_s
        self._best: float | None = None
        self._last_ts: float | None = None
        self.lag_s = 0.0

    def update(self, ts: float | None, now: float) -> float:
        if ts is None:
            return self.lag_s
        offset = now - ts
        if self._best is None or offset < self._best or (self._last_ts is not None and
                                                           ts < self._last_ts - self.jump_s):
            self._best = offset
        self._last_ts = ts
        self.lag_s = offset - self._best
        return self.lag_s


class BehindAlarm:
    """When a stream's reading is falling behind the live input, and when it has caught up again.

    A reader that falls behind is a host that cannot keep up (the media-service at a core, or the
    machine saturated): nothing is lost, but glass to glass grows by the lag. That deserves one
    line in the log and one event when it starts, and one when it ends, not one per report.
    Hysteresis keeps a lag wavering around the threshold from raising it again and again.
    """

    def __init__(self, raise_s: float = 1.0, clear_s: float = 0.5):
        self.raise_s, self.clear_s = raise_s, clear_s
        self.behind = False
        self.worst_s = 0.0  # the largest lag of the current (or last) episode

    def update(self, lag_s: float) -> str | None:
        """`"behind"` when the lag first passes `raise_s`, `"caught_up"` when it is back under
        `clear_s`, else None."""
        if self.behind:
            self.worst_s = max(self.worst_s, lag_s)
            if lag_s < self.clear_s:
                self.behind = False
                return "caught_up"
        elif lag_s >= self.raise_s:
            self.behind, self.worst_s = True, lag_s
            return "behind"
        return None


def _stream_time(packet: av.Packet) -> float | None:
    """The packet's place in send order (RTMP/FLV timestamps are decode timestamps)."""
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base is not None else None


class InputError(RuntimeError):
    """The input cannot be read; the message says why (and is shown in the stream's state)."""


@dataclass
class InputInfo:
    video: av.video.stream.VideoStream | None
    audio: av.audio.stream.AudioStream | None
    video_codec: str | None
    audio_codec: str | None
    audio_rate: int | None


def _is_live(url: str) -> bool:
    return url.startswith(("rtmp://", "rtmps://", "srt://", "udp://", "rtsp://"))


def open_input(url: str, timeout_s: float = 5.0) -> av.container.InputContainer:
    # The whitelist keeps libavformat to the URL's own protocol (no http/gopher/unix behind a file://).
    options = {"protocol_whitelist": protocol_whitelist(url)}
    if _is_live(url):
        options["rw_timeout"] = str(int(timeout_s * 1e6))
    path = file_path(url)
    try:
        return av.open(path, mode="r", options=options, timeout=(timeout_s, timeout_s))
    except av.error.ArgumentError as exc:
        raise InputError(f"cannot open input {redact_url(url)}: protocol not allowed or bad URL") from exc
    except av.error.FileNotFoundError as exc:
        raise InputError(f"input {redact_url(url)} not found") from exc
    except (av.error.ConnectionRefusedError, av.error.ConnectionResetError) as exc:
        raise InputError(f"input {redact_url(url)}: connection refused (is the RTMP server up and the stream published?)") \
            from exc
    except av.error.OSError as exc:
        raise InputError(f"cannot open input {redact_url(url)}: nothing is published there or the server refused it "
                         f"({exc.strerror or exc})") from exc
    except Exception as exc:
        raise InputError(f"cannot open input {redact_url(url)}: {redact(str(exc))}") from exc


def describe(container: av.container.InputContainer) -> InputInfo:
    video = next((s for s in container.streams.video), None)
    audio = next((s for s in container.streams.audio), None)
    if video is not None and video.codec_context.name != "h264":
        log.warning("input video codec is %s: passed through, but FLV/RTMP players expect H.264",
                    video.codec_context.name)
    return InputInfo(video, audio, video.codec_context.name if video else None,
                     audio.codec_context.name if audio else None,
                     audio.codec_context.sample_rate if audio else None)


class InputReader:
    """Demuxes one input session and hands packets/audio to callbacks, in input order."""

    def __init__(self, url: str, *, on_video: Callable[[av.Packet, float], None],
                 on_audio: Callable[[np.ndarray, float, float], None], stop: threading.Event,
                 realtime: bool | None = None, on_audio_format: Callable[[int, int], None] | None = None,
                 on_undecodable: Callable[[str], None] | None = None,
                 on_lag: Callable[[float], None] | None = None):
        self.url = url
        self.on_video = on_video
        self.on_audio = on_audio
        self.on_audio_format = on_audio_format  # (sample rate, channels) when the input's audio changes
        self.on_undecodable = on_undecodable  # (error) for each audio packet skipped as undecodable
        self.on_lag = on_lag  # (seconds behind the live source: IngestLag), about twice a second
        self.stop = stop
        # Files are paced like a live source so that the output delay means the same thing.
        self.realtime = (not _is_live(url)) if realtime is None else realtime

    def _emit(self, frames, pts_s: float, arrival: float) -> float:
        """Hand resampled frames on, laid end to end from `pts_s`; returns the time after them."""
        for out in frames:
            samples = out.to_ndarray().reshape(-1, 2)
            self.on_audio(samples, pts_s, arrival)
            pts_s += len(samples) / RATE
        return pts_s

    def read_session(self, on_open: Callable[[InputInfo, av.container.InputContainer], None]) -> str:
        """Read until the input ends or `stop` is set; returns why it ended.

        The container is handed to `on_open` and not closed here: outputs are created from its
        video stream (a template), so its owner closes it when it is no longer needed.
        """
        container = open_input(self.url)
        try:
            info = describe(container)
            if info.video is None and info.audio is None:
                raise InputError(f"input {redact_url(self.url)} has neither video nor audio")
            on_open(info, container)
            streams = [s for s in (info.video, info.audio) if s is not None]
            resampler, setup, next_pts = None, None, 0.0
            undecodable = 0
            t_wall0 = pts0 = None
            clock, lag, lag_told = ArrivalClock(), IngestLag(), 0.0
            paused_ts: float | None = None  # stream time of the packet the reader last paused at
            packets = container.demux(streams)
            while True:
                asked = time.monotonic()
                packet = next(packets, None)
                got = time.monotonic()
                if packet is None:
                    break
                if self.stop.is_set():
                    return "stopped"
                ts = _stream_time(packet)
                behind = 0.0 if self.realtime else lag.update(ts, got)
                chunk = 0.0 if ts is None or paused_ts is None else ts - paused_ts
                pause = 0.0 if self.realtime else burst_pause(got - asked, behind, chunk)
                if pause == BURST_S:  # caught up: this packet arrived just now
                    clock.saw_arrive(ts, got)
                if pause or paused_ts is None or chunk < 0:  # (a timestamp jump back restarts the chunk)
                    paused_ts = ts
                if pause:
                    self.stop.wait(pause)
                if packet.dts is None and packet.size == 0:
                    continue
                if self.realtime and packet.pts is not None and packet.time_base is not None:
                    t = float(packet.pts * packet.time_base)
                    if t_wall0 is None:
                        t_wall0, pts0 = time.monotonic(), t
                    ahead = (t - pts0) - (time.monotonic() - t_wall0)
                    if ahead > BURST_S:  # paced in bursts too (a file is a stand-in for a live source)
                        self.stop.wait(ahead)
                taken = time.monotonic()
                arrival = taken if self.realtime else clock.arrival(ts, taken)
                if not self.realtime and self.on_lag is not None and taken - lag_told >= LAG_REPORT_S:
                    lag_told = taken
                    self.on_lag(behind)
                if packet.stream.type == "video":
                    self.on_video(packet, arrival)
                elif packet.stream.type == "audio":
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as exc:  # a corrupt packet: skipped, the session goes on
                        undecodable += 1
                        if undecodable == 1:  # one line per session, not one per packet of a bad input
                            log.warning("undecodable audio packet skipped: %s", exc)
                        if self.on_undecodable is not None:
                            self.on_undecodable(redact(str(exc)))
                        continue
                    for frame in frames:
                        if frame.pts is None:
                            continue
                        # An encoder may change its audio settings mid-publish (a new AAC sequence
                        # header): a resampler is built for one input format, so a new one takes
                        # over, after what the old one still held is passed on.
                        now = (frame.format.name, frame.layout.name, frame.sample_rate)
                        if now != setup:
                            if setup is not None:
                                log.info("input audio changed: %s Hz %s -> %s Hz %s", setup[2], setup[1],
                                         now[2], now[1])
                                if resampler is not None:
                                    next_pts = self._emit(resampler.resample(None), next_pts, arrival)
                                if self.on_audio_format is not None:
                                    self.on_audio_format(frame.sample_rate, len(frame.layout.channels))
                            # The usual AAC input is already the timeline's format: no resampler.
                            resampler = (None if now == TIMELINE_FORMAT
                                         else av.AudioResampler(format="flt", layout="stereo", rate=RATE))
                            setup = now
                        pts_s = float(frame.pts * frame.time_base)
                        if resampler is None:
                            samples = np.ascontiguousarray(frame.to_ndarray().T)  # planar -> (n, 2)
                            self.on_audio(samples, pts_s, arrival)
                            next_pts = pts_s + len(samples) / RATE
                        else:
                            next_pts = self._emit(resampler.resample(frame), pts_s, arrival)
            return "ended"
        except av.error.EOFError:
            return "ended"
        except InputError:
            raise
        except Exception as exc:
            if self.stop.is_set():
                return "stopped"
            return f"read error: {redact(str(exc))}"
