"""Translation engines behind one interface; ``make_translator(name, **options)`` picks one by name."""

from __future__ import annotations

from typing import Any

from .apertium import ApertiumTranslator
from .base import Context, TranslationError, Translator
from .deepl import DeepLTranslator
from .google import GoogleTranslator

ENGINES = ("apertium", "deepl", "google", "openai")


def make_translator(engine: str = "apertium", **options: Any) -> Translator:
    """Build a translator. Cloud engines read their API key from the environment if not given."""
    if engine == "apertium":
        return ApertiumTranslator(**options)
    if engine == "deepl":
        return DeepLTranslator(**options)
    if engine == "google":
        return GoogleTranslator(**options)
    if engine == "openai":
        from .llm import OpenAIChatTranslator

        return OpenAIChatTranslator(**options)
    raise ValueError(f"unknown translation engine {engine!r}; choose one of {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "ApertiumTranslator",
    "Context",
    "DeepLTranslator",
    "GoogleTranslator",
    "TranslationError",
    "Translator",
    "make_translator",
]
