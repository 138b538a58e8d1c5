"""Coqui TTS engine: real coqui-tts loading path and VITS inference on a tiny random-weight model.

No model can be downloaded here, so the session fixture builds a ~1 MB VITS checkpoint +
config.json with random weights (tests/integration/coqui_tiny_model.py) and CoquiSynthesizer
loads it from disk exactly as it would load a trained model. The audio is noise; the test
checks format, length, sample rate and error handling.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from sts_service.tts.base import SynthesisError, Synthesizer

SKIP_REASON = "coqui-tts not installed: run `make setup` (installs the coqui extra)"
HAVE_COQUI = importlib.util.find_spec("TTS") is not None and importlib.util.find_spec("torch") is not None
needs_coqui = pytest.mark.skipif(not HAVE_COQUI, reason=SKIP_REASON)

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_vits(tmp_path_factory) -> tuple[str, str]:
    if not HAVE_COQUI:
        pytest.skip(SKIP_REASON)
    from coqui_tiny_model import build_tiny_vits

    return build_tiny_vits(tmp_path_factory.mktemp("coqui-tiny-vits"))


@pytest.fixture(scope="session")
def coqui(tiny_vits):
    from sts_service.tts.coqui import CoquiSynthesizer

    model_path, config_path = tiny_vits
    return CoquiSynthesizer(model_path, config_path, language="es")


@needs_coqui
def test_loads_and_synthesizes(coqui, tiny_vits):
    from coqui_tiny_model import SAMPLE_RATE

    assert isinstance(coqui, Synthesizer)
    assert coqui.name == "coqui:model"
    assert coqui.languages() == {"es"}
    audio, sr = coqui.synthesize("Hola, ¿cómo estás? Esto es una prueba del doblaje.", "es")
    assert sr == SAMPLE_RATE == coqui.sample_rate
    assert isinstance(audio, np.ndarray)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size / sr > 0.1
    assert np.isfinite(audio).all()
    assert np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0  # random weights still make (noise) sound, not silence


@needs_coqui
def test_regional_language_code_and_empty_text(coqui):
    audio, sr = coqui.synthesize("Buenos días.", "es-ES")
    assert audio.size > 0 and sr == coqui.sample_rate
    empty, _ = coqui.synthesize("   ", "es")
    assert empty.dtype == np.float32 and empty.size == 0


@needs_coqui
def test_wrong_language_and_unknown_voice_raise(coqui):
    with pytest.raises(SynthesisError, match="not 'fr'"):
        coqui.synthesize("Bonjour.", "fr")
    with pytest.raises(SynthesisError, match="single-speaker"):
        coqui.synthesize("Hola.", "es", voice="nobody")


@needs_coqui
def test_config_defaults_to_config_json_beside_checkpoint(tiny_vits):
    from sts_service.tts.coqui import CoquiSynthesizer

    model_path, _ = tiny_vits  # config.json sits next to model.pth
    synth = CoquiSynthesizer(model_path)
    audio, sr = synth.synthesize("Sí.", "es")
    assert audio.size > 0 and sr == synth.sample_rate


@needs_coqui
def test_make_synthesizer_picks_coqui(tiny_vits):
    from sts_service.tts import make_synthesizer

    model_path, config_path = tiny_vits
    synth = make_synthesizer("coqui", model_path=model_path, config_path=config_path)
    assert synth.name.startswith("coqui:")


def test_missing_model_path_is_a_clear_error(tmp_path):
    # Checked before importing torch, so this runs with or without the coqui extra.
    from sts_service.tts.coqui import CoquiSynthesizer

    missing = tmp_path / "nope" / "model.pth"
    with pytest.raises(SynthesisError, match="Coqui TTS model not found") as err:
        CoquiSynthesizer(str(missing))
    assert str(missing) in str(err.value)


def test_missing_config_is_a_clear_error(tmp_path):
    from sts_service.tts.coqui import CoquiSynthesizer

    model = tmp_path / "model.pth"
    model.write_bytes(b"")
    with pytest.raises(SynthesisError, match="config not found") as err:
        CoquiSynthesizer(str(model))
    assert str(tmp_path / "config.json") in str(err.value)


def test_absent_coqui_gives_install_hint(monkeypatch):
    """Simulate an install without coqui-tts: the ImportError tells how to get it."""
    import sts_service.tts.coqui as coqui_mod

    monkeypatch.setitem(sys.modules, "TTS", None)
    monkeypatch.setitem(sys.modules, "TTS.utils", None)
    monkeypatch.setitem(sys.modules, "TTS.utils.synthesizer", None)
    if importlib.util.find_spec("torch") is None:
        monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install './apps/sts-service\[coqui\]' torch==2.13.0"):
        coqui_mod._import_coqui()
