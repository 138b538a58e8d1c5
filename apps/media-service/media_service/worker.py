"""One dubbed stream: input thread, output thread and the dubbing stage, on one media timeline.

Ownership: the worker owns two threads (ingest, output) and its dubbing stage (STS client and one
asyncio task per fragment, see dubbing.py); `stop()` ends them all and waits for them.

Flow:
  ingest thread  -> video packets into a queue; audio onto the timeline (AudioStore); 16 kHz copy
                    into the VAD segmenter; each closed speech segment goes to the dubbing stage.
  dubbing stage  -> (dubbing.py, event loop) sends the segment to the sts-service; places the dub
                    on the stream's DubTracks, or counts a fallback (the original plays) if it is
                    late or failed.
  output thread  -> at arrival + D, renders each 1024-sample frame (original mixed with the dubs
                    that cover it) and muxes the video packets that are due: constant delay, never
                    waiting for the STS side.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import av
import numpy as np

from .config import MediaConfig, StreamRequest
from .dubbing import Dubbing
from .events import EventLog
from .ingest import InputError, InputInfo, InputReader
from .metrics import MediaMetrics
from .mixer import DubTracks, Mode
from .output import FRAME, OutputError, OutputWriter
from .redaction import redact, redact_url
from .segmenter import SAMPLE_RATE as VAD_RATE
from .segmenter import Segment, SegmenterConfig, SpeechSegmenter
from .timeline import JUMP_S, RATE, AudioStore, Timeline

log = logging.getLogger(__name__)

INPUT_LINGER_S = 30.0  # a worker whose publisher is gone this long drains and stops
OUTPUT_OPEN_LEAD_S = 1.0  # outputs open this long before their first packet is due


@dataclass
class Counters:
    fragments_sent: int = 0
    fragments_processed: dict[str, int] = field(default_factory=lambda: {"ok": 0, "no_speech": 0, "failed": 0})
    fallbacks: dict[str, int] = field(default_factory=dict)
    dubs_placed: int = 0
    roundtrip_ms: deque = field(default_factory=lambda: deque(maxlen=500))
    input_sessions: int = 0
    timestamp_jumps: int = 0
    video_packets_in: int = 0
    video_packets_out: int = 0
    audio_frames_out: int = 0


@dataclass
class _VideoItem:
    packet: av.Packet
    arrival: float


class StreamWorker:
    def __init__(self, stream_id: str, request: StreamRequest, cfg: MediaConfig, metrics: MediaMetrics,
                 events: EventLog):
        self.id = stream_id
        self.request = request
        self.cfg = cfg
        self.metrics = metrics
        self.events = events
        self.delay_s = request.output_delay_s or cfg.output_delay_s
        self.mode = Mode(request.mix)
        self.duck_gain_db = request.duck_gain_db if request.duck_gain_db is not None else cfg.duck_gain_db
        self.state = "starting"
        self.state_reason = ""
        self.input_state = "connecting"
        self.input_warning = ""
        self.output_state = "waiting"
        self.started_at = time.time()
        self.counters = Counters()
        self.timeline = Timeline(RATE, tolerance_s=0.015)
        self.store = AudioStore(channels=2)
        self.tracks = DubTracks(request.target_languages)
        self.segmenter = SpeechSegmenter(SegmenterConfig(
            threshold=cfg.vad_threshold, min_silence_ms=cfg.min_silence_ms,
            max_fragment_ms=cfg.max_fragment_ms, padding_ms=cfg.speech_padding_ms,
            min_fragment_ms=cfg.min_fragment_ms))
        self._seg_resampler: av.AudioResampler | None = None
        self._video_q: deque[_VideoItem] = deque()
        self._video_lock = threading.Lock()
        self._info: InputInfo | None = None
        self._container = None  # the input container whose streams are the output templates
        self._io_lock = threading.Lock()
        self._video_shift_ticks = 0
        self._last_video_out_s: float | None = None  # latest ingested video time, output clock
        self._first_video_out_s: float | None = None
        self._new_session = False
        self.outputs: dict[str, OutputWriter] = {}
        # _ending: stop reading input (stop or drain); _drain: play out what is buffered first;
        # _stop: everything ends now.
        self._ending = threading.Event()
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._threads: list[threading.Thread] = []
        self._output_beat: float | None = None  # monotonic time of the output loop's last round
        self.av_offset_s = 0.0
        self.output_delay_measured_s = 0.0
        # The dubbing stage sets the segmenter's limits from D and the measured service time.
        self.dubbing = Dubbing(stream_id, request, cfg, self.delay_s, metrics=metrics, events=events,
                               counters=self.counters, store=self.store, tracks=self.tracks,
                               segmenter=self.segmenter, stop=self._stop)

    # ------------------------------------------------------------ lifecycle

    def _set_state(self, state: str, reason: str = "") -> None:
        if (state, reason) != (self.state, self.state_reason):
            self.state, self.state_reason = state, reason
            self.events.publish(self.id, "state", {"state": state, "reason": reason})
            log.info("stream %s: %s%s", self.id, state, f" ({reason})" if reason else "")

    async def start(self) -> None:
        self.metrics.set_sts_state(self.id, "disconnected")
        self.metrics.output_delay.labels(self.id).set(0)
        self.metrics.av_offset.labels(self.id).set(0)
        # Published first: the threads may report their own events at once.
        self.events.publish(self.id, "started", {"input_url": redact_url(self.request.input_url),
                                                 "targets": self.request.target_languages})
        self.dubbing.start()
        for name, target in (("ingest", self._ingest_main), ("output", self._output_main)):
            t = threading.Thread(target=self._guarded(name, target), name=f"{name}:{self.id}", daemon=True)
            t.start()
            self._threads.append(t)

    def _guarded(self, name: str, target):
        """Thread body: an unexpected error fails the stream with its reason (and the registry stops
        it) instead of killing the thread silently while the stream still says `running` and its
        queues grow."""
        def run() -> None:
            try:
                target()
            except Exception as exc:
                log.exception("stream %s: %s thread failed", self.id, name)
                self.fail(f"{name} thread failed: {type(exc).__name__}: {redact(str(exc))}")
        return run

    def fail(self, reason: str) -> None:
        """Mark the stream failed and end its threads; the registry's reaper then stops it."""
        if self.state in ("stopped", "failed"):
            return
        self._set_state("failed", reason)
        self.events.publish(self.id, "failed", {"reason": reason})
        self._ending.set()
        self._stop.set()

    def output_stalled_s(self) -> float:
        """How long the output thread has not come round its loop (0 when it is not running)."""
        if self.state in ("stopped", "failed", "ended") or self._output_beat is None:
            return 0.0
        return time.monotonic() - self._output_beat

    async def stop(self, drain: bool = True) -> None:
        """Stop reading; with `drain`, let the output play out what is buffered (<= D + 2 s)."""
        if drain:
            self._drain.set()
        else:
            self._stop.set()
        self._ending.set()
        loop = asyncio.get_running_loop()
        if drain:
            deadline = time.monotonic() + self.delay_s + 3.0
            for t in self._threads:
                await loop.run_in_executor(None, t.join, max(0.1, deadline - time.monotonic()))
        self._stop.set()
        # A thread blocked opening the input ends by itself (open timeout) and closes it then.
        for t in self._threads:
            await loop.run_in_executor(None, t.join, 2.0)
        if not any(t.is_alive() for t in self._threads):
            self._close_input()  # never under a thread that may still be reading it
        await self.dubbing.close()
        self.metrics.forget(self.id)
        self._set_state("stopped", self.state_reason if self.state in ("failed",) else "")
        self.events.publish(self.id, "stopped", self.snapshot()["counters"])

    def set_mode(self, mode: str) -> None:
        """Takes effect on the next rendered output frame (the output thread reads it per frame)."""
        self.mode = Mode(mode)
        self.events.publish(self.id, "mix", {"mix": self.mode.value})

    @property
    def done(self) -> bool:
        return self.state == "stopped"

    # ------------------------------------------------------------ ingest thread

    def _ingest_main(self) -> None:
        reader = InputReader(self.request.input_url, on_video=self._on_video, on_audio=self._on_audio,
                             stop=self._ending)
        gone_since = None
        started = time.monotonic()
        while not self._ending.is_set():
            sessions_before = self.counters.input_sessions
            try:
                self.input_state = "connecting"
                reason = reader.read_session(self._on_input_open)
                self.input_state = "ended"
            except InputError as exc:
                reason = str(exc)
                self.input_state = "error"
                if self.state in ("starting", "reconnecting_input"):
                    self._set_state("waiting_input" if self.counters.input_sessions == 0 else
                                    "reconnecting_input", reason)
            self.metrics.input_up.labels(self.id).set(0)
            self._flush_segments()
            if self._ending.is_set():
                break
            if self.counters.input_sessions and self.state == "running":
                self._set_state("reconnecting_input", reason)
                self.events.publish(self.id, "input_lost", {"reason": reason})
            waited = time.monotonic() - started
            if not self.counters.input_sessions and 0 < self.cfg.input_wait_timeout_s < waited:
                why = f"input never connected in {self.cfg.input_wait_timeout_s:g} s: {reason}"
                log.info("stream %s: %s", self.id, why)
                self.events.publish(self.id, "input_never_connected", {"reason": reason, "waited_s": round(waited, 1)})
                self._set_state("ended", why)  # the registry reaps ended workers
                self._ending.set()
                break
            if self.counters.input_sessions > sessions_before:
                gone_since = None  # it was back: the linger clock starts again
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > INPUT_LINGER_S and self.counters.input_sessions:
                log.info("stream %s: input gone for %.0fs, stopping", self.id, INPUT_LINGER_S)
                self._set_state("ended", f"input gone for {INPUT_LINGER_S:.0f}s")
                self._drain.set()
                self._ending.set()
                break
            self._ending.wait(self.cfg.input_retry_s)
        self.store.close()
        self._close_input()  # nothing reads it any more; outputs already made keep their own copy

    def _close_input(self) -> None:
        with self._io_lock:
            if self._container is not None:
                self._container.close()
                self._container = None

    def _on_input_open(self, info: InputInfo, container) -> None:
        with self._io_lock:
            # The previous session's container can go once nothing can make outputs from it.
            if self._container is not None:
                self._container.close()
            self._container, self._info = container, info
        self.counters.input_sessions += 1
        self._new_session = self.counters.input_sessions > 1
        self.input_state = "reading"
        self.metrics.input_up.labels(self.id).set(1)
        if info.audio is None:
            self.input_warning = "input has no audio track: video passes through, nothing to dub"
            self._set_state("running", self.input_warning)
        else:
            self.input_warning = ""
            self._set_state("running")
        if self._new_session:
            self.events.publish(self.id, "input_recovered", {"session": self.counters.input_sessions})
        self.events.publish(self.id, "input_open", {"video": info.video_codec, "audio": info.audio_codec,
                                                    "audio_rate": info.audio_rate})

    def _begin_session_at(self, pts_s: float) -> None:
        """First packet of a reconnected input: continue the output timestamps where they stopped."""
        self._new_session = False
        resume = max(self.timeline.to_out_seconds_of_index(self.timeline.end) if self.timeline.origin_s
                     is not None else 0.0, (self._last_video_out_s or 0.0) + 0.040)
        self.timeline.new_session(pts_s, resume)
        if self._info and self._info.video is not None:
            tb = self._info.video.time_base
            self._video_shift_ticks = int(round(self.timeline.shift_s / float(tb)))

    def _jumped(self, pts_s: float, kind: str) -> bool:
        """A timestamp jump beyond JUMP_S: continue as a new session (see timeline.JUMP_S).

        Audio is compared with the end of the timeline, video with the last video packet (a
        video-only stretch is not a jump)."""
        if self._new_session:
            return False
        if kind == "audio":
            if not self.timeline.is_jump(pts_s):
                return False
            jump = pts_s + self.timeline.shift_s - self.timeline.to_out_seconds_of_index(self.timeline.end)
        else:
            last = self._last_video_out_s
            out_s = pts_s + self.timeline.shift_s
            if last is None or abs(out_s - last) <= JUMP_S:
                return False
            jump = out_s - last
        self.counters.timestamp_jumps += 1
        log.warning("stream %s: input %s timestamps jumped %+.1f s: continuing as a new session",
                    self.id, kind, jump)
        self.events.publish(self.id, "timestamp_jump", {"kind": kind, "jump_s": round(jump, 3)})
        return True

    def _on_video(self, packet: av.Packet) -> None:
        if packet.pts is not None and self._jumped(float(packet.pts * packet.time_base), "video"):
            self._new_session = True
        if self._new_session and packet.pts is not None:
            self._begin_session_at(float(packet.pts * packet.time_base))
        if packet.pts is not None:
            out_s = float((packet.pts + self._video_shift_ticks) * packet.time_base)
            self._last_video_out_s = max(self._last_video_out_s or out_s, out_s)
            if self._first_video_out_s is None:
                self._first_video_out_s = out_s
        self.counters.video_packets_in += 1
        with self._video_lock:
            self._video_q.append(_VideoItem(packet, time.monotonic()))

    def _on_audio(self, samples: np.ndarray, pts_s: float) -> None:
        if self._jumped(pts_s, "audio"):
            self._new_session = True
        if self._new_session:
            self._begin_session_at(pts_s)
        placed = self.timeline.place(pts_s, len(samples))
        samples = samples[placed.dropped:]
        if placed.gap:
            # The store reads silence where nothing was written; the segmenter skips the hole
            # without analysing it (16 kHz index = 48 kHz / 3). Nothing the size of the gap is
            # allocated, however long the input's audio was away.
            self._feed_segmenter(np.zeros((placed.gap % 3, 2), np.float32))
            for seg in self.segmenter.skip(placed.gap // 3):
                self._dispatch(seg)
        self.store.write(placed.start, samples)
        self._feed_segmenter(samples)

    def _feed_segmenter(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        mono = samples.mean(axis=1).astype(np.float32)
        if self._seg_resampler is None:
            self._seg_resampler = av.AudioResampler(format="flt", layout="mono", rate=VAD_RATE)
        frame = av.AudioFrame.from_ndarray(mono[None, :], format="flt", layout="mono")
        frame.sample_rate = RATE
        parts = [f.to_ndarray()[0] for f in self._seg_resampler.resample(frame)]
        if parts:
            for seg in self.segmenter.feed(np.concatenate(parts)):
                self._dispatch(seg)

    def _flush_segments(self) -> None:
        for seg in self.segmenter.flush():
            self._dispatch(seg)

    def _dispatch(self, seg: Segment) -> None:
        self.dubbing.submit_threadsafe(seg)

    # ------------------------------------------------------------ output thread

    def _open_outputs(self) -> bool:
        ok = True
        for lang in self.request.target_languages:
            if lang in self.outputs:
                continue
            url = self.request.output_for(lang)
            try:
                with self._io_lock:
                    info = self._info
                    if self._container is None:
                        return False  # input closed (stopping): no template to build outputs from
                    self.outputs[lang] = OutputWriter(url, info.video if info else None,
                                                      audio=bool(info and info.audio is not None))
                self.events.publish(self.id, "output_open", {"language": lang, "url": url})
            except OutputError as exc:
                ok = False
                if self.output_state != "error":
                    log.warning("stream %s: %s", self.id, exc)
                self.output_state, self.state_reason = "error", str(exc)
        if ok:
            self.output_state = "writing"
            self.metrics.output_up.labels(self.id).set(1)
        return ok

    def _output_failed(self, lang: str, exc: Exception) -> None:
        log.warning("stream %s: output %s failed: %s", self.id, lang, exc)
        writer = self.outputs.pop(lang, None)
        if writer:
            writer.close()
        self.output_state = "error"
        self.metrics.output_up.labels(self.id).set(0)
        self.events.publish(self.id, "output_lost", {"language": lang, "error": str(exc)})

    def _output_main(self) -> None:
        next_index = 0
        last_open_try = 0.0
        try:
            while not self._stop.is_set():
                now = self._output_beat = time.monotonic()
                if self._info is None:
                    self._stop.wait(0.02)
                    continue
                if len(self.outputs) < len(self.tracks.languages) and now - last_open_try > 1.0 and self._anything_due(
                        next_index, now + OUTPUT_OPEN_LEAD_S):
                    # Opened just before there is something to write: RTMP servers drop idle
                    # publishers, and opening takes a moment (relay start, RTMP handshake).
                    last_open_try = now
                    self._open_outputs()
                wrote = False
                # Audio frames that are due.
                while self.store.end >= next_index + FRAME:
                    arrival = self.store.arrival_of(next_index + FRAME - 1)
                    if arrival is None or arrival + self.delay_s > now:
                        break
                    if not self._before_first_picture(next_index):
                        self._write_audio_frame(next_index)
                    self.output_delay_measured_s = time.monotonic() - arrival
                    next_index += FRAME
                    wrote = True
                # Video packets that are due.
                while True:
                    with self._video_lock:
                        if not self._video_q or self._video_q[0].arrival + self.delay_s > now:
                            break
                        item = self._video_q.popleft()
                    self._write_video(item.packet)
                    wrote = True
                if wrote:
                    self.metrics.output_delay.labels(self.id).set(self.output_delay_measured_s)
                    self.store.discard_before(next_index - RATE)
                    self.tracks.prune(next_index - RATE)
                elif self.input_state != "reading" and self._played_out(next_index, now):
                    # The input is gone and everything it gave has been played: finish the last
                    # partial audio frame and close the outputs, which flushes the muxers'
                    # interleaving queues (nothing is left behind). They reopen if it returns.
                    if self.store.end > next_index:
                        self._write_audio_frame(next_index)
                        next_index += FRAME  # the rest of this frame was silence-padded
                    if self.outputs:
                        self._close_outputs("input ended; everything buffered was played out")
                    if self._drain.is_set() and self.store.closed:
                        break
                self._stop.wait(self._idle_wait(next_index))
        finally:
            for writer in self.outputs.values():
                writer.close()
            self.outputs.clear()
            self.metrics.output_up.labels(self.id).set(0)
            self.output_state = "closed"

    def _idle_wait(self, next_index: int) -> float:
        """Sleep until the next audio frame or video packet is due, at most 20 ms (a frame that
        arrives meanwhile is due D later). Polling every 5 ms cost each stream 200 wake-ups a
        second, all contending for the GIL with the other streams."""
        now = time.monotonic()
        due = now + 0.02
        if self.store.end >= next_index + FRAME:
            arrival = self.store.arrival_of(next_index + FRAME - 1)
            if arrival is not None:
                due = min(due, arrival + self.delay_s)
        with self._video_lock:
            if self._video_q:
                due = min(due, self._video_q[0].arrival + self.delay_s)
        return max(0.001, due - now)

    def _before_first_picture(self, index: int) -> bool:
        """Audio that ends before the first video packet is not sent: a viewer joining a live
        stream gets picture and sound from the first keyframe on, not sound alone."""
        first = self._first_video_out_s
        if first is None or self.counters.video_packets_out:
            return False
        return self.timeline.to_out_seconds_of_index(index + FRAME) <= first

    def _played_out(self, next_index: int, now: float) -> bool:
        with self._video_lock:
            if self._video_q:
                return False
        if self.store.end >= next_index + FRAME:
            return False
        arrival = self.store.arrival_of(self.store.end - 1) if self.store.end > next_index else None
        return arrival is None or arrival + self.delay_s <= now

    def _close_outputs(self, reason: str) -> None:
        for lang, writer in list(self.outputs.items()):
            writer.close()
            self.events.publish(self.id, "output_closed", {"language": lang, "reason": reason})
        self.outputs.clear()
        self.output_state = "idle"
        self.metrics.output_up.labels(self.id).set(0)

    def _anything_due(self, next_index: int, now: float) -> bool:
        arrival = self.store.arrival_of(next_index + FRAME - 1) if self.store.end >= next_index + FRAME else None
        if arrival is not None and arrival + self.delay_s <= now:
            return True
        with self._video_lock:
            return bool(self._video_q) and self._video_q[0].arrival + self.delay_s <= now

    def _write_audio_frame(self, index: int) -> None:
        original = self.store.read(index, FRAME)
        mixes = self.tracks.render(index, FRAME, original, self.mode, self.duck_gain_db)
        pts = self.timeline.out_index_pts(index)
        for lang, mixed in mixes.items():
            writer = self.outputs.get(lang)
            if writer is None:
                continue
            try:
                writer.write_audio(mixed, pts)
                self.av_offset_s = writer.av_offset_s
            except OutputError as exc:
                self._output_failed(lang, exc)
        self.counters.audio_frames_out += 1
        self.metrics.av_offset.labels(self.id).set(self.av_offset_s)

    def _write_video(self, packet: av.Packet) -> None:
        for lang, writer in list(self.outputs.items()):
            copy = av.Packet(bytes(packet))
            copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
            copy.is_keyframe = packet.is_keyframe
            try:
                writer.write_video(copy, self._video_shift_ticks)
            except OutputError as exc:
                self._output_failed(lang, exc)
        self.counters.video_packets_out += 1

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict:
        c = self.counters
        rtt = np.asarray(c.roundtrip_ms) if c.roundtrip_ms else None
        return {
            "id": self.id,
            "state": self.state,
            "reason": self.state_reason,
            "input_url": redact_url(self.request.input_url),
            "outputs": {lang: redact_url(self.request.output_for(lang)) for lang in self.request.target_languages},
            "source_language": self.request.source_language,
            "target_languages": list(self.request.target_languages),
            "mix": self.mode.value,
            "duck_gain_db": self.duck_gain_db,
            "input": {"state": self.input_state, "sessions": c.input_sessions, "warning": self.input_warning,
                      "video_codec": self._info.video_codec if self._info else None,
                      "audio_codec": self._info.audio_codec if self._info else None},
            "output": {"state": self.output_state},
            "output_delay_s": self.delay_s,
            "output_delay_measured_s": round(self.output_delay_measured_s, 4),
            "av_offset_ms": round(self.av_offset_s * 1000.0, 3),
            "latency_ms": {"p50": float(np.percentile(rtt, 50)) if rtt is not None else None,
                           "p95": float(np.percentile(rtt, 95)) if rtt is not None else None},
            "counters": {"fragments_sent": c.fragments_sent, "fragments_processed": dict(c.fragments_processed),
                         "fallbacks": dict(c.fallbacks), "dubs_placed": c.dubs_placed,
                         "video_packets_in": c.video_packets_in, "video_packets_out": c.video_packets_out,
                         "audio_frames_out": c.audio_frames_out, "timestamp_jumps": c.timestamp_jumps,
                         "segments_dropped_short": self.segmenter.stats.dropped_short},
            "started_at": self.started_at,
            **self.dubbing.snapshot(),  # sts, fragment_limits, recent
        }
