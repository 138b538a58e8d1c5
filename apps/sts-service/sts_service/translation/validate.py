"""Is an LLM's answer a translation and nothing else? Whatever it answers is spoken on air, so
anything that looks like a chat reply (a preamble, a note, quotes around it, several lines, the
wrong script, far too long or short, the source handed back) is refused: the fragment then
fails as any failed translation does, and its span keeps the original audio."""

from __future__ import annotations

import re

from . import languages
from .base import TranslationError

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
# Openings of a reply about the text rather than a translation of it (in English and the usual targets).
_PREAMBLE = re.compile(
    r"^\W*(here is|here's|here are|sure\b|certainly|of course|the translation|translation\s*:|translated|"
    r"i (can|cannot|can't|am unable|'m unable|will)|as an ai|note\s*:|aquí (tienes|está)|la traducci[oó]n|"
    r"traducci[oó]n\s*:|voici|la traduction|hier ist|die übersetzung|ecco|a tradução|tradu[cç][aã]o\s*:)",
    re.I)
_NOTE = re.compile(r"\((note|translation|translated|literally|lit\.)[^)]*\)|\bnote\s*:", re.I)
_QUOTES = [('"', '"'), ("“", "”"), ("«", "»"), ("„", "“"), ("'", "'"), ("‘", "’"), ("「", "」")]
MIN_RATIO, MAX_RATIO = 0.35, 3.0  # output/input length in characters
SLACK_CHARS = 25  # short texts: a few words may legitimately double or halve
MIN_SCRIPT_SHARE = 0.8


def clean_answer(answer: str) -> str:
    """The answer without a reasoning model's <think> block and surrounding whitespace."""
    return _THINK.sub("", answer).strip()


def _quoted(text: str) -> bool:
    return any(len(text) >= 2 and text.startswith(a) and text.endswith(b) for a, b in _QUOTES)


def check_translation(source_text: str, answer: str, source: str, target: str) -> str:
    """`answer` cleaned, or TranslationError naming why it is not a bare translation."""
    src = source_text.strip()
    out = clean_answer(answer)

    def refuse(why: str) -> TranslationError:
        return TranslationError(f"answer refused ({why}): {out[:80]!r}")

    if not out:
        raise refuse("empty")
    if "```" in out or out.startswith(("#", "* ", "- ")):
        raise refuse("markup")
    if out.count("\n") > src.count("\n"):
        raise refuse("more lines than the source")
    if _PREAMBLE.match(out) and not _PREAMBLE.match(src):
        raise refuse("a reply, not a translation")
    if _NOTE.search(out) and not _NOTE.search(src):
        raise refuse("a note")
    if _quoted(out) and not _quoted(src):
        raise refuse("quoted")
    n_src, n_out = len(src), len(out)
    if n_out > max(MAX_RATIO * n_src, n_src + SLACK_CHARS) or n_out < min(MIN_RATIO * n_src, n_src - SLACK_CHARS):
        raise refuse(f"length {n_out} for a source of {n_src} characters")
    share = languages.script_share(out, target)
    if share is not None and share < MIN_SCRIPT_SHARE:
        raise refuse(f"not in {languages.name(target)} script")
    if source != target and out.casefold() == src.casefold() and len(src.split()) >= 4:
        raise refuse("the source handed back")
    return out
