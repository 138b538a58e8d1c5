"""The one interface every TTS engine implements, so the pipeline can swap engines by name."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class SynthesisError(Exception):
    """Raised when an engine cannot turn text into audio (bad language, engine failure)."""


@runtime_checkable
class Synthesizer(Protocol):
    """Text -> float32 mono audio in [-1, 1] at the engine's native sample rate."""

    name: str

    def languages(self) -> set[str]:
        """ISO 639-1 codes this engine can speak."""
        ...

    def synthesize(self, text: str, language: str, voice: str | None = None) -> tuple[np.ndarray, int]:
        """Return ``(audio, sample_rate)``; blocking, called from a worker thread."""
        ...
