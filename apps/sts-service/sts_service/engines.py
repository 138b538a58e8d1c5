"""Builds the ASR, translation and TTS engines named by the config, once, at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .asr.whisper import WhisperASR
from .config import StsConfig
from .translation import Translator
from .translation.configure import build_translator
from .tts import EspeakSynthesizer, make_synthesizer
from .tts.voices import LanguageVoices, Voice, VoiceMap, build_voice_map

log = logging.getLogger(__name__)


@dataclass
class Engines:
    asr: WhisperASR
    translator: Translator
    synthesizer: VoiceMap
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
        languages = self.target_languages(source)
        return {
            "asr": self.asr.name,
            "translation": self.translator.name,
            "translators": _translators(self.translator, source, self.target_languages(source)),  # v1.2
            "tts": self.synthesizer.name,
            "languages": languages,
            "voices": self.synthesizer.describe(languages),  # v1.2
        }


def _translators(translator: Translator, source: str, targets: list[str]) -> dict[str, str]:
    """The MT engine of each reachable target (a router knows one per pair)."""
    names = getattr(translator, "names", None)
    by_target = names(source) if names else {t: translator.name for s, t in translator.pairs() if s == source}
    return {t: by_target[t] for t in targets if t in by_target}


def _asr(cfg: StsConfig):
    if cfg.asr_engine == "openai":
        from .asr.openai import OpenAITranscriber

        return OpenAITranscriber(cfg.asr_url or "", cfg.asr_server_model, cfg.asr_api_key,
                                 timeout=cfg.asr_timeout_s, use_prompt=cfg.asr_prompt)
    return WhisperASR(cfg.asr_model_path(), device=cfg.asr_device, compute_type=cfg.asr_compute_type,
                      beam_size=cfg.asr_beam_size,
                      cpu_threads=cfg.asr_threads, num_workers=cfg.asr_workers,
                      use_prompt=cfg.asr_prompt, min_window=cfg.asr_min_window)


def _voices(cfg: StsConfig) -> VoiceMap:
    """The voice of each language: a model server speaks the languages it is configured for;
    otherwise the `--tts-voice` map (with `--tts-engine/--tts-model` as its first entry)."""
    espeak = EspeakSynthesizer()
    if cfg.tts_engine == "openai":
        server = make_synthesizer("openai", base_url=cfg.tts_url or "", model=cfg.tts_server_model,
                                  api_key=cfg.tts_api_key, voice=cfg.tts_server_voice,
                                  langs=cfg.tts_server_languages, timeout=cfg.tts_timeout_s)
        voices = {lang: LanguageVoices(Voice(server), None, fallback=False) for lang in server.languages()}
        return VoiceMap(voices, espeak, high_pitch_hz=cfg.tts_high_pitch_hz)
    specs = cfg.voice_specs()
    legacy = cfg.tts_engine in ("piper", "coqui") and cfg.tts_model and cfg.tts_config
    config_paths = {(specs[0].language, False): cfg.tts_config} if legacy else {}  # --tts-config: specs[0]
    return build_voice_map(specs, espeak, high_pitch_hz=cfg.tts_high_pitch_hz, config_paths=config_paths)


def load_engines(cfg: StsConfig) -> Engines:
    """Blocking: loads the models. Call from an executor."""
    asr = _asr(cfg)
    translator = build_translator(cfg)
    synthesizer = _voices(cfg)
    engines = Engines(asr, translator, synthesizer)
    engines.capabilities()  # probes the engines (espeak-ng --voices) here, not on the event loop
    log.info("engines loaded: asr=%s translation=%s tts=%s", asr.name, translator.name, synthesizer.name)
    targets = sorted({t for _, t in translator.pairs()} & synthesizer.languages())
    for lang, info in synthesizer.describe(targets).items():
        log.info("voice %s: %s%s%s", lang, info["voice"],
                 f", high-pitched speakers: {info['high_voice']}" if info["high_voice"] else "",
                 " (no voice configured: espeak-ng fallback)" if info["fallback"] else "")
    return engines
