"""Which engine translates which pair: ``--mt-model SRC-TGT=ENGINE[:ARG]`` entries, the rest
``--translation-engine``. The router is the pipeline's one translator; it hands the stream's
context and the call's time budget only to the engines that take them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .base import Context, TranslationError, Translator

ENGINES_BY_PAIR = ("apertium", "deepl", "google", "ctranslate2", "openai")
_ENTRY = re.compile(r"^([a-z]{2,3})-([a-z]{2,3})=([a-z0-9]+)(?::(.+))?$")


@dataclass(frozen=True)
class MtSpec:
    """One ``--mt-model`` entry: `arg` is the model directory (ctranslate2) or model name (openai)."""

    source: str
    target: str
    engine: str
    arg: str
    text: str


def parse_mt_models(entries: Iterable[str]) -> dict[tuple[str, str], MtSpec]:
    """``["en-es=ctranslate2:/models/opus-mt-en-es", "en-ca=openai"]`` -> specs by pair (ValueError
    names the bad entry)."""
    specs: dict[tuple[str, str], MtSpec] = {}
    for raw in entries:
        text = raw.strip()
        m = _ENTRY.match(text)
        if not m:
            raise ValueError(f"{text!r} is not SRC-TGT=ENGINE[:PATH or MODEL] (e.g. en-es=ctranslate2:/models/x)")
        source, target, engine, arg = m[1], m[2], m[3], (m[4] or "").strip()
        if engine not in ENGINES_BY_PAIR:
            raise ValueError(f"{text!r}: unknown engine {engine!r} (choose {', '.join(ENGINES_BY_PAIR)})")
        if engine == "ctranslate2" and not arg:
            raise ValueError(f"{text!r}: ctranslate2 needs the model directory (ctranslate2:/path)")
        if engine in ("apertium", "deepl", "google") and arg:
            raise ValueError(f"{text!r}: {engine} takes no argument")
        if source == target:
            raise ValueError(f"{text!r}: source and target are the same language")
        if (source, target) in specs:
            raise ValueError(f"{text!r}: {source}-{target} is given twice")
        specs[(source, target)] = MtSpec(source, target, engine, arg, text)
    return specs


class PairRouter:
    """The default engine, and per-pair engines over it."""

    takes_context = True
    remote = True

    def __init__(self, default: Translator, by_pair: dict[tuple[str, str], Translator] | None = None) -> None:
        self.default = default
        self.by_pair = dict(by_pair or {})
        names = [default.name, *sorted({e.name for e in self.by_pair.values()} - {default.name})]
        self.name = "+".join(names)

    def engine(self, source: str, target: str) -> Translator:
        return self.by_pair.get((source, target), self.default)

    def pairs(self) -> set[tuple[str, str]]:
        return set(self.default.pairs()) | set(self.by_pair)

    def names(self, source: str) -> dict[str, str]:
        """The engine of each target reachable from `source` (the init ack's `capabilities.translators`)."""
        return {t: self.engine(s, t).name for s, t in sorted(self.pairs()) if s == source}

    def translate(self, text: str, source: str, target: str, *, context: Context | None = None,
                  timeout: float | None = None) -> str:
        engine = self.engine(source, target)
        kwargs: dict[str, Any] = {}
        if context and getattr(engine, "takes_context", False):
            kwargs["context"] = context
        if timeout is not None and getattr(engine, "remote", False):
            kwargs["timeout"] = timeout
        return engine.translate(text, source, target, **kwargs)

    def close(self) -> None:
        for engine in {id(e): e for e in [self.default, *self.by_pair.values()]}.values():
            close = getattr(engine, "close", None)
            if close:
                close()


def build_router(default: Translator, specs: dict[tuple[str, str], MtSpec], make) -> PairRouter:
    """`make(engine, arg, pairs)` builds an engine; one instance per (engine, arg), so an NLLB
    model configured for several pairs is loaded once. Each pair is checked against its engine."""
    groups: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for pair, spec in specs.items():
        groups.setdefault((spec.engine, spec.arg), set()).add(pair)
    built = {key: make(key[0], key[1], pairs) for key, pairs in groups.items()}
    by_pair = {}
    for pair, spec in specs.items():
        engine = built[(spec.engine, spec.arg)]
        if pair not in engine.pairs():
            raise TranslationError(f"--mt-model {spec.text}: {engine.name} cannot translate {pair[0]}->{pair[1]}")
        by_pair[pair] = engine
    return PairRouter(default, by_pair)
