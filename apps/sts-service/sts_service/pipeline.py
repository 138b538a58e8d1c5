"""One fragment through ASR -> translation -> TTS -> fit, stage by stage, off the event loop.

ASR goes through the shared ``AsrScheduler`` (earliest deadline first, batched, in its own
executor: one transcription uses all the cores it is given). Translation/TTS/fit are mostly
subprocesses and run in a wider pool, one job per target language, so several languages and
fragments overlap. Each stage runs under its own timeout, so a stuck engine becomes a `timeout`
failure for that fragment instead of a frozen server; a fragment with a deadline is answered
`deadline_exceeded` as soon as the remaining stages cannot finish before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from livedub_protocol import (
    DubResult,
    ErrorCode,
    FragmentData,
    FragmentError,
    FragmentProcessed,
    StageTimings,
    float_to_pcm16,
    pcm16_to_float,
)

from .asr import ASR_RATE
from .asr.left_context import Heard, LeftContext, ends_in_pause, hand_over
from .asr.whisper import LeftAudio
from .config import StsConfig
from .context import StreamContext
from .engines import Engines
from .fit import fit_to_span, input_limit_ms
from .loudness import integrated_lufs
from .metrics import StsMetrics
from .pitch import median_pitch_hz
from .scheduler import AsrScheduler, DeadlineExceeded
from .translation.base import Context
from .tts.voices import Voice

log = logging.getLogger(__name__)

# Longest a fragment waits for the words of the cut fragment before it (then it is heard cold).
LEFT_WAIT_MAX_S = 1.0

# A remote engine's call budget inside a fragment's deadline: translation may take this share of
# the time left, speech all of it but this much (the fit after it is local and fast).
MT_SHARE = 0.5
FIT_RESERVE_S = 0.15


LATE_PAD_S = 0.05  # a late start is planned this much later than the expected lateness (estimate error)
LATE_STEP_MS = 10.0  # offsets are whole steps of this


def late_offset(expected_late_s: float, allowed_s: float, span_ms: float) -> float:
    """How long after its span's start a dub should begin (ms, 0 = on time), given how late the
    stages after ASR are expected to finish it and how late the client allows. Never more than
    the allowance nor half the span (the dub must keep room to be spoken)."""
    if expected_late_s <= 0:
        return 0.0
    want = (expected_late_s + LATE_PAD_S) * 1000.0
    want = math.ceil(want / LATE_STEP_MS) * LATE_STEP_MS
    return float(min(want, allowed_s * 1000.0, span_ms / 2))


class StageFailure(Exception):
    def __init__(self, code: ErrorCode, stage: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.code, self.stage, self.message, self.retryable = code, stage, message, retryable


@dataclass
class StreamSpec:
    """What a stream asked for at stream:init."""

    source_language: str
    target_languages: list[str]
    sample_rate_hz: int
    voices: dict[str, str]


def source_features(audio: np.ndarray, rate: int, want_pitch: bool) -> tuple[float | None, float | None]:
    """``(median pitch Hz, BS.1770 loudness LUFS)`` of the original span, once per fragment: the
    pitch picks a language's high voice, the loudness is what each dub is matched to."""
    return (median_pitch_hz(audio, rate) if want_pitch else None), integrated_lufs(audio, rate)


def asr_input(audio: bytes, rate: int) -> np.ndarray:
    """pcm_s16le at the stream's rate -> float32 at ASR_RATE (linear resampling for a client at another rate)."""
    x = pcm16_to_float(audio)
    if rate != ASR_RATE and len(x):
        n_out = int(round(len(x) * ASR_RATE / rate))
        x = np.interp(np.linspace(0, len(x) - 1, n_out), np.arange(len(x)), x).astype(np.float32)
    return x


class DubbingPipeline:
    def __init__(self, cfg: StsConfig, engines: Engines, metrics: StsMetrics):
        self.cfg = cfg
        self.engines = engines
        self.metrics = metrics
        self._asr_pool = ThreadPoolExecutor(max_workers=cfg.asr_workers, thread_name_prefix="asr")
        self.asr_executor = self._asr_pool
        self._post_pool = ThreadPoolExecutor(max_workers=cfg.post_workers, thread_name_prefix="post")
        self.scheduler = AsrScheduler(engines.asr, self._asr_pool, metrics, max_queued=cfg.max_queued_total,
                                      workers=cfg.asr_workers)

    def start(self) -> None:
        self.scheduler.start()

    def warm_up(self) -> None:
        """Blocking (run it in the ASR executor before serving): first model calls, cost model primed."""
        warm = getattr(self.engines.asr, "warm_up", None)
        if warm is None:
            return
        for window, greedy, batch, seconds in warm():
            self.scheduler.cost.prime(window, greedy, batch, seconds)
            log.info("ASR warm-up: window %d, %s, batch %d: %.0f ms", window,
                     "greedy" if greedy else "beam", batch, seconds * 1000)

    async def aclose(self) -> None:
        await self.scheduler.close()
        self.close()

    def close(self) -> None:
        self._asr_pool.shutdown(wait=False, cancel_futures=True)
        self._post_pool.shutdown(wait=False, cancel_futures=True)

    async def _stage(self, pool, timeout: float, stage: str, code: ErrorCode, fn, *args,
                     deadline: float | None = None):
        """Run `fn` in `pool`; returns (result, ms it ran). The timeout also covers queueing; with a
        `deadline` (the client's) the stage also ends there, as `deadline_exceeded`."""
        loop = asyncio.get_running_loop()
        late = deadline is not None and deadline - loop.time() < timeout
        if late:
            timeout = max(0.0, deadline - loop.time())
        ran = {}

        def timed():
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                ran["ms"] = (time.perf_counter() - t0) * 1000.0

        try:
            result = await asyncio.wait_for(loop.run_in_executor(pool, timed), timeout)
        except asyncio.TimeoutError:
            if late:
                self.metrics.deadline_exceeded.labels(stage).inc()
                raise DeadlineExceeded(stage, f"{stage} did not finish before the deadline") from None
            raise StageFailure(ErrorCode.TIMEOUT, stage, f"{stage} took longer than {timeout:g}s",
                               retryable=True) from None
        except StageFailure:
            raise
        except Exception as exc:  # engine errors become a failed fragment, never a crash
            if deadline is not None and getattr(exc, "timed_out", False):  # its budget was the deadline's
                self.metrics.deadline_exceeded.labels(stage).inc()
                raise DeadlineExceeded(stage, f"{type(exc).__name__}: {exc}") from None
            raise StageFailure(code, stage, f"{type(exc).__name__}: {exc}") from exc
        return result, ran.get("ms", 0.0)

    async def _left_audio(self, prev: Heard | None, audio: np.ndarray, start_ms: float,
                          deadline: float) -> LeftAudio | None:
        """The fragment before this one (asr/left_context.py) with its committed words, and a pause
        between them as silence, waiting for the words only as long as this fragment's own ASR and
        the stages after it still fit before `deadline`; else None (cold). A fragment after a pause
        is heard behind the one before only where that costs no wider encoder window and the
        deadline has room for the longer decoding."""
        if prev is None or prev.audio is None:
            return None
        loop = asyncio.get_running_loop()
        left = LeftAudio(prev.lead_in(start_ms), "")
        window = self.scheduler.window_for(audio, left)
        if not prev.continues:
            if window > self.scheduler.window_for(audio):
                return None
            # The words before make the decoder's run longer: after a pause (where nothing was cut)
            # only while the deadline leaves room for one more ASR run after the expected wait.
            now = loop.time()
            asr_s = self.scheduler.cost.asr(window, 1, True)
            if deadline - now - self.scheduler.estimated_wait_s(now) - self.scheduler.cost.post.value < 2 * asr_s:
                self.metrics.asr_left_context.labels("skipped_busy").inc()
                return None
        if not prev.text.done():
            budget = min(LEFT_WAIT_MAX_S, deadline - loop.time() - self.scheduler.cost.asr(window, 1, True)
                         - self.scheduler.cost.post.value)
            if budget > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(prev.text), budget)
            if not prev.text.done():
                prev.successor_cold = True  # it keeps its last word: nobody hears it again
                self.metrics.asr_left_context.labels("cold").inc()
                return None
        text = prev.text.result()
        if not text:
            return None
        self.metrics.asr_left_context.labels("used" if prev.continues else "used_after_pause").inc()
        return LeftAudio(left.audio, text)

    async def _asr(self, audio: np.ndarray, prompt: str | None, deadline: float, hard: bool,
                   left: LeftAudio | None = None):
        try:
            return await asyncio.wait_for(self.scheduler.transcribe(audio, prompt, deadline, hard, left),
                                          timeout=max(0.0, deadline - asyncio.get_running_loop().time())
                                          + self.cfg.asr_timeout_s)
        except asyncio.TimeoutError:
            raise StageFailure(ErrorCode.TIMEOUT, "asr", f"asr took longer than {self.cfg.asr_timeout_s:g}s",
                               retryable=True) from None
        except (DeadlineExceeded, StageFailure):
            raise
        except Exception as exc:
            if hard and getattr(exc, "timed_out", False):  # a remote ASR given the deadline's budget
                self.metrics.deadline_exceeded.labels("asr").inc()
                raise DeadlineExceeded("asr", f"{type(exc).__name__}: {exc}") from None
            raise StageFailure(ErrorCode.ASR_FAILED, "asr", f"{type(exc).__name__}: {exc}") from exc

    def _translate(self, text: str, source: str, target: str, context: Context | None, deadline: float | None):
        """The translation call: the stream's context and a time budget go to the engines that take them."""
        translator, kwargs = self.engines.translator, {}
        if context and getattr(translator, "takes_context", False):
            kwargs["context"] = context
        remote = deadline is not None and getattr(translator, "remote", False)

        def call():  # the budget is what is left when a worker runs it, not when it was queued
            if remote:
                kwargs["timeout"] = max(0.05, MT_SHARE * (deadline - time.monotonic()))
            return translator.translate(text, source, target, **kwargs)
        return call

    def _synthesize(self, voice: Voice, text: str, target: str, voice_id: str | None, deadline: float | None,
                    span_ms: float):
        """The speech call of the voice chosen for this fragment; a model server gets what is left of the
        budget, and decodes no more audio than the span can use."""
        synthesizer = voice.synthesizer
        remote = deadline is not None and getattr(synthesizer, "remote", False)

        def call():
            if remote:
                return synthesizer.synthesize(text, target, voice_id or voice.voice_id,
                                              timeout=max(0.05, deadline - time.monotonic() - FIT_RESERVE_S),
                                              max_seconds=input_limit_ms(span_ms, self.cfg.max_speed) / 1000.0)
            return voice.synthesize(text, target, voice_id)
        return call

    async def _dub_one(self, text: str, spec: StreamSpec, target: str, span_ms: float, pitch_hz: float | None,
                       source_lufs: float | None, deadline: float | None = None,
                       context: StreamContext | None = None, seq: int = 0):
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        # The engines' own clock for their budgets (time.monotonic is the loop's clock here).
        mono = None if deadline is None else time.monotonic() + (deadline - loop.time())
        ctx = context.before(seq, target) if context is not None else None
        translated, t_mt = await self._stage(
            self._post_pool, cfg.translation_timeout_s, "translation", ErrorCode.TRANSLATION_FAILED,
            self._translate(text, spec.source_language, target, ctx, mono), deadline=deadline)
        if context is not None:
            context.translated(seq, target, translated)
        voice = self.engines.synthesizer.select(target, pitch_hz)  # the high voice for a high speaker
        (samples, rate), t_tts = await self._stage(
            self._post_pool, cfg.tts_timeout_s, "tts", ErrorCode.TTS_FAILED,
            self._synthesize(voice, translated, target, spec.voices.get(target), mono, span_ms), deadline=deadline)
        fitted, t_fit = await self._stage(
            self._post_pool, cfg.fit_timeout_s, "fit", ErrorCode.INTERNAL,
            lambda: fit_to_span(samples, rate, span_ms, max_speed=cfg.max_speed, target_lufs=source_lufs))
        if source_lufs is not None:
            self.metrics.dub_gain_db.observe(fitted.gain_db)
        result = DubResult(
            target_language=target, text=translated, audio=float_to_pcm16(fitted.audio),
            sample_rate_hz=fitted.sample_rate,
            duration_ms=len(fitted.audio) * 1000.0 / fitted.sample_rate,
            speed_factor=float(fitted.speed_factor),
        )
        return result, t_mt, t_tts, t_fit

    async def process(self, frag: FragmentData, spec: StreamSpec, deadline: float | None = None,
                      prompt: str | None = None, context: StreamContext | None = None,
                      late_start_s: float = 0.0, left_context: LeftContext | None = None) -> FragmentProcessed:
        """Always returns a FragmentProcessed (ok / no_speech / failed); never raises.

        `deadline` is on the event loop's clock (None: only the stage timeouts apply): when the
        dub must be back to start with its span. `late_start_s` (the fragment's `late_start_ms`)
        lets it start up to that much later instead: every stage works to `deadline` plus it, and
        a dub that would miss `deadline` is fitted to the rest of the span (``late_offset``).
        `context` is the stream's recent speech: this fragment's transcript goes in as soon as it
        is known. `left_context` is the stream's recent audio: a fragment that goes on after a cut
        or a pause is heard behind the one before, and a cut fragment leaves its last word to the
        next one.
        """
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        hard = deadline is not None
        if deadline is None:
            deadline, late_start_s = loop.time() + self.cfg.asr_timeout_s, 0.0
        on_time, deadline = deadline, deadline + late_start_s
        offset_ms = 0.0
        timings = StageTimings()
        base = dict(stream_id=frag.stream_id, fragment_id=frag.fragment_id,
                    sequence_number=frag.sequence_number, start_ms=frag.start_ms,
                    duration_ms=frag.duration_ms)
        heard: Heard | None = None
        try:
            audio = asr_input(frag.audio, spec.sample_rate_hz)
            prev = None
            if (left_context is not None and left_context.enabled
                    and getattr(self.engines.asr, "takes_left_context", False)):
                prev = left_context.before(frag.sequence_number, frag.start_ms)
                heard = left_context.add(frag.sequence_number, frag.start_ms, frag.duration_ms, audio,
                                         bool(frag.continues))
            left = await self._left_audio(prev, audio, frag.start_ms, deadline)
            transcription, queued_s, ran_s = await self._asr(audio, prompt, deadline, hard, left)
            timings.queue, timings.asr = queued_s * 1000.0, ran_s * 1000.0
            self.metrics.stage_seconds.labels("asr").observe(ran_s)
            if transcription.no_speech or not transcription.text.strip():
                status, transcript, results = "no_speech", "", []
                if heard is not None:
                    heard.commit("")
            else:
                transcript = transcription.text.strip()
                if heard is not None and heard.continues:
                    # The word at the cut goes to the next fragment, unless that one went ahead cold.
                    transcript, handed = hand_over(transcript, not heard.successor_cold
                                                   and not ends_in_pause(audio))
                    heard.commit(transcript)
                    if handed:
                        self.metrics.asr_left_context.labels("word_handed_over").inc()
                elif heard is not None:
                    heard.commit(transcript)
                if context is not None:
                    context.heard(frag.sequence_number, transcript)
                finish = loop.time() + self.scheduler.cost.post.value  # expected end of the stages after ASR
                if hard and finish > deadline:
                    self.metrics.deadline_exceeded.labels("translation").inc()
                    raise DeadlineExceeded("translation", "no time left for translation and speech")
                if hard and late_start_s:
                    offset_ms = late_offset(finish - on_time, late_start_s, frag.duration_ms)
                post_t0 = loop.time()
                want_pitch = self.engines.synthesizer.wants_pitch(spec.target_languages)
                (pitch_hz, source_lufs), _ = await self._stage(
                    self._post_pool, self.cfg.tts_timeout_s, "tts", ErrorCode.TTS_FAILED,
                    source_features, audio, ASR_RATE, want_pitch)
                jobs = [self._dub_one(transcript, spec, t, frag.duration_ms - offset_ms, pitch_hz, source_lufs,
                                      deadline if hard else None, context, frag.sequence_number)
                        for t in spec.target_languages]
                outs = await asyncio.gather(*jobs, return_exceptions=True)
                for out in outs:
                    if isinstance(out, BaseException):
                        raise out
                results = [o[0] for o in outs]
                self.scheduler.cost.post.update(loop.time() - post_t0)
                # Languages run side by side: a stage's time is its slowest language.
                timings.translation = max(o[1] for o in outs)
                timings.tts = max(o[2] for o in outs)
                timings.fit = max(o[3] for o in outs)
                for stage in ("translation", "tts", "fit"):
                    self.metrics.stage_seconds.labels(stage).observe(getattr(timings, stage) / 1000.0)
                status = "ok"
                if offset_ms:
                    self.metrics.late_start.observe(offset_ms / 1000.0)
            timings.total = (time.perf_counter() - t0) * 1000.0
            self.metrics.stage_seconds.labels("total").observe(timings.total / 1000.0)
            self.metrics.fragments.labels(status).inc()
            return FragmentProcessed(**base, status=status, transcript=transcript, results=results,
                                     timings_ms=timings, start_offset_ms=offset_ms)
        except DeadlineExceeded as late:
            code = ErrorCode.DEADLINE_EXCEEDED if late.hard else ErrorCode.TIMEOUT
            error = FragmentError(code=code, stage=late.stage, message=late.message, retryable=not late.hard)
        except StageFailure as fail:
            error = FragmentError(code=fail.code, stage=fail.stage, message=fail.message,
                                  retryable=fail.retryable)
        except Exception as exc:  # pragma: no cover - defensive: a bug must not lose the fragment
            log.exception("internal error on %s/%s", frag.stream_id, frag.fragment_id)
            error = FragmentError(code=ErrorCode.INTERNAL, stage="internal", message=str(exc), retryable=True)
        if heard is not None:
            heard.commit("")  # the next fragment is heard cold (a no-op if ASR had already answered)
        timings.total = (time.perf_counter() - t0) * 1000.0
        self.metrics.fragments.labels("failed").inc()
        self.metrics.errors.labels(error.code).inc()
        log.log(logging.INFO if error.code == ErrorCode.DEADLINE_EXCEEDED else logging.WARNING,
                "fragment failed stream_id=%s fragment_id=%s code=%s stage=%s: %s",
                    frag.stream_id, frag.fragment_id, error.code, error.stage, error.message)
        return FragmentProcessed(**base, status="failed", timings_ms=timings, error=error)
