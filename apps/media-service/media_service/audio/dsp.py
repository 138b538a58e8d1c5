"""Audio helpers shared by the stages: gains in dB and one-shot resampling (libswresample).

Rates themselves are defined once in `timeline.py`.
"""

from __future__ import annotations

import av
import numpy as np


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample float audio (``(n,)`` mono or ``(n, channels)``) with PyAV's libswresample.

    libswresample's default windowed-sinc filter is delay compensated (an impulse at ``i`` lands at
    ``i * dst / src``), gives ~100 dB SNR on a 1 kHz tone and returns exactly
    ``round(n * dst / src)`` samples, a small fraction of the clip's duration in CPU time.
    One-shot: each call is independent (no state across calls), so resample whole clips, not
    arbitrary chunks of a continuous stream.
    """
    x = np.asarray(samples, dtype=np.float32)
    mono_in = x.ndim == 1
    if mono_in:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError("samples must be (n,) or (n, channels)")
    n, ch = x.shape
    if src_rate == dst_rate or n == 0:
        out = x.copy() if n else np.zeros((0, ch), np.float32)
        return out[:, 0] if mono_in else out
    if ch > 2:
        # resample channels independently (layouts beyond stereo are not needed here)
        return np.stack([resample(x[:, c], src_rate, dst_rate) for c in range(ch)], axis=1)
    layout = "mono" if ch == 1 else "stereo"
    rs = av.AudioResampler(format="flt", layout=layout, rate=dst_rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x).reshape(1, -1), format="flt", layout=layout)
    frame.sample_rate = src_rate
    chunks = [f.to_ndarray().reshape(-1, ch) for f in rs.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1, ch) for f in rs.resample(None)]
    out = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, ch), np.float32)
    want = int(round(n * dst_rate / src_rate))
    if len(out) > want:
        out = out[:want]
    elif len(out) < want:
        out = np.concatenate([out, np.zeros((want - len(out), ch), np.float32)])
    out = np.ascontiguousarray(out, dtype=np.float32)
    return out[:, 0] if mono_in else out

