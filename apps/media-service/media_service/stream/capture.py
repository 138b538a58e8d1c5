"""The capture stage: what the ingest thread does with each decoded packet.

Video packets wait in a `VideoQueue` until they are due; audio goes onto the stream's one media
timeline (`Timeline` + `AudioStore`, 48 kHz sample positions) and, resampled to 16 kHz mono, into
the VAD segmenter, whose closed segments are handed to `on_segment` (the dubbing stage).
A reconnected input, or a timestamp jump beyond `timeline.JUMP_S`, continues as a new session:
its timestamps are shifted so the output goes on where it stopped, without a hole or an overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from ..audio.segmenter import Segment, SegmenterConfig, SpeechSegmenter, span_to_48k
from ..audio.timeline import JUMP_S, RATE, VAD_RATE, VAD_STEP, AudioStore, Timeline
from ..config import MediaConfig
from ..events import EventLog
from ..media_io.ingest import InputInfo
from .budget import FragmentLimits
from .counters import Counters
from .handoff import Handoff

log = logging.getLogger(__name__)

RESUME_GAP_S = 0.040  # a reconnected input continues this long after the last video packet
VAD_BLOCK = 4096  # 48 kHz samples (85 ms) resampled and analysed at a time; budget.SLACK_S allows for it


@dataclass
class VideoItem:
    packet: av.Packet
    arrival: float  # monotonic time it arrived (ingest.ArrivalClock): due at arrival + D


class VideoQueue:
    """Video packets in arrival order, shared by the ingest thread (push) and the output thread,
    with where the current input session's video goes on the output clock."""

    def __init__(self):
        self._q: deque[VideoItem] = deque()
        self._lock = threading.Lock()
        self.shift_ticks = 0  # added to input video timestamps (video time base)
        self.first_out_s: float | None = None  # output time of the first video packet

    def push(self, packet: av.Packet, arrival: float) -> None:
        with self._lock:
            self._q.append(VideoItem(packet, arrival))

    def pop_due(self, due_before: float) -> av.Packet | None:
        """The oldest packet if it arrived before `due_before` (= now - D), else None."""
        with self._lock:
            if self._q and self._q[0].arrival <= due_before:
                return self._q.popleft().packet
        return None

    def first_arrival(self) -> float | None:
        with self._lock:
            return self._q[0].arrival if self._q else None

    def __len__(self) -> int:
        return len(self._q)


class Capture:
    """Timeline, audio store, video queue and VAD feed of one stream (written by its ingest thread).

    Each closed speech segment goes to `on_segment` with the monotonic time its first sample
    arrived (None if that is no longer known). The segmenter's limits are changed through
    `segment_limits`: posted by the dubbing stage, applied here before the next audio is fed.
    """

    def __init__(self, stream_id: str, cfg: MediaConfig, events: EventLog, counters: Counters,
                 on_segment: Callable[[Segment, float | None], None],
                 segment_limits: Handoff[FragmentLimits] | None = None):
        self.id = stream_id
        self.events = events
        self.counters = counters
        self.on_segment = on_segment
        self.segment_limits = segment_limits
        self.timeline = Timeline(RATE)
        self.store = AudioStore(channels=2)
        self.video = VideoQueue()
        self.segmenter = SpeechSegmenter(SegmenterConfig(
            threshold=cfg.vad_threshold, min_silence_ms=cfg.min_silence_ms,
            max_fragment_ms=cfg.max_fragment_ms, padding_ms=cfg.speech_padding_ms,
            min_fragment_ms=cfg.min_fragment_ms))
        self.info: InputInfo | None = None  # the current input session's streams
        self.last_video_out_s: float | None = None  # latest ingested video time, output clock
        self._new_session = False  # the next packet starts a session (a reconnect or a jump)
        self._resampler: av.AudioResampler | None = None
        self._vad_pending: list[np.ndarray] = []  # 48 kHz stereo waiting for the VAD (< VAD_BLOCK samples)
        self._vad_pending_n = 0

    # ------------------------------------------------------------ sessions

    def input_opened(self, info: InputInfo, resumed: bool) -> None:
        """An input session opened with these streams; a `resumed` one (not the stream's first)
        continues the output where it stopped, from its first packet on."""
        self.info = info
        self._new_session = resumed

    def begin_session_at(self, pts_s: float) -> None:
        """First packet of a new session: continue the output timestamps where they stopped."""
        self._new_session = False
        resume = max(self.timeline.to_out_seconds_of_index(self.timeline.end) if self.timeline.origin_s
                     is not None else 0.0, (self.last_video_out_s or 0.0) + RESUME_GAP_S)
        self.timeline.new_session(pts_s, resume)
        if self.info and self.info.video is not None:
            self.video.shift_ticks = int(round(self.timeline.shift_s / float(self.info.video.time_base)))

    def jumped(self, pts_s: float, kind: str) -> bool:
        """A timestamp jump beyond JUMP_S: continue as a new session (see timeline.JUMP_S).

        Audio is compared with the end of the timeline, video with the last video packet. A
        stream that comes back where the other one is was away, not jumping: audio after a
        video-only stretch (the timeline keeps the hole as silence) or video after an audio-only
        stretch (the output's video has the same hole as the input's)."""
        if self._new_session:
            return False
        out_s = pts_s + self.timeline.shift_s
        audio_end = (self.timeline.to_out_seconds_of_index(self.timeline.end) if self.timeline.origin_s is not None
                     else None)
        last_video = self.last_video_out_s
        if kind == "audio":
            if not self.timeline.is_jump(pts_s):
                return False
            if last_video is not None and abs(out_s - last_video) <= JUMP_S:
                return False  # the video went on meanwhile
            jump = out_s - audio_end
        else:
            if last_video is None or abs(out_s - last_video) <= JUMP_S:
                return False
            if audio_end is not None and abs(out_s - audio_end) <= JUMP_S:
                return False  # the audio went on meanwhile
            jump = out_s - last_video
        self.counters.timestamp_jumps += 1
        log.warning("stream %s: input %s timestamps jumped %+.1f s: continuing as a new session",
                    self.id, kind, jump)
        self.events.publish(self.id, "timestamp_jump", {"kind": kind, "jump_s": round(jump, 3)})
        return True

    # ------------------------------------------------------------ packets (ingest thread)

    def on_video(self, packet: av.Packet, arrival: float | None = None) -> None:
        if packet.pts is not None and self.jumped(float(packet.pts * packet.time_base), "video"):
            self._new_session = True
        if self._new_session and packet.pts is not None:
            self.begin_session_at(float(packet.pts * packet.time_base))
        if packet.pts is not None:
            out_s = float((packet.pts + self.video.shift_ticks) * packet.time_base)
            self.last_video_out_s = max(self.last_video_out_s or out_s, out_s)
            if self.video.first_out_s is None:
                self.video.first_out_s = out_s
        self.counters.video_packets_in += 1
        self.video.push(packet, time.monotonic() if arrival is None else arrival)

    def on_audio(self, samples: np.ndarray, pts_s: float, arrival: float | None = None) -> None:
        self._apply_limits()
        if self.jumped(pts_s, "audio"):
            self._new_session = True
        if self._new_session:
            self.begin_session_at(pts_s)
        placed = self.timeline.place(pts_s, len(samples))
        samples = samples[placed.dropped:]
        if placed.gap:
            # The store reads silence where nothing was written; the segmenter skips the hole
            # without analysing it. Nothing the size of the gap is allocated, however long the
            # input's audio was away.
            self._feed_segmenter(np.zeros((placed.gap % VAD_STEP, 2), np.float32))
            self._run_vad()
            self._hand_on(self.segmenter.skip(placed.gap // VAD_STEP))
        self.store.write(placed.start, samples, arrival)
        self._feed_segmenter(samples)

    def _feed_segmenter(self, samples: np.ndarray) -> None:
        """Queue audio for the VAD; it runs once VAD_BLOCK samples are waiting (a call per
        1024-sample frame cost three times as much per sample, mostly call overhead)."""
        if len(samples):
            self._vad_pending.append(samples)
            self._vad_pending_n += len(samples)
        if self._vad_pending_n >= VAD_BLOCK:
            self._run_vad()

    def _run_vad(self) -> None:
        """Resample what is queued to 16 kHz mono and hand it to the segmenter."""
        if not self._vad_pending_n:
            return
        block = self._vad_pending[0] if len(self._vad_pending) == 1 else np.concatenate(self._vad_pending)
        self._vad_pending, self._vad_pending_n = [], 0
        mono = ((block[:, 0] + block[:, 1]) * 0.5).astype(np.float32)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=VAD_RATE)
        frame = av.AudioFrame.from_ndarray(mono[None, :], format="flt", layout="mono")
        frame.sample_rate = RATE
        parts = [f.to_ndarray()[0] for f in self._resampler.resample(frame)]
        if parts:
            self._hand_on(self.segmenter.feed(np.concatenate(parts)))

    def _apply_limits(self) -> None:
        """The limits the dubbing stage posted since the last feed, if any."""
        limits = self.segment_limits.take() if self.segment_limits is not None else None
        if limits is not None:
            self.segmenter.set_limits(limits.max_fragment_ms, limits.min_silence_ms)

    def _hand_on(self, segments: list[Segment]) -> None:
        for seg in segments:
            self.on_segment(seg, self.store.arrival_of(span_to_48k(seg.span)[0]))

    def close(self) -> None:
        """The stream stopped: native resources go now, not whenever the garbage collector breaks
        the worker's reference cycles (a PyAV resampler holds a filter graph with its own threads)."""
        self._resampler = None

    def flush_segments(self) -> None:
        """The input session ended: the open segment is closed and handed on."""
        self._apply_limits()
        self._run_vad()
        self._hand_on(self.segmenter.flush())
