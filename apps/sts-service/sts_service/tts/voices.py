"""Per-language voices: which engine and model speaks each target language, and for whom.

``--tts-voice LANG=ENGINE[:PATH]`` (repeatable; ``STS_TTS_VOICES`` comma-separated) names the voice
of one language: ``es=piper:/models/es_ES-davefx-medium.onnx``, ``de=coqui:/models/de/model.pth``,
``ca=espeak`` (or ``ca=espeak:ca+m3``: PATH is the espeak-ng voice name). ``LANG.high=ENGINE[:PATH]``
adds a second voice for high-pitched speakers, chosen per fragment when the source speech's median
pitch is at or above ``--tts-high-pitch-hz``. An espeak-ng voice without a configured second voice
gets espeak-ng's female variant ``+f3`` as its high voice; a model voice without one keeps speaking
for everyone (swapping a neural voice for formant synthesis mid-stream is worse than a pitch
mismatch). Every language no voice is configured for falls back to espeak-ng, and
:meth:`VoiceMap.describe` says so (the init ack's ``capabilities.voices``, the start-up log).

Models are loaded once, at start (a language and its high voice naming the same model share it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import SynthesisError, Synthesizer
from .espeak import installed_voices

log = logging.getLogger(__name__)

VOICE_ENGINES = ("piper", "coqui", "espeak")
HIGH_VARIANT = "+f3"  # espeak-ng female variant used as the high voice of an espeak-ng language
_KEY = re.compile(r"^([a-z]{2,3}(?:-[a-z0-9]{2,8})?)(\.high)?$")


@dataclass(frozen=True)
class VoiceSpec:
    """One ``LANG[.high]=ENGINE[:PATH]`` entry."""

    language: str
    high: bool
    engine: str
    path: str | None

    @property
    def text(self) -> str:
        key = f"{self.language}.high" if self.high else self.language
        return f"{key}={self.engine}" + (f":{self.path}" if self.path else "")


def parse_voice_spec(item: str) -> VoiceSpec:
    """``es=piper:/m/es.onnx`` -> VoiceSpec; ValueError saying what is wrong."""
    key, sep, value = item.strip().partition("=")
    if not sep or not value:
        raise ValueError(f"{item!r} is not LANG=ENGINE[:PATH] (e.g. es=piper:/models/es.onnx, ca=espeak)")
    m = _KEY.match(key.strip().lower())
    if not m:
        raise ValueError(f"{item!r}: {key!r} is not a language code (optionally followed by .high)")
    engine, _, path = value.strip().partition(":")
    engine = engine.strip().lower()
    if engine not in VOICE_ENGINES:
        raise ValueError(f"{item!r}: unknown engine {engine!r} (choose {', '.join(VOICE_ENGINES)})")
    path = path.strip() or None
    if engine in ("piper", "coqui") and not path:
        raise ValueError(f"{item!r}: {engine} needs a model path ({engine}:/path/to/model)")
    return VoiceSpec(m[1], bool(m[2]), engine, path)


def parse_voice_specs(items) -> list[VoiceSpec]:
    """Every entry (each item may hold several, comma-separated); one voice per language and slot."""
    specs: list[VoiceSpec] = []
    seen: dict[tuple[str, bool], str] = {}
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            spec = parse_voice_spec(part)
            slot = (spec.language, spec.high)
            if slot in seen:
                raise ValueError(f"two voices for {spec.text.split('=')[0]}: {seen[slot]!r} and {spec.text!r}")
            seen[slot] = spec.text
            specs.append(spec)
    for lang, high in seen:
        if high and (lang, False) not in seen:
            raise ValueError(f"{lang}.high is set but {lang} has no voice: give {lang}=ENGINE[:PATH] too")
    return specs


@dataclass
class Voice:
    """A loaded engine and the engine voice id it speaks with (espeak-ng voice name, speaker)."""

    synthesizer: Synthesizer
    voice_id: str | None = None

    @property
    def name(self) -> str:
        return self.synthesizer.name + (f":{self.voice_id}" if self.voice_id else "")

    def synthesize(self, text: str, language: str, voice: str | None = None) -> tuple[np.ndarray, int]:
        return self.synthesizer.synthesize(text, language, voice or self.voice_id)


@dataclass
class LanguageVoices:
    main: Voice
    high: Voice | None
    fallback: bool  # no voice configured: espeak-ng


class VoiceMap:
    """The Synthesizer the pipeline calls: routes each language to its voice, pitch picks the high one."""

    def __init__(self, voices: dict[str, LanguageVoices], espeak: Synthesizer, high_pitch_hz: float = 165.0):
        self._voices = voices
        self._espeak = espeak
        self.high_pitch_hz = high_pitch_hz
        engines = sorted({v.main.synthesizer.name.split(":", 1)[0] for v in voices.values()} | {espeak.name})
        self.name = "+".join(engines)

    # -- Synthesizer interface ----------------------------------------------------------------
    def languages(self) -> set[str]:
        return set(self._voices) | set(self._espeak.languages())

    def synthesize(self, text: str, language: str, voice: str | None = None) -> tuple[np.ndarray, int]:
        return self.select(language).synthesize(text, language, voice)

    # -- routing --------------------------------------------------------------------------------
    def voices_for(self, language: str) -> LanguageVoices:
        found = self._voices.get(language)
        if found is not None:
            return found
        if language not in self._espeak.languages():
            raise SynthesisError(f"no voice for language {language!r}")
        base = getattr(self._espeak, "voices", {}).get(language)
        return LanguageVoices(Voice(self._espeak, base), Voice(self._espeak, f"{base}{HIGH_VARIANT}") if base else None,
                              fallback=True)

    def select(self, language: str, pitch_hz: float | None = None) -> Voice:
        """The voice for a fragment whose source speech has median pitch `pitch_hz` (None: unknown)."""
        lv = self.voices_for(language)
        if lv.high is not None and pitch_hz is not None and pitch_hz >= self.high_pitch_hz:
            return lv.high
        return lv.main

    def wants_pitch(self, languages) -> bool:
        """Whether any of `languages` has a high voice (else the pitch need not be measured)."""
        return any(self.voices_for(lang).high is not None for lang in languages if lang in self.languages())

    def describe(self, languages) -> dict[str, dict]:
        """``{lang: {"voice", "high_voice", "fallback"}}`` for the init ack's capabilities."""
        out = {}
        for lang in languages:
            lv = self.voices_for(lang)
            out[lang] = {"voice": lv.main.name, "high_voice": lv.high.name if lv.high else None,
                         "fallback": lv.fallback}
        return out

    def fallback_languages(self, languages) -> list[str]:
        return sorted(lang for lang in languages if lang not in self._voices)


def _load(spec: VoiceSpec, cache: dict, *, espeak: Synthesizer, config_path: str | None = None) -> Voice:
    if spec.engine == "espeak":
        voice_id = spec.path
        if voice_id is None:
            voice_id = getattr(espeak, "voices", {}).get(spec.language)
            if voice_id is None:
                raise SynthesisError(f"espeak-ng has no default voice for {spec.language!r}: name one "
                                     f"({spec.language}=espeak:VOICE)")
            if spec.high:
                voice_id += HIGH_VARIANT
        binary = getattr(espeak, "_binary", None)
        if binary and voice_id.split("+", 1)[0].lower() not in installed_voices(binary):
            raise SynthesisError(f"{spec.text}: espeak-ng has no voice {voice_id!r} (see espeak-ng --voices)")
        return Voice(espeak, voice_id)
    key = (spec.engine, str(Path(spec.path).expanduser().resolve()), config_path, spec.language)
    synth = cache.get(key)
    if synth is None:
        from . import make_synthesizer

        options = {"model_path": spec.path, "language": spec.language}
        if config_path:
            options["config_path"] = config_path
        synth = cache[key] = make_synthesizer(spec.engine, **options)
    if spec.language not in synth.languages():
        raise SynthesisError(f"{spec.text}: {synth.name} speaks {sorted(synth.languages())}, not {spec.language!r}")
    return Voice(synth)


def build_voice_map(specs: list[VoiceSpec], espeak: Synthesizer, *, high_pitch_hz: float = 165.0,
                    config_paths: dict[tuple[str, bool], str] | None = None) -> VoiceMap:
    """Load every configured voice (blocking: call at start). `config_paths` gives a model's config
    file where it is not beside the model (the legacy ``--tts-config``)."""
    cache: dict = {}
    config_paths = config_paths or {}
    loaded: dict[tuple[str, bool], Voice] = {}
    for spec in specs:
        loaded[(spec.language, spec.high)] = _load(spec, cache, espeak=espeak,
                                                   config_path=config_paths.get((spec.language, spec.high)))
    voices = {}
    for (lang, high), voice in loaded.items():
        if high:
            continue
        second = loaded.get((lang, True))
        if second is None and voice.synthesizer is espeak:
            second = Voice(espeak, f"{voice.voice_id.split('+', 1)[0]}{HIGH_VARIANT}")
        voices[lang] = LanguageVoices(voice, second, fallback=False)
    return VoiceMap(voices, espeak, high_pitch_hz)
