"""Per-language voices: the `--tts-voice` syntax, which voice speaks a fragment, the pitch estimate."""

from __future__ import annotations

import numpy as np
import pytest
from sts_service.config import ConfigError
from sts_service.config import parse_args as sts_args
from sts_service.pitch import median_pitch_hz
from sts_service.tts.voices import LanguageVoices, Voice, VoiceMap, VoiceSpec, parse_voice_specs


def test_voice_entries_are_parsed():
    specs = parse_voice_specs(["es=piper:/m/es.onnx,ca=espeak", "ca.high=espeak:ca+f4", " DE=coqui:/m/de.pth "])
    assert specs == [VoiceSpec("es", False, "piper", "/m/es.onnx"), VoiceSpec("ca", False, "espeak", None),
                     VoiceSpec("ca", True, "espeak", "ca+f4"), VoiceSpec("de", False, "coqui", "/m/de.pth")]
    assert specs[2].text == "ca.high=espeak:ca+f4"


@pytest.mark.parametrize("item, message", [
    ("es", "not LANG=ENGINE"),
    ("es=", "not LANG=ENGINE"),
    ("spanish=espeak", "not a language code"),
    ("es=festival", "unknown engine 'festival'"),
    ("es=piper", "piper needs a model path"),
    ("es=espeak,es=espeak:es+m3", "two voices for es"),
    ("es.high=espeak", "es has no voice"),
])
def test_bad_voice_entries_say_what_is_wrong(item, message):
    with pytest.raises(ValueError, match=message):
        parse_voice_specs([item])


def test_flag_repeats_and_replaces_the_variable(tmp_path):
    model = tmp_path / "es.onnx"
    model.write_bytes(b"x")
    env = {"STS_TTS_VOICES": "fr=espeak"}
    assert sts_args(["--no-auth"], env).tts_voices == ("fr=espeak",)
    cfg = sts_args(["--no-auth", "--tts-voice", f"es=piper:{model}", "--tts-voice", "ca=espeak,de=espeak"], env)
    assert cfg.tts_voices == (f"es=piper:{model}", "ca=espeak", "de=espeak")  # the flag wins over the variable
    assert [s.language for s in cfg.voice_specs()] == ["es", "ca", "de"]


def test_voice_config_errors_name_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"--tts-voice \(STS_TTS_VOICES\).*does not exist"):
        sts_args(["--no-auth", "--tts-voice", f"es=piper:{tmp_path}/missing.onnx"], {})
    with pytest.raises(ConfigError, match=r"--tts-voice \(STS_TTS_VOICES\).*unknown engine"):
        sts_args(["--no-auth"], {"STS_TTS_VOICES": "es=sam"})
    model = tmp_path / "v.onnx"
    model.write_bytes(b"x")
    with pytest.raises(ConfigError, match="both give a voice for 'es'"):
        sts_args(["--no-auth", "--tts-engine", "piper", "--tts-model", str(model), "--tts-language", "es",
                  "--tts-voice", "es=espeak"], {})
    with pytest.raises(ConfigError, match="--tts-high-pitch-hz"):
        sts_args(["--no-auth", "--tts-high-pitch-hz", "20"], {})


def test_single_model_flags_become_the_first_voice(tmp_path):
    model = tmp_path / "v.onnx"
    model.write_bytes(b"x")
    cfg = sts_args(["--no-auth", "--tts-engine", "piper", "--tts-model", str(model), "--tts-voice", "ca=espeak"], {})
    assert cfg.voice_specs() == [VoiceSpec("en", False, "piper", str(model)), VoiceSpec("ca", False, "espeak", None)]


class FakeSynth:
    def __init__(self, name, langs, voices=None):
        self.name, self._langs, self.voices = name, set(langs), voices or {}

    def languages(self):
        return self._langs

    def synthesize(self, text, language, voice=None):
        return np.zeros(10, np.float32), 16000


def test_pitch_picks_the_high_voice_and_unconfigured_languages_fall_back():
    espeak = FakeSynth("espeak-ng", {"es", "ca", "fr"}, {"es": "es", "ca": "ca", "fr": "fr-fr"})
    low, high = FakeSynth("piper:es_low", {"es"}), FakeSynth("piper:es_high", {"es"})
    vm = VoiceMap({"es": LanguageVoices(Voice(low), Voice(high), fallback=False)}, espeak, high_pitch_hz=165)
    assert vm.select("es", 120.0).name == "piper:es_low"
    assert vm.select("es", 165.0).name == "piper:es_high"
    assert vm.select("es", None).name == "piper:es_low"  # no pitch measured: the main voice
    assert vm.select("fr", 100.0).name == "espeak-ng:fr-fr"
    assert vm.select("fr", 230.0).name == "espeak-ng:fr-fr+f3"  # espeak-ng's female variant
    assert vm.describe(["es", "ca"]) == {
        "es": {"voice": "piper:es_low", "high_voice": "piper:es_high", "fallback": False},
        "ca": {"voice": "espeak-ng:ca", "high_voice": "espeak-ng:ca+f3", "fallback": True}}
    assert vm.fallback_languages(["es", "ca", "fr"]) == ["ca", "fr"]
    assert vm.languages() == {"es", "ca", "fr"} and vm.name == "espeak-ng+piper"
    assert vm.wants_pitch(["es"])
    single = VoiceMap({"es": LanguageVoices(Voice(low), None, fallback=False)}, espeak)
    assert not single.wants_pitch(["es"]) and single.select("es", 300.0).name == "piper:es_low"


def harmonic(f0: float, seconds: float = 1.5, rate: int = 16000, jitter: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    f = f0 * (1 + jitter * np.sin(2 * np.pi * 3 * t))  # a slow glide, like intonation
    phase = 2 * np.pi * np.cumsum(f) / rate
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 10))).astype(np.float32)


@pytest.mark.parametrize("f0", [85.0, 120.0, 180.0, 260.0, 400.0])
def test_median_pitch_of_a_voiced_sound(f0):
    got = median_pitch_hz(harmonic(f0, jitter=0.05), 16000)
    assert got == pytest.approx(f0, rel=0.03)


def test_pitch_ignores_silence_and_noise():
    rng = np.random.default_rng(1)
    assert median_pitch_hz(np.zeros(16000, np.float32), 16000) is None
    assert median_pitch_hz(rng.normal(0, 0.1, 32000).astype(np.float32), 16000) is None
    speech = np.concatenate([np.zeros(8000, np.float32), harmonic(210.0), rng.normal(0, 1e-4, 8000).astype(np.float32)])
    assert median_pitch_hz(speech, 16000) == pytest.approx(210.0, rel=0.03)
    assert median_pitch_hz(harmonic(150.0, seconds=0.05), 16000) is None  # too short to tell


def test_init_ack_voices_are_optional_in_the_contract():
    from livedub_protocol import StreamInitAck, parse

    base = {"ok": True, "session_id": "s", "max_inflight": 2,
            "capabilities": {"asr": "a", "translation": "t", "tts": "espeak-ng", "languages": ["es"]}}
    assert parse(StreamInitAck, base).capabilities.voices is None  # a v1.1 server
    base["capabilities"]["voices"] = {"es": {"voice": "piper:es", "high_voice": None, "fallback": False}}
    assert parse(StreamInitAck, base).capabilities.voices["es"].voice == "piper:es"


def test_the_quality_bench_sets_are_parallel_and_complete():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "bench" / "quality"
    sets = {}
    for lang in ("es", "ca"):
        lines = [ln for ln in (root / f"en-{lang}.tsv").read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.startswith("#")]
        sets[lang] = [tuple(ln.split("\t")) for ln in lines]
        assert all(len(row) == 2 and row[0].strip() and row[1].strip() for row in sets[lang]), lang
    assert len(sets["es"]) == len(sets["ca"]) >= 30
    assert [s for s, _ in sets["es"]] == [s for s, _ in sets["ca"]]  # the same English sentences
