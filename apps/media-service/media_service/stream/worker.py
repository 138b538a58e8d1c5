"""One dubbed stream: its lifecycle, its input sessions and its snapshot.

The work is done by three stages on one media timeline, each in its own module:
  capture   (capture.py, ingest thread)  video packets into a queue; audio onto the timeline and,
            at 16 kHz, into the VAD segmenter; each closed speech segment goes to dubbing.
  dubbing   (dubbing.py, event loop)     sends the segment to the sts-service; places the dub on
            the stream's DubTracks (mixer.py), or counts a fallback (the original plays).
  playout   (playout.py, output thread)  at arrival + D renders each audio frame and muxes the
            video that is due: constant delay, never waiting for the STS side.

Ownership: the worker owns the two threads (ingest, output) and the dubbing stage's tasks;
`stop()` ends them all and waits for them. The ingest thread's loop here decides what happens
between input sessions (retry, linger, give up).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np

from ..audio.mixer import DubTracks
from ..audio.timeline import RATE
from ..cluster import gate
from ..config import MediaConfig, PlannedOutput, StreamRequest
from ..events import EventLog
from ..media_io.captions import CaptionStore
from ..media_io.hls import HlsWriter, SubtitleRenditions
from ..media_io.ingest import BehindAlarm, InputError, InputInfo, InputReader
from ..media_io.output import OutputWriter
from ..metrics import MediaMetrics
from ..redaction import redact, redact_url
from ..states import InputState, Mode, OutputState, StreamState, StsState
from ..targets import HLS_SERVED, file_path
from ..thread_names import name_native_thread
from .capture import Capture
from .counters import Counters
from .dubbing import Dubbing
from .playout import Playout
from .sts_pool import StsPool

log = logging.getLogger(__name__)

INPUT_LINGER_S = 30.0  # a worker whose publisher is gone this long drains and stops
UNDECODABLE_EVENT_S = 10.0  # at most one input_undecodable event this often while corrupt packets come


class StreamWorker:
    def __init__(self, stream_id: str, request: StreamRequest, cfg: MediaConfig, metrics: MediaMetrics,
                 events: EventLog, sts_pool: StsPool | None = None, output_gate: Callable[[], bool] | None = None):
        self.id = stream_id
        # Cluster mode: whether this replica still holds the stream's lease (cluster/gate.py).
        self.output_gate = output_gate
        self.request = request
        self.cfg = cfg
        self.metrics = metrics
        self.events = events
        self.delay_s = request.output_delay_s or cfg.output_delay_s
        self.mode = Mode(request.mix)
        self.duck_gain_db = request.duck_gain_db if request.duck_gain_db is not None else cfg.duck_gain_db
        self.state = StreamState.STARTING
        self.state_reason = ""
        self.input_state = InputState.CONNECTING
        self.input_warning = ""
        self.input_lag_s = 0.0
        self._behind = BehindAlarm()  # input_behind / input_caught_up events
        self.started_at = time.time()
        self.counters = Counters()
        # _ending: stop reading input (stop or drain); _drain: play out what is buffered first;
        # _stop: everything ends now.
        self._ending = threading.Event()
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._threads: list[threading.Thread] = []
        self._container = None  # the input container whose streams are the output templates
        self._io_lock = threading.Lock()
        self.tracks = DubTracks(request.target_languages)
        # Timed text of every language on the output timeline (the API serves it; captions.py).
        self.captions = CaptionStore(request.source_language, list(request.target_languages), self.delay_s * 1000.0)
        self.dubbing = Dubbing(stream_id, request, cfg, self.delay_s, metrics=metrics, events=events,
                               counters=self.counters, tracks=self.tracks, stop=self._stop, captions=self.captions,
                               sts_pool=sts_pool)
        # The dubbing stage sets the segmenter's limits from D and the measured service time.
        self.capture = Capture(stream_id, cfg, events, self.counters, on_segment=self.dubbing.submit_threadsafe,
                               segment_limits=self.dubbing.segment_limits)
        # The stream's HLS output, if it has one: its directory (served by the API) and subtitles.
        self.hls_dir: str | None = None
        self._hls_temporary = False
        self._subtitles: SubtitleRenditions | None = None
        self.playout = Playout(stream_id, request, self.delay_s, store=self.capture.store, video=self.capture.video,
                               timeline=self.capture.timeline, tracks=self.tracks, metrics=metrics, events=events,
                               counters=self.counters, mix=lambda: (self.mode, self.duck_gain_db),
                               make_writer=self._make_writer,
                               input_reading=lambda: self.input_state == InputState.READING,
                               on_error=self._output_error, stop=self._stop, drain=self._drain)

    # ------------------------------------------------------------ lifecycle

    def _set_state(self, state: StreamState, reason: str = "") -> None:
        if (state, reason) != (self.state, self.state_reason):
            self.state, self.state_reason = state, reason
            self.events.publish(self.id, "state", {"state": state.value, "reason": reason})
            log.info("stream %s: %s%s", self.id, state, f" ({reason})" if reason else "")

    async def start(self) -> None:
        self.metrics.set_sts_state(self.id, StsState.DISCONNECTED)
        self.metrics.output_delay.labels(self.id).set(0)
        self.metrics.av_offset.labels(self.id).set(0)
        # Published first: the threads may report their own events at once.
        self.events.publish(self.id, "started", {"input_url": redact_url(self.request.input_url),
                                                 "targets": self.request.target_languages})
        self.dubbing.start()
        for name, target in (("ingest", self._ingest_main), ("output", self.playout.run)):
            t = threading.Thread(target=self._guarded(name, target), name=f"{name}:{self.id}", daemon=True)
            t.start()
            self._threads.append(t)

    def _guarded(self, name: str, target):
        """Thread body: an unexpected error fails the stream with its reason (and the registry stops
        it) instead of killing the thread silently while the stream still says `running` and its
        queues grow."""
        def run() -> None:
            name_native_thread()
            try:
                target()
            except Exception as exc:
                log.exception("stream %s: %s thread failed", self.id, name)
                self.fail(f"{name} thread failed: {type(exc).__name__}: {redact(str(exc))}")
        return run

    def fail(self, reason: str) -> None:
        """Mark the stream failed and end its threads; the registry's reaper then stops it."""
        if self.state in (StreamState.STOPPED, StreamState.FAILED):
            return
        self._set_state(StreamState.FAILED, reason)
        self.events.publish(self.id, "failed", {"reason": reason})
        self._ending.set()
        self._stop.set()

    def output_stalled_s(self) -> float:
        """How long the output thread has not come round its loop (0 when it is not running)."""
        beat = self.playout.beat
        if self.state in (StreamState.STOPPED, StreamState.FAILED, StreamState.ENDED) or beat is None:
            return 0.0
        return time.monotonic() - beat

    async def stop(self, drain: bool = True, drain_limit_s: float | None = None) -> None:
        """Stop reading; with `drain`, let the output play out what is buffered (<= D + 3 s, or
        `drain_limit_s` if that is shorter) and close the outputs cleanly."""
        if drain:
            self._drain.set()
        else:
            self._stop.set()
        self._ending.set()
        loop = asyncio.get_running_loop()
        if drain:
            deadline = time.monotonic() + min(self.delay_s + 3.0, drain_limit_s if drain_limit_s is not None
                                              else float("inf"))
            for t in self._threads:
                await loop.run_in_executor(None, t.join, max(0.1, deadline - time.monotonic()))
        self._stop.set()
        # A thread blocked opening the input ends by itself (open timeout) and closes it then.
        for t in self._threads:
            await loop.run_in_executor(None, t.join, 2.0)
        if not any(t.is_alive() for t in self._threads):
            self._close_input()  # never under a thread that may still be reading it
            self.capture.close()
        await self.dubbing.close()
        if self._hls_temporary and self.hls_dir and not any(t.is_alive() for t in self._threads):
            shutil.rmtree(self.hls_dir, ignore_errors=True)  # hls:// is served while the stream exists
        self.metrics.forget(self.id)
        self._set_state(StreamState.STOPPED, self.state_reason if self.state == StreamState.FAILED else "")
        self.events.publish(self.id, "stopped", self.snapshot()["counters"])

    def set_mode(self, mode: Mode | str) -> None:
        """Takes effect on the next rendered output frame (the output thread reads it per frame)."""
        self.mode = Mode(mode)
        self.events.publish(self.id, "mix", {"mix": self.mode.value})

    @property
    def done(self) -> bool:
        return self.state == StreamState.STOPPED

    # ------------------------------------------------------------ ingest thread

    def _ingest_main(self) -> None:
        reader = InputReader(self.request.input_url, on_video=self.capture.on_video, on_audio=self.capture.on_audio,
                             stop=self._ending, on_audio_format=self._on_audio_format,
                             on_undecodable=self._on_undecodable, on_lag=self._on_input_lag)
        gone_since = None
        started = time.monotonic()
        while not self._ending.is_set():
            sessions_before = self.counters.input_sessions
            try:
                self.input_state = InputState.CONNECTING
                reason = reader.read_session(self._on_input_open)
                self.input_state = InputState.ENDED
            except InputError as exc:
                reason = str(exc)
                self.input_state = InputState.ERROR
                if self.state in (StreamState.STARTING, StreamState.RECONNECTING_INPUT):
                    self._set_state(StreamState.WAITING_INPUT if self.counters.input_sessions == 0 else
                                    StreamState.RECONNECTING_INPUT, reason)
            self.metrics.input_up.labels(self.id).set(0)
            self.capture.flush_segments()
            if self._ending.is_set():
                break
            if self.counters.input_sessions and self.state == StreamState.RUNNING:
                self._set_state(StreamState.RECONNECTING_INPUT, reason)
                self.events.publish(self.id, "input_lost", {"reason": reason})
            waited = time.monotonic() - started
            if not self.counters.input_sessions and 0 < self.cfg.input_wait_timeout_s < waited:
                why = f"input never connected in {self.cfg.input_wait_timeout_s:g} s: {reason}"
                log.info("stream %s: %s", self.id, why)
                self.events.publish(self.id, "input_never_connected", {"reason": reason, "waited_s": round(waited, 1)})
                self._set_state(StreamState.ENDED, why)  # the registry reaps ended workers
                self._ending.set()
                break
            if self.counters.input_sessions > sessions_before:
                gone_since = None  # it was back: the linger clock starts again
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > INPUT_LINGER_S and self.counters.input_sessions:
                log.info("stream %s: input gone for %.0fs, stopping", self.id, INPUT_LINGER_S)
                self._set_state(StreamState.ENDED, f"input gone for {INPUT_LINGER_S:.0f}s")
                self._drain.set()
                self._ending.set()
                break
            self._ending.wait(self.cfg.input_retry_s)
        self.capture.store.close()
        self._close_input()  # nothing reads it any more; outputs already made keep their own copy

    def _close_input(self) -> None:
        with self._io_lock:
            if self._container is not None:
                self._container.close()
                self._container = None

    def _on_input_open(self, info: InputInfo, container) -> None:
        resumed = self.counters.input_sessions > 0
        with self._io_lock:
            # The previous session's container can go once nothing can make outputs from it.
            if self._container is not None:
                self._container.close()
            self._container = container
            self.capture.input_opened(info, resumed)
        self.counters.input_sessions += 1
        self.input_state = InputState.READING
        self.metrics.input_up.labels(self.id).set(1)
        if info.audio is None:
            self.input_warning = "input has no audio track: video passes through, nothing to dub"
            self._set_state(StreamState.RUNNING, self.input_warning)
        else:
            self.input_warning = ""
            self._set_state(StreamState.RUNNING)
        if resumed:
            self.events.publish(self.id, "input_recovered", {"session": self.counters.input_sessions})
        self.events.publish(self.id, "input_open", {"video": info.video_codec, "audio": info.audio_codec,
                                                    "audio_rate": info.audio_rate})

    def _on_input_lag(self, lag_s: float) -> None:
        self.input_lag_s = lag_s
        self.metrics.input_lag.labels(self.id).set(lag_s)
        change = self._behind.update(lag_s)
        if change == "behind":
            log.warning("stream %s: reading is %.1f s behind the live input; the output plays that much later "
                        "than D (the host cannot keep up: fewer streams per media-service)", self.id, lag_s)
            self.events.publish(self.id, "input_behind", {"lag_s": round(lag_s, 3)})
        elif change == "caught_up":
            log.info("stream %s: reading caught up with the live input (it was up to %.1f s behind)",
                     self.id, self._behind.worst_s)
            self.events.publish(self.id, "input_caught_up", {"lag_s": round(lag_s, 3),
                                                             "max_lag_s": round(self._behind.worst_s, 3)})

    def _on_audio_format(self, rate: int, channels: int) -> None:
        self.events.publish(self.id, "input_audio_changed", {"audio_rate": rate, "channels": channels})

    def _on_undecodable(self, error: str) -> None:
        """An audio packet skipped as corrupt: counted; an event for the first of each input
        session, then at most one every UNDECODABLE_EVENT_S while they keep coming."""
        c = self.counters
        c.audio_packets_undecodable += 1
        self.metrics.input_undecodable.labels(self.id).inc()
        now = time.monotonic()
        if c.undecodable_session != c.input_sessions or now - c.undecodable_event_at >= UNDECODABLE_EVENT_S:
            c.undecodable_session, c.undecodable_event_at = c.input_sessions, now
            self.events.publish(self.id, "input_undecodable", {"count": c.audio_packets_undecodable, "error": error})

    # ------------------------------------------------------------ what playout needs of the input

    def _make_writer(self, out: PlannedOutput) -> OutputWriter | None:
        """An output whose streams are copied from the current input's (None once it is closed)."""
        if self.output_gate is not None and not self.output_gate():
            raise gate.refused()
        with self._io_lock:  # the input container must not close while its streams are copied
            info = self.capture.info
            if self._container is None:
                return None
            video, audio = (info.video if info else None), bool(info and info.audio is not None)
            if out.kind == "hls":
                writer = HlsWriter(out, self._hls_directory(out), video, audio=audio,
                                   subtitles=self._hls_subtitles(out))
            else:
                writer = OutputWriter(out.url, video, audio=audio, kind=out.kind,
                                      languages=tuple(t.language for t in out.tracks))
        return writer if self.output_gate is None else gate.GatedWriter(writer, self.output_gate)

    def _hls_directory(self, out: PlannedOutput) -> str:
        if self.hls_dir is None:
            if out.url == HLS_SERVED:
                self.hls_dir, self._hls_temporary = tempfile.mkdtemp(prefix=f"livedub-hls-{self.id}-"), True
            else:
                self.hls_dir = os.path.realpath(file_path(out.url))  # checked under --media-root at start
        return self.hls_dir

    def _hls_subtitles(self, out: PlannedOutput) -> SubtitleRenditions:
        if self._subtitles is None:
            langs = list(dict.fromkeys(t.language for t in out.tracks if self.captions.track(t.language) is not None))
            origin_ms = lambda: (self.capture.timeline.origin_s or 0.0) * 1000.0  # noqa: E731
            self._subtitles = SubtitleRenditions(self._hls_directory(out), langs, self.captions,
                                                 cue_offset_ms=lambda: origin_ms() - self.delay_s * 1000.0)
        return self._subtitles

    def output_clock(self) -> tuple[float, bool]:
        """Where the output is on the output timeline (the caption cues' clock): the position being
        played + D (ms), and whether it is playing (audio written within the last half second;
        before the first frame, and once an ended input is played out, it stands still)."""
        at = self.playout.position_at
        playing = at is not None and time.monotonic() - at < 0.5 and self.playout.state == OutputState.WRITING
        return self.playout.position * 1000.0 / RATE + self.delay_s * 1000.0, playing

    def _output_error(self, message: str) -> None:
        self.state_reason = message

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict:
        c, info = self.counters, self.capture.info
        rtt = np.asarray(c.roundtrip_ms) if c.roundtrip_ms else None
        return {
            "id": self.id,
            "state": StreamState(self.state).value,
            "reason": self.state_reason,
            "input_url": redact_url(self.request.input_url),
            "outputs": {out.key: redact_url(out.url) for out in self.playout.plan},
            "source_language": self.request.source_language,
            "target_languages": list(self.request.target_languages),
            "mix": self.mode.value,
            "duck_gain_db": self.duck_gain_db,
            "input": {"state": self.input_state.value, "sessions": c.input_sessions, "warning": self.input_warning,
                      "lag_s": round(self.input_lag_s, 3),
                      "video_codec": info.video_codec if info else None,
                      "audio_codec": info.audio_codec if info else None},
            "output": {"state": self.playout.state.value},
            "output_delay_s": self.delay_s,
            "output_delay_measured_s": round(self.playout.output_delay_measured_s, 4),
            "av_offset_ms": round(self.playout.av_offset_s * 1000.0, 3),
            "loudness_lufs": self.playout.loudness_lufs,
            "latency_ms": {"p50": float(np.percentile(rtt, 50)) if rtt is not None else None,
                           "p95": float(np.percentile(rtt, 95)) if rtt is not None else None},
            "counters": {"fragments_sent": c.fragments_sent, "fragments_processed": dict(c.fragments_processed),
                         "fallbacks": dict(c.fallbacks), "dubs_placed": c.dubs_placed,
                         "late_starts": c.late_starts,
                         "video_packets_in": c.video_packets_in, "video_packets_out": c.video_packets_out,
                         "audio_frames_out": c.audio_frames_out, "timestamp_jumps": c.timestamp_jumps,
                         "audio_packets_undecodable": c.audio_packets_undecodable,
                         "segments_dropped_short": self.capture.segmenter.stats.dropped_short},
            "started_at": self.started_at,
            "captions": self.captions.snapshot(),
            **({"hls": {"master": f"/v1/streams/{self.id}/hls/master.m3u8"}} if self.request.has_hls() else {}),
            **self.dubbing.snapshot(),  # sts, fragment_limits, recent
        }
