"""Median pitch (F0) of a speech fragment, to pick a per-language voice for high-pitched speakers.

YIN (de Cheveigné & Kawahara 2002), vectorised with numpy: frames of two longest periods (67 ms) every 20 ms, the difference
function from FFT autocorrelations, the cumulative mean normalised difference, the first dip below
0.15 refined by parabolic interpolation. Frames quieter than 30 dB below the loudest, or without
a dip below 0.35 (unvoiced, noise, music without a clear period), are left out; the median of the
rest is the speaker's pitch. Analysed at 8 kHz (halved from 16 kHz): 7-18 ms for 5 s of audio here.
"""

from __future__ import annotations

import numpy as np

F0_MIN_HZ = 60.0
F0_MAX_HZ = 500.0
THRESHOLD = 0.15  # YIN's absolute threshold: the first dip under it is the period
VOICED_MAX = 0.35  # a frame whose best dip stays above this has no clear period
MIN_VOICED_FRAMES = 5


def _halve(x: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Down to rate / 2 (a [1, 2, 1] / 4 low-pass, then every other sample) while above 8 kHz:
    F0 up to 500 Hz needs no more, and the work drops four-fold per halving."""
    while rate >= 16000:
        padded = np.concatenate([x[:1], x, x[-1:]])
        x = (0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:])[::2]
        rate //= 2
    return x, rate


def frame_pitches(audio: np.ndarray, rate: int, *, hop_s: float = 0.02) -> np.ndarray:
    """F0 in Hz of each voiced frame (unvoiced and quiet frames left out)."""
    x, rate = _halve(np.asarray(audio, dtype=np.float64).reshape(-1), rate)
    tau_min = max(2, int(rate / F0_MAX_HZ))
    tau_max = int(rate / F0_MIN_HZ) + 1
    width = tau_max  # integration window: one longest period
    frame = width + tau_max
    hop = max(1, int(rate * hop_s))
    if len(x) < frame:
        return np.zeros(0)
    starts = np.arange(0, len(x) - frame + 1, hop)
    frames = x[starts[:, None] + np.arange(frame)]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames[:, :width] ** 2, axis=1)
    loud = energy > energy.max() * 1e-3 if energy.size and energy.max() > 0 else np.zeros(len(frames), bool)
    frames = frames[loud]
    if not len(frames):
        return np.zeros(0)
    # d(tau) = sum_{j<W} (x_j - x_{j+tau})^2 = e0 + e_tau - 2 r(tau)
    n_fft = 1 << int(np.ceil(np.log2(2 * frame)))
    spec_full = np.fft.rfft(frames, n_fft)
    spec_head = np.fft.rfft(frames[:, :width], n_fft)
    r = np.fft.irfft(np.conj(spec_head) * spec_full, n_fft)[:, : tau_max + 1]
    sq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    e0 = sq[:, width][:, None]
    e_tau = sq[:, taus + width] - sq[:, taus]
    d = np.maximum(e0 + e_tau - 2.0 * r, 0.0)
    # cumulative mean normalised difference
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    search = cmnd[:, tau_min:]
    below = search < THRESHOLD
    first = np.where(below.any(axis=1), below.argmax(axis=1), search.argmin(axis=1))
    # walk down to the bottom of the dip that starts at `first`: the first index from there on
    # whose successor is not lower
    cols = np.arange(search.shape[1])
    rising = np.ones_like(search, dtype=bool)
    rising[:, :-1] = search[:, 1:] >= search[:, :-1]
    i = np.argmax(rising & (cols >= first[:, None]), axis=1)
    rows = np.arange(len(search))
    best = search[rows, i]
    tau = (i + tau_min).astype(np.float64)
    inner = (i > 0) & (i < search.shape[1] - 1)
    a = search[rows, np.maximum(i - 1, 0)]
    c = search[rows, np.minimum(i + 1, search.shape[1] - 1)]
    denom = a - 2 * best + c
    ok = inner & (denom > 0)
    tau[ok] += 0.5 * (a[ok] - c[ok]) / denom[ok]  # parabolic interpolation around the minimum
    voiced = best <= VOICED_MAX
    return rate / tau[voiced]


def median_pitch_hz(audio: np.ndarray, rate: int) -> float | None:
    """The median F0 of the voiced frames; None when too few frames are voiced to tell."""
    f0 = frame_pitches(audio, rate)
    if len(f0) < MIN_VOICED_FRAMES:
        return None
    return float(np.median(f0))
