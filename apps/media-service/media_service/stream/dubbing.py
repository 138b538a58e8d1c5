"""The dubbing stage of a stream: speech segment -> STS fragment -> dub on the tracks, or a fallback.

Runs on the event loop (one task per fragment); owns the STS client. Each fragment carries the
deadline at which its span is played (arrival + D - margin); an answer that is late, failed or
absent is counted as a fallback with its reason and the original audio plays there. The fragment
limits follow the measured service time (see budget.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import deque

import numpy as np
from livedub_protocol import AudioFormat, FragmentData, StreamInit, float_to_pcm16, pcm16_to_float

from ..audio.dsp import resample
from ..audio.mixer import DubTracks
from ..audio.segmenter import Segment, span_to_48k
from ..audio.timeline import RATE, VAD_RATE
from ..config import MediaConfig, StreamRequest
from ..events import EventLog
from ..media_io.captions import CaptionStore
from ..metrics import MediaMetrics
from ..redaction import redact_url
from ..states import FallbackReason, StsState
from .budget import DEADLINE_MARGIN_S, FragmentLimits, fragment_limits
from .counters import Counters
from .handoff import Handoff
from .sts_client import Fallback, StsClient
from .sts_pool import StsPool

log = logging.getLogger(__name__)

RTT_WINDOW = 30  # the fragment limits follow the p95 service time of this many recent fragments
LATE_SHARE = 0.4  # a late start takes at most this share of the span: at least 60 % is left to the dub


def late_allowance_ms(late_start_ms: float, duration_ms: float) -> float:
    """How late a dub may start after its span (ms): the configured limit, at most LATE_SHARE of the span."""
    return max(0.0, min(late_start_ms, LATE_SHARE * duration_ms))


class Dubbing:
    """The fragment limits it sets go to the capture stage through `segment_limits` (the ingest
    thread applies them before its next feed)."""

    def __init__(self, stream_id: str, request: StreamRequest, cfg: MediaConfig, delay_s: float, *,
                 metrics: MediaMetrics, events: EventLog, counters: Counters, tracks: DubTracks,
                 stop: threading.Event, captions: CaptionStore | None = None, sts_pool: StsPool | None = None):
        self.id, self.cfg, self.delay_s = stream_id, cfg, delay_s
        self.metrics, self.events, self.counters = metrics, events, counters
        self.tracks = tracks
        self._stop = stop
        self.captions = captions
        self.transcripts: deque = deque(maxlen=50)
        self.segment_limits: Handoff[FragmentLimits] = Handoff()
        self._set_limits(fragment_limits(delay_s, None, cap_ms=cfg.max_fragment_ms,
                                         min_silence_cap_ms=cfg.min_silence_ms))
        self._service_ms: deque = deque(maxlen=RTT_WINDOW)  # round trip minus STS queueing
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self.sts = StsClient(
            sts_pool or StsPool(cfg.sts_url), cfg.sts_token or "",
            StreamInit(stream_id=stream_id, source_language=request.source_language,
                       target_languages=list(request.target_languages),
                       audio=AudioFormat(sample_rate_hz=VAD_RATE),  # fragments are the segmenter's audio
                       max_fragment_ms=cfg.max_fragment_ms + 1000),
            on_state=self._on_sts_state, on_move=self._on_sts_move)

    def _on_sts_state(self, state: StsState) -> None:
        self.metrics.set_sts_state(self.id, state)
        self.events.publish(self.id, "sts_state", {"state": state.value, "error": self.sts.last_error})

    def _on_sts_move(self, old: str, new: str) -> None:
        self.events.publish(self.id, "sts_moved", {"from": old, "to": new, "reason": "draining"})

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sts.start()

    async def close(self) -> None:
        """Cancel the fragments in flight (their spans play the original) and close the STS session."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sts.close()

    def submit_threadsafe(self, seg: Segment, arrival: float | None) -> None:
        """Hand a closed speech segment over from the ingest thread, with when its first sample
        arrived (its deadline is counted from then)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._spawn, seg, arrival)

    def _spawn(self, seg: Segment, arrival: float | None) -> None:
        if self._stop.is_set():
            return
        task = asyncio.create_task(self._dub_fragment(seg, arrival), name=f"fragment:{self.id}:{self._seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def fallback(self, reason: FallbackReason, seg_ms: float, detail: str = "") -> None:
        reason = FallbackReason(reason).value
        self.counters.fallbacks[reason] = self.counters.fallbacks.get(reason, 0) + 1
        self.metrics.fallbacks.labels(self.id, reason).inc()
        self.events.publish(self.id, "fallback", {"reason": reason, "start_ms": seg_ms, "detail": detail})

    async def _dub_fragment(self, seg: Segment, arrival: float | None) -> None:
        start48, end48 = span_to_48k(seg.span)
        start_ms = start48 * 1000.0 / RATE
        seq, self._seq = self._seq, self._seq + 1
        if arrival is None:
            arrival = time.monotonic()
        deadline = arrival + self.delay_s - DEADLINE_MARGIN_S
        audio = float_to_pcm16(seg.audio)
        budget_ms = (deadline - time.monotonic()) * 1000.0
        duration_ms = len(seg.audio) * 1000.0 / VAD_RATE
        late_ms = late_allowance_ms(self.cfg.late_start_ms, duration_ms)
        frag = FragmentData(stream_id=self.id, fragment_id=f"{self.id}-{uuid.uuid4().hex[:8]}-{seq}",
                            sequence_number=seq, start_ms=start_ms, duration_ms=duration_ms, audio=audio,
                            deadline_ms=min(600000.0, budget_ms) if budget_ms > 0 else None,
                            late_start_ms=late_ms if late_ms > 0 and budget_ms > 0 else None,
                            continues=True if seg.speech_goes_on else None)
        t0 = time.monotonic()
        try:
            if self.sts.connected:
                self.counters.fragments_sent += 1
                self.metrics.fragments_sent.labels(self.id).inc()
            result = await self.sts.process(frag, deadline + late_ms / 1000.0)
        except Fallback as fb:
            self.fallback(fb.reason, start_ms, fb.detail)
            return
        rtt = time.monotonic() - t0
        self.counters.roundtrip_ms.append(rtt * 1000.0)
        self.metrics.roundtrip.labels(self.id).observe(rtt)
        queued_ms = result.timings_ms.queue if result.timings_ms and result.timings_ms.queue else 0.0
        if result.status in ("ok", "no_speech"):
            self._service_ms.append(max(0.0, rtt * 1000.0 - queued_ms))
            self._adapt_limits()
        self.counters.fragments_processed[result.status] = self.counters.fragments_processed.get(result.status, 0) + 1
        self.metrics.fragments_processed.labels(self.id, result.status).inc()
        if result.status == "no_speech":
            return
        if result.status != "ok":
            err = result.error
            reason = (FallbackReason.DEADLINE_EXCEEDED if err and err.code == "deadline_exceeded"
                      else FallbackReason.FAILED)
            self.fallback(reason, start_ms, f"{err.code} at {err.stage}: {err.message}" if err else "")
            return
        if self.captions is not None:
            # Captions are what the STS returned, whether or not the dub is then placed in time
            # (a late dub's span plays the original, which its transcript and translations caption).
            self.captions.add_span(start_ms, frag.duration_ms, result.transcript,
                                   {dub.target_language: dub.text for dub in result.results})
        placed, late_s = await asyncio.get_running_loop().run_in_executor(
            None, self._place_dubs, result, start48, end48, round(late_ms * RATE / 1000.0))
        self._count_placed(result, placed, late_s)

    def _adapt_limits(self) -> None:
        """Fragments as long as D and the measured service time allow (see budget.py).

        The round trip minus the time the fragment queued at the STS: queueing is load, and
        cutting shorter fragments under load would only add work (each ASR call has a fixed
        cost), a loop that turned overload into collapse. Failed answers say nothing of it.
        """
        recent = list(self._service_ms)
        if len(recent) < 3:
            return
        rtt_s = float(np.percentile(recent, 95)) / 1000.0
        self._set_limits(fragment_limits(self.delay_s, rtt_s, cap_ms=self.cfg.max_fragment_ms,
                                         min_silence_cap_ms=self.cfg.min_silence_ms))

    def _set_limits(self, limits: FragmentLimits) -> None:
        self.limits = limits
        self.segment_limits.post(limits)

    def _place_dubs(self, result, start48: int, end48: int, late48: int = 0) -> tuple[list[dict], float]:
        """Executor thread: decode each language's dub onto its track; returns what was placed and
        how late, which the event loop counts (the counters are the loop's, not this thread's).

        A dub starts at its span's start plus the STS's `start_offset_ms` (a late start it was
        fitted for). If that part of the output is already rendered, it starts at the first sample
        that is not, with its tail cut by as much, when that is at most `late48` samples after the
        span's start; otherwise the original plays there (a `late` fallback).
        """
        offset = min(round(result.start_offset_ms * RATE / 1000.0), late48)
        span = end48 - start48 - offset
        placed, late_s = [], 0.0
        for dub in result.results:
            clip = resample(pcm16_to_float(dub.audio), dub.sample_rate_hz, RATE)[:span]
            if not len(clip):
                continue
            at = self.tracks.place(dub.target_language, start48 + offset, np.repeat(clip[:, None], 2, axis=1),
                                   latest=start48 + late48)
            if at is not None:
                placed.append({"language": dub.target_language, "text": dub.text})
                late_s = max(late_s, (at - start48) / RATE)
        return placed, late_s

    def _count_placed(self, result, placed: list[dict], late_s: float) -> None:
        """Event loop: count and announce the dubs `_place_dubs` placed, or the late fallback."""
        if placed:
            self.counters.dubs_placed += 1
            self.transcripts.append({"start_ms": result.start_ms, "duration_ms": result.duration_ms,
                                     "transcript": result.transcript, "dubs": placed})
            timings = result.timings_ms.model_dump(exclude_none=True) if result.timings_ms else {}
            extra = {}
            if late_s > 0:
                self.counters.late_starts += 1
                self.metrics.late_start.labels(self.id).observe(late_s)
                extra = {"late_start_ms": round(late_s * 1000.0, 1)}
            self.events.publish(self.id, "dubbed", {**self.transcripts[-1], "timings_ms": timings, **extra})
        elif result.results:
            self.fallback(FallbackReason.LATE, result.start_ms, "arrived after its deadline")

    def snapshot(self) -> dict:
        return {"sts": {"state": self.sts.state.value, "url": redact_url(self.sts.url), "connects": self.sts.connects,
                        "moves": self.sts.moves,
                        "inflight": self.sts.inflight, "last_error": self.sts.last_error},
                "fragment_limits": {"max_fragment_ms": round(self.limits.max_fragment_ms),
                                    "min_silence_ms": round(self.limits.min_silence_ms)},
                "recent": list(self.transcripts)[-10:]}
