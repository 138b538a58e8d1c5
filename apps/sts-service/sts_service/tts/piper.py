"""Piper neural TTS (``piper-tts``): natural voices, one ``.onnx`` voice file per language.

The voice is loaded once in the constructor (no download: the path must exist). Synthesis is
serialised by a lock because piper's espeak phonemizer keeps global C state.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .base import SynthesisError


class PiperSynthesizer:
    """One Piper voice for one language. Thread-safe (calls are serialised)."""

    def __init__(
        self,
        model_path: str,
        config_path: str | None = None,
        language: str = "en",
        *,
        length_scale: float | None = None,
        speaker: str | None = None,
    ) -> None:
        model = Path(model_path)
        if not model.is_file():
            raise SynthesisError(f"Piper voice model not found: {model}")
        config = Path(config_path) if config_path else Path(f"{model}.json")
        if not config.is_file():
            raise SynthesisError(f"Piper voice config not found: {config}")
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:  # pragma: no cover - piper-tts is a core dependency
            raise SynthesisError("piper-tts is not installed (pip install piper-tts)") from exc
        self._syn_config_cls = SynthesisConfig
        self._voice = PiperVoice.load(model, config_path=config)
        self.sample_rate = int(self._voice.config.sample_rate)
        self.language = language
        self.length_scale = length_scale
        self.speaker = speaker
        self.name = f"piper:{model.stem}"
        self._lock = threading.Lock()

    def languages(self) -> set[str]:
        return {self.language}

    def _speaker_id(self, voice: str | None) -> int | None:
        voice = voice or self.speaker
        if voice is None:
            return None
        ids = self._voice.config.speaker_id_map
        if voice in ids:
            return int(ids[voice])
        if voice.isdigit() and int(voice) < max(1, self._voice.config.num_speakers):
            return int(voice)
        raise SynthesisError(f"Piper voice {self.name} has no speaker {voice!r}")

    def synthesize(self, text: str, language: str, voice: str | None = None) -> tuple[np.ndarray, int]:
        if language != self.language:
            raise SynthesisError(f"{self.name} speaks {self.language!r}, not {language!r}")
        cfg = self._syn_config_cls(speaker_id=self._speaker_id(voice), length_scale=self.length_scale)
        try:
            with self._lock:
                chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=cfg)]
        except Exception as exc:
            raise SynthesisError(f"{self.name} failed: {exc}") from exc
        if not chunks:
            return np.zeros(0, dtype=np.float32), self.sample_rate
        return np.concatenate(chunks).astype(np.float32, copy=False), self.sample_rate
