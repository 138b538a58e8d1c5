"""The one interface every translation engine implements, so the pipeline can swap engines by name."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Context:
    """What the stream said before this text, oldest first: ``(source text, its translation)``
    pairs, the translation "" while it is not known yet. Engines that can use it
    (``takes_context = True``: the LLM, DeepL, CTranslate2) read it so that a sentence cut across fragments
    reads as one sentence; the others never see it."""

    previous: tuple[tuple[str, str], ...] = ()

    def source_text(self) -> str:
        return " ".join(s for s, _ in self.previous if s).strip()

    def __bool__(self) -> bool:
        return bool(self.previous)
