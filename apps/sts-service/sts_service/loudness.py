"""Level matching: each dub gets the loudness of the original speech span it replaces.

Loudness is ITU-R BS.1770-4 integrated (gated) loudness, measured with pyloudnorm: K-weighting,
400 ms blocks with 75 % overlap (shorter blocks for a span under 400 ms), absolute gate -70 LUFS,
relative gate -10 LU, so pauses and the fit's silence padding do not count. The gain that brings
the dub to the original's loudness is applied whole; peaks it pushes above 0.9 full scale are
bent under 1.0 by a soft knee (tanh) instead of clipping; when the knee took loudness away (a
quiet dub for a loud original) the gain is corrected once.

Done in the sts-service's fit stage (not in the media-service's mixer): the dub and the original
span are both at hand there; every client gets matched dubs without a protocol change; and the
media-service is the CPU bottleneck under load (its mixer renders every 1024-sample frame), while
this costs the post pool ~5-15 ms per fragment.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm

ABSOLUTE_GATE_LUFS = -70.0
MAX_GAIN_DB = 30.0  # a near-silent dub is not blown up into noise
KNEE = 0.9
CEILING = 32767.0 / 32768.0  # the largest pcm_s16le sample
MIN_SECONDS = 0.1


def integrated_lufs(audio: np.ndarray, rate: int) -> float | None:
    """Gated BS.1770 loudness of mono float audio; None when silent (below the absolute gate) or
    shorter than 100 ms."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    seconds = len(x) / rate
    if seconds < MIN_SECONDS:
        return None
    # One sample short of the whole span: pyloudnorm refuses a block of exactly the audio's length
    # whenever len / rate * rate rounds above len.
    meter = pyloudnorm.Meter(rate, block_size=min(0.4, (len(x) - 1) / rate))
    value = float(meter.integrated_loudness(x))
    if not math.isfinite(value) or value < ABSOLUTE_GATE_LUFS:
        return None
    return value


def soft_limit(audio: np.ndarray, knee: float = KNEE) -> np.ndarray:
    """Samples above `knee` in magnitude bent smoothly so that none reaches 1.0 (nor clips in pcm16)."""
    x = np.asarray(audio, dtype=np.float32)
    over = np.abs(x) > knee
    if not over.any():
        return x
    out = x.copy()
    head = 1.0 - knee
    mag = np.abs(x[over])
    out[over] = np.sign(x[over]) * np.minimum(knee + head * np.tanh((mag - knee) / head), CEILING)
    return out


def match_loudness(audio: np.ndarray, rate: int, target_lufs: float | None) -> tuple[np.ndarray, float]:
    """``(audio at target_lufs, gain in dB applied)``; unchanged (gain 0) when either loudness is
    unknown (silent or too short)."""
    if target_lufs is None:
        return audio, 0.0
    current = integrated_lufs(audio, rate)
    if current is None:
        return audio, 0.0
    x = np.asarray(audio, dtype=np.float32)
    gain_db = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, target_lufs - current))
    out = soft_limit(x * np.float32(10.0 ** (gain_db / 20.0)))
    if gain_db > 0 and np.abs(out).max() > KNEE:  # the knee took some loudness: one correction
        after = integrated_lufs(out, rate)
        if after is not None and target_lufs - after > 0.2:
            gain_db = min(MAX_GAIN_DB, gain_db + target_lufs - after)
            out = soft_limit(x * np.float32(10.0 ** (gain_db / 20.0)))
    return out, gain_db
