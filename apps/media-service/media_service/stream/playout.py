"""The playout stage: what the output thread does, at a constant delay D behind the input.

Each 1024-sample audio frame is due D after its last sample arrived, each video packet D after it
arrived. A due frame is rendered (the original mixed with the dubs that cover it, per language,
see `mixer.DubTracks`) and written to every output of the request's plan (`output_plan()`: one
FLV per language for rtmp, one multi-track stream for hls/srt/file, each track a language's mix
or the original) with the video packets that are due; nothing here ever waits for the STS side.
Outputs open just before something is due, close
(flushing their muxers) once an ended input is played out, and reopen when it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import av

from ..audio.loudness import ProgrammeLoudness
from ..audio.mixer import DubTracks
from ..audio.timeline import RATE, AudioStore, Timeline
from ..config import PlannedOutput, StreamRequest
from ..events import EventLog
from ..media_io.output import FRAME, OutputError, OutputWriter
from ..metrics import MediaMetrics
from ..redaction import redact, redact_url
from ..states import Mode, OutputState
from .budget import BATCH_S
from .capture import VideoQueue
from .counters import Counters

log = logging.getLogger(__name__)

OUTPUT_OPEN_LEAD_S = 1.0  # outputs open this long before their first packet is due
OUTPUT_REOPEN_S = 1.0  # a failed output is tried again at most this often
IDLE_WAIT_S = 0.1  # longest sleep between rounds (a frame arriving meanwhile is due D later)


class Playout:
    """Reads what the capture stage writes: the audio `store` (placed on `timeline`) and the
    `video` queue; no other part of it."""

    def __init__(self, stream_id: str, request: StreamRequest, delay_s: float, *, store: AudioStore,
                 video: VideoQueue, timeline: Timeline, tracks: DubTracks, metrics: MediaMetrics,
                 events: EventLog, counters: Counters, mix: Callable[[], tuple[Mode, float]],
                 make_writer: Callable[[PlannedOutput], OutputWriter | None],
                 input_reading: Callable[[], bool], on_error: Callable[[str], None],
                 stop: threading.Event, drain: threading.Event):
        self.id = stream_id
        self.request = request
        self.delay_s = delay_s
        self.store, self.video, self.timeline, self.tracks = store, video, timeline, tracks
        self.metrics, self.events, self.counters = metrics, events, counters
        self.mix = mix  # (mode, duck gain dB), read per frame: a PATCH takes effect on the next one
        self.make_writer = make_writer  # None while there is no input to copy the streams from
        self.input_reading = input_reading
        self.on_error = on_error
        self._stop, self._drain = stop, drain
        self.plan = request.output_plan()
        self.outputs: dict[str, OutputWriter] = {}  # by PlannedOutput.key
        self.state = OutputState.WAITING
        self.beat: float | None = None  # monotonic time of the loop's last round (watchdog)
        self.av_offset_s = 0.0
        self.output_delay_measured_s = 0.0
        self.position = 0  # timeline index of the next audio frame to render (what the output is playing)
        self.position_at: float | None = None  # monotonic time `position` last advanced
        self.loudness = {lang: ProgrammeLoudness() for lang in tracks.languages}  # what each output plays
        self.loudness_lufs: dict[str, dict] = {}  # the latest readings per language (snapshot, metrics)

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        store, video = self.store, self.video
        next_index = 0
        last_open_try = 0.0
        try:
            while not self._stop.is_set():
                now = self.beat = time.monotonic()
                horizon = now + BATCH_S
                if not self.counters.input_sessions:  # no input yet: nothing to copy the outputs from
                    self._stop.wait(IDLE_WAIT_S)
                    continue
                if (len(self.outputs) < len(self.plan) and now - last_open_try > OUTPUT_REOPEN_S
                        and self._anything_due(next_index, now + OUTPUT_OPEN_LEAD_S)):
                    # Opened just before there is something to write: RTMP servers drop idle
                    # publishers, and opening takes a moment (relay start, RTMP handshake).
                    last_open_try = now
                    self._open_outputs()
                wrote = False
                while store.end >= next_index + FRAME:  # audio frames that are due
                    arrival = store.arrival_of(next_index + FRAME - 1)
                    if arrival is None or arrival + self.delay_s > horizon:
                        break
                    if not self._before_first_picture(next_index):
                        self._write_audio_frame(next_index)
                    self.output_delay_measured_s = time.monotonic() - arrival
                    next_index += FRAME
                    wrote = True
                if next_index != self.position:
                    self.position, self.position_at = next_index, now
                while (packet := video.pop_due(horizon - self.delay_s)) is not None:  # video that is due
                    self._write_video(packet)
                    wrote = True
                if wrote:
                    self.metrics.output_delay.labels(self.id).set(self.output_delay_measured_s)
                    store.discard_before(next_index - RATE)
                    self.tracks.prune(next_index - RATE)
                elif not self.input_reading() and self._played_out(next_index, now):
                    # The input is gone and everything it gave has been played: finish the last
                    # partial audio frame and close the outputs, which flushes the muxers'
                    # interleaving queues (nothing is left behind). They reopen if it returns.
                    if store.end > next_index:
                        self._write_audio_frame(next_index)
                        next_index += FRAME  # the rest of this frame was silence-padded
                    if self.outputs:
                        self._close_outputs("input ended; everything buffered was played out")
                    if self._drain.is_set() and store.closed:
                        break
                self._stop.wait(self._idle_wait(next_index))
        finally:
            for writer in self.outputs.values():
                writer.close()
            self.outputs.clear()
            self.metrics.output_up.labels(self.id).set(0)
            self.state = OutputState.CLOSED

    # ------------------------------------------------------------ scheduling

    def _due(self, arrival: float | None, now: float) -> bool:
        return arrival is not None and arrival + self.delay_s <= now

    def _frame_arrival(self, next_index: int) -> float | None:
        """When the last sample of the frame at `next_index` arrived (None: not all there yet)."""
        return self.store.arrival_of(next_index + FRAME - 1) if self.store.end >= next_index + FRAME else None

    def _idle_wait(self, next_index: int) -> float:
        """Sleep until the next audio frame or video packet is due, at most IDLE_WAIT_S. Polling
        every 5 ms cost each stream 200 wake-ups a second, all contending for the GIL."""
        now = time.monotonic()
        due = now + IDLE_WAIT_S
        for arrival in (self._frame_arrival(next_index), self.video.first_arrival()):
            if arrival is not None:
                due = min(due, arrival + self.delay_s)
        return max(0.001, due - now)

    def _anything_due(self, next_index: int, now: float) -> bool:
        return self._due(self._frame_arrival(next_index), now) or self._due(self.video.first_arrival(), now)

    def _played_out(self, next_index: int, now: float) -> bool:
        store = self.store
        if len(self.video) or store.end >= next_index + FRAME:
            return False
        arrival = store.arrival_of(store.end - 1) if store.end > next_index else None
        return arrival is None or self._due(arrival, now)

    def _before_first_picture(self, index: int) -> bool:
        """Audio that ends before the first video packet is not sent: a viewer joining a live
        stream gets picture and sound from the first keyframe on, not sound alone."""
        first = self.video.first_out_s
        if first is None or self.counters.video_packets_out:
            return False
        return self.timeline.to_out_seconds_of_index(index + FRAME) <= first

    # ------------------------------------------------------------ writers

    @staticmethod
    def _describe(out: PlannedOutput) -> dict:
        """Event data naming an output: `language` for an output keyed by its language (those of
        `output_url`), else `output`, `kind` and its track languages."""
        if out.key == out.tracks[0].mix:
            return {"language": out.key}
        return {"output": out.key, "kind": out.kind, "languages": [t.language for t in out.tracks]}

    def _open_outputs(self) -> bool:
        ok = True
        for out in self.plan:
            if out.key in self.outputs:
                continue
            try:
                writer = self.make_writer(out)
                if writer is None:
                    return False  # input closed (stopping): no template to build outputs from
                self.outputs[out.key] = writer
                self.events.publish(self.id, "output_open", {**self._describe(out), "url": redact_url(out.url)})
            except OutputError as exc:
                ok = False
                if self.state != OutputState.ERROR:
                    log.warning("stream %s: %s", self.id, exc)
                self.state = OutputState.ERROR
                self.on_error(str(exc))
        if ok:
            self.state = OutputState.WRITING
            self.metrics.output_up.labels(self.id).set(1)
        return ok

    def _output_failed(self, out: PlannedOutput, exc: Exception) -> None:
        log.warning("stream %s: output %s failed: %s", self.id, out.key, exc)
        writer = self.outputs.pop(out.key, None)
        if writer:
            writer.close()
        self.state = OutputState.ERROR
        self.metrics.output_up.labels(self.id).set(0)
        self.events.publish(self.id, "output_lost", {**self._describe(out), "error": redact(str(exc))})

    def _close_outputs(self, reason: str) -> None:
        for out in self.plan:
            writer = self.outputs.get(out.key)
            if writer is None:
                continue
            writer.close()
            self.events.publish(self.id, "output_closed", {**self._describe(out), "reason": reason})
        self.outputs.clear()
        self.state = OutputState.IDLE
        self.metrics.output_up.labels(self.id).set(0)

    def _write_audio_frame(self, index: int) -> None:
        original = self.store.read(index, FRAME)
        mode, duck_gain_db = self.mix()
        mixes = self.tracks.render(index, FRAME, original, mode, duck_gain_db)
        pts = self.timeline.out_index_pts(index)
        for out in self.plan:
            writer = self.outputs.get(out.key)
            if writer is None:
                continue
            try:
                for i, track in enumerate(out.tracks):
                    writer.write_audio(original if track.mix is None else mixes[track.mix], pts, i)
                self.av_offset_s = writer.av_offset_s
            except OutputError as exc:
                self._output_failed(out, exc)
        if self.outputs:
            for lang, mixed in mixes.items():  # what every output of that language carries
                self._measure(lang, mixed)
        self.counters.audio_frames_out += 1
        self.metrics.av_offset.labels(self.id).set(self.av_offset_s)

    def _measure(self, lang: str, mixed) -> None:
        """Programme loudness of what `lang`'s output just got; the gauges move every 100 ms."""
        meter = self.loudness[lang]
        if meter.add(mixed):
            readings = {window: None if value is None else round(value, 2)
                        for window, value in meter.readings().items()}
            self.loudness_lufs = {**self.loudness_lufs, lang: readings}  # replaced whole: read by the API
            for window, value in readings.items():
                if value is not None:
                    self.metrics.output_loudness.labels(self.id, lang, window).set(value)

    def _write_video(self, packet: av.Packet) -> None:
        for out in self.plan:
            writer = self.outputs.get(out.key)
            if writer is None:
                continue
            copy = av.Packet(bytes(packet))
            copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
            copy.is_keyframe = packet.is_keyframe
            try:
                writer.write_video(copy, self.video.shift_ticks)
            except OutputError as exc:
                self._output_failed(out, exc)
        self.counters.video_packets_out += 1
