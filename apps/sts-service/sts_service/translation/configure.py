"""The service's translator from its configuration: the default engine and the ``--mt-model`` pairs."""

from __future__ import annotations

import logging

from . import make_translator
from .base import Translator
from .router import PairRouter, build_router, parse_mt_models

log = logging.getLogger(__name__)


def build_translator(cfg) -> PairRouter:
    """Blocking (loads models); `cfg` is the StsConfig."""
    shared: dict[str, Translator] = {}

    def engine(name: str, model: str = "") -> Translator:
        if name == "openai":
            key = f"openai:{model or cfg.llm_model}"
            if key not in shared:
                shared[key] = make_translator("openai", base_url=cfg.llm_url or "", model=model or cfg.llm_model or "",
                                              api_key=cfg.llm_api_key, timeout=cfg.translation_timeout_s)
            return shared[key]
        if name not in shared:
            shared[name] = make_translator(name)
        return shared[name]

    def make(name: str, arg: str, pairs: set[tuple[str, str]]) -> Translator:
        if name == "ctranslate2":
            from .ct2 import CTranslate2Translator

            return CTranslate2Translator(arg, pairs)
        return engine(name, arg)

    router = build_router(engine(cfg.translation_engine), parse_mt_models(cfg.mt_models), make)
    for pair, eng in sorted(router.by_pair.items()):
        log.info("translation %s->%s: %s", pair[0], pair[1], eng.name)
    return router
