"""TTS engines behind one interface; ``make_synthesizer(name, **options)`` picks one by name."""

from __future__ import annotations

from typing import Any

from .base import SynthesisError, Synthesizer
from .espeak import EspeakSynthesizer

ENGINES = ("espeak", "piper", "coqui", "openai")


def make_synthesizer(engine: str = "espeak", **options: Any) -> Synthesizer:
    """Build a synthesizer; heavy engines are imported only when asked for."""
    if engine == "espeak":
        return EspeakSynthesizer(**options)
    if engine == "piper":
        from .piper import PiperSynthesizer

        return PiperSynthesizer(**options)
    if engine == "coqui":
        from .coqui import CoquiSynthesizer  # optional extra, imports torch

        return CoquiSynthesizer(**options)
    if engine == "openai":
        from .openai_speech import OpenAISpeechSynthesizer

        return OpenAISpeechSynthesizer(**options)
    raise ValueError(f"unknown TTS engine {engine!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "EspeakSynthesizer", "SynthesisError", "Synthesizer", "make_synthesizer"]
