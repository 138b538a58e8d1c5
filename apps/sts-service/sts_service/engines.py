"""Builds the ASR, translation and TTS engines named by the config, once, at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .asr import WhisperASR
from .config import StsConfig
from .translation import Translator
from .translation.configure import build_translator
from .tts import Synthesizer, make_synthesizer

log = logging.getLogger(__name__)


@dataclass
class Engines:
    asr: WhisperASR
    translator: Translator
    synthesizer: Synthesizer
    _targets: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def target_languages(self, source: str) -> list[str]:
        """Targets reachable from `source`: a translation pair and a voice for the target.

        Worked out once per source language (the engines' lists do not change while running).
        """
        if source not in self._targets:
            voices = self.synthesizer.languages()
            self._targets[source] = sorted(t for s, t in self.translator.pairs() if s == source and t in voices)
        return self._targets[source]

    def capabilities(self, source: str = "en") -> dict:
        return {
            "asr": self.asr.name,
            "translation": self.translator.name,
            "translators": _translators(self.translator, source, self.target_languages(source)),  # v1.2
            "tts": self.synthesizer.name,
            "languages": self.target_languages(source),
        }


def _translators(translator: Translator, source: str, targets: list[str]) -> dict[str, str]:
    """The MT engine of each reachable target (a router knows one per pair)."""
    names = getattr(translator, "names", None)
    by_target = names(source) if names else {t: translator.name for s, t in translator.pairs() if s == source}
    return {t: by_target[t] for t in targets if t in by_target}


def _asr(cfg: StsConfig):
    if cfg.asr_engine == "openai":
        from .asr_openai import OpenAITranscriber

        return OpenAITranscriber(cfg.asr_url or "", cfg.asr_server_model, cfg.asr_api_key,
                                 timeout=cfg.asr_timeout_s, use_prompt=cfg.asr_prompt)
    return WhisperASR(cfg.asr_model, compute_type=cfg.asr_compute_type, beam_size=cfg.asr_beam_size,
                      cpu_threads=cfg.asr_threads, num_workers=cfg.asr_workers,
                      use_prompt=cfg.asr_prompt, min_window=cfg.asr_min_window)


def load_engines(cfg: StsConfig) -> Engines:
    """Blocking: loads the models. Call from an executor."""
    asr = _asr(cfg)
    translator = build_translator(cfg)
    tts_options = {}
    if cfg.tts_engine == "openai":
        tts_options = {"base_url": cfg.tts_url or "", "model": cfg.tts_server_model, "api_key": cfg.tts_api_key,
                       "voice": cfg.tts_server_voice, "langs": cfg.tts_server_languages,
                       "timeout": cfg.tts_timeout_s}
    elif cfg.tts_model:
        tts_options["model_path"] = cfg.tts_model
    if cfg.tts_config and cfg.tts_engine != "openai":
        tts_options["config_path"] = cfg.tts_config
    if cfg.tts_language and cfg.tts_engine in ("piper", "coqui"):
        tts_options["language"] = cfg.tts_language
    synthesizer = make_synthesizer(cfg.tts_engine, **tts_options)
    engines = Engines(asr, translator, synthesizer)
    engines.capabilities()  # probes the engines (espeak-ng --voices) here, not on the event loop
    log.info("engines loaded: asr=%s translation=%s tts=%s", asr.name, translator.name, synthesizer.name)
    return engines
