"""Programme loudness of each output language as it is written (ITU-R BS.1770-4, EBU R128 windows).

Broadcasters deliver to a target (EBU R128: -23 LUFS, ATSC A/85: -24 LKFS), so the media-service
reports what each language's output measures: momentary (400 ms), short-term (3 s) and integrated
(gated, since the stream started) loudness.

K-weighting is BS.1770's two biquads at 48 kHz (the timeline rate), applied as their impulse
response (4096 taps: the RLB high-pass decays to -180 dB by ~3300 samples, so truncation is below
any audible or measurable level) by FFT overlap-save, 4096 samples per FFT: numpy only, cheap
next to the AAC encoder of the same output. Mean squares are kept per 100 ms sub-block; a 400 ms
gating block (75 % overlap) ends every 100 ms. Integrated loudness keeps bounded memory: block energies are summed
into 0.1 LU histogram bins (as libebur128 does), so the relative gate is exact to one bin.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .timeline import RATE  # the K-weighting coefficients below are BS.1770's for 48 kHz: this rate

SUB_BLOCK = RATE // 10  # 100 ms
TAPS = 4096
ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
BIN_LU = 0.1
TOP_LUFS = 10.0
FLOOR_LUFS = -70.0  # what a window of silence reports (below the absolute gate)

# BS.1770-4 K-weighting at 48 kHz: the high shelf (head), then the RLB high-pass.
_SHELF = ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585])
_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def k_weighting_spectrum(n_fft: int = 2 * TAPS) -> np.ndarray:
    """rfft of the K-weighting impulse response truncated to TAPS samples (zero-padded to n_fft)."""
    n_long = 8 * TAPS  # long enough that the circular response has decayed (no time aliasing)
    z = np.exp(-1j * np.pi * np.arange(n_long // 2 + 1) / (n_long // 2))
    response = np.ones_like(z)
    for b, a in (_SHELF, _HIGHPASS):
        response *= np.polyval(b[::-1], z) / np.polyval(a[::-1], z)
    impulse = np.fft.irfft(response, n_long)[:TAPS]
    return np.fft.rfft(impulse, n_fft)


def lufs(mean_square: float) -> float:
    return -0.691 + 10.0 * math.log10(mean_square) if mean_square > 0 else -math.inf


class ProgrammeLoudness:
    """Feed it every output frame of one language (``(n, channels)`` float32 at 48 kHz)."""

    _spectrum: np.ndarray | None = None

    def __init__(self) -> None:
        if ProgrammeLoudness._spectrum is None:
            ProgrammeLoudness._spectrum = k_weighting_spectrum().astype(np.complex64)
        self._history: np.ndarray | None = None  # the last TAPS input samples (channels from the first frame)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._sub_sum = 0.0  # sum of squares (channels summed) of the open sub-block
        self._sub_n = 0
        self._subs: deque[float] = deque(maxlen=30)  # mean squares of the last 30 sub-blocks (3 s)
        bins = int((TOP_LUFS - ABSOLUTE_GATE) / BIN_LU) + 1
        self._bin_count = np.zeros(bins, np.int64)
        self._bin_energy = np.zeros(bins, np.float64)
        self.blocks = 0  # gating blocks above the absolute gate

    def add(self, frames: np.ndarray) -> bool:
        """Buffer `frames`; True when a new 100 ms sub-block (new readings) was completed."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if self._history is None or self._history.shape[1] != x.shape[1]:  # first frame, or a format change
            self._history = np.zeros((TAPS, x.shape[1]), np.float32)
            self._pending, self._pending_n = [], 0
        self._pending.append(x)
        self._pending_n += len(x)
        new = False
        while self._pending_n >= TAPS:
            chunk = np.concatenate(self._pending, axis=0)
            head, rest = chunk[:TAPS], chunk[TAPS:]
            self._pending, self._pending_n = ([rest] if len(rest) else []), len(rest)
            new |= self._filter(head)
        return new

    def _filter(self, block: np.ndarray) -> bool:
        """Overlap-save: K-weight `block` (TAPS samples) using the previous TAPS as history."""
        buf = np.concatenate([self._history, block], axis=0)
        self._history = block
        weighted = np.fft.irfft(np.fft.rfft(buf, axis=0) * self._spectrum[:, None], 2 * TAPS, axis=0)[TAPS:]
        squares = np.sum(np.square(weighted, dtype=np.float64), axis=1)  # channel weights: 1.0 for L, R
        new = False
        i = 0
        while i < len(squares):
            take = min(SUB_BLOCK - self._sub_n, len(squares) - i)
            self._sub_sum += float(squares[i : i + take].sum())
            self._sub_n += take
            i += take
            if self._sub_n == SUB_BLOCK:
                self._close_sub_block(self._sub_sum / SUB_BLOCK)
                self._sub_sum, self._sub_n = 0.0, 0
                new = True
        return new

    def _close_sub_block(self, mean_square: float) -> None:
        self._subs.append(mean_square)
        if len(self._subs) < 4:
            return
        block = sum(list(self._subs)[-4:]) / 4.0  # the 400 ms gating block that ends now
        level = lufs(block)
        if level < ABSOLUTE_GATE:
            return
        index = min(len(self._bin_count) - 1, int((level - ABSOLUTE_GATE) / BIN_LU))
        self._bin_count[index] += 1
        self._bin_energy[index] += block
        self.blocks += 1

    # -- readings --------------------------------------------------------------------------------
    def _window(self, subs: int) -> float | None:
        if len(self._subs) < subs:
            return None
        level = lufs(sum(list(self._subs)[-subs:]) / subs)
        return max(level, FLOOR_LUFS)

    def momentary(self) -> float | None:
        """Loudness of the last 400 ms (None until 400 ms were measured)."""
        return self._window(4)

    def short_term(self) -> float | None:
        """Loudness of the last 3 s (None until 3 s were measured)."""
        return self._window(30)

    def integrated(self) -> float | None:
        """Gated loudness of everything so far (None while no block is above -70 LUFS)."""
        if not self.blocks:
            return None
        relative = lufs(self._bin_energy.sum() / self._bin_count.sum()) + RELATIVE_GATE
        edges = ABSOLUTE_GATE + BIN_LU * (np.arange(len(self._bin_count)) + 0.5)  # bin centres
        keep = edges > relative
        count = self._bin_count[keep].sum()
        return lufs(self._bin_energy[keep].sum() / count) if count else None

    def readings(self) -> dict[str, float | None]:
        return {"momentary": self.momentary(), "short_term": self.short_term(), "integrated": self.integrated()}
