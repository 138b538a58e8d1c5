"""The one interface every translation engine implements, so the pipeline can swap engines by name."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class TranslationError(Exception):
    """Raised when an engine cannot translate (unsupported pair, engine or HTTP failure)."""


@runtime_checkable
class Translator(Protocol):
    """Text in one ISO 639-1 language -> text in another."""

    name: str

    def pairs(self) -> set[tuple[str, str]]:
        """Supported ``(source, target)`` ISO 639-1 pairs."""
        ...

    def translate(self, text: str, source: str, target: str) -> str:
        """Blocking; called from a worker thread."""
        ...
