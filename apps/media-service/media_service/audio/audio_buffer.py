"""The segmenter's audio: the 16 kHz timeline from the open span (or the padding before it) on."""

from __future__ import annotations

import numpy as np


class AudioBuffer:
    """Append-only view of the timeline with cheap discarding of old audio (amortised O(1))."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(max(capacity, 1), dtype=np.float32)
        self.base = 0  # timeline index of self._data[self._off]
        self._off = 0
        self.end = 0  # timeline index one past the newest sample

    def append(self, x: np.ndarray) -> None:
        n = len(x)
        used = self.end - self.base
        if self._off + used + n > len(self._data):
            if used + n > len(self._data):
                new = np.zeros(max(2 * len(self._data), used + n), dtype=np.float32)
                new[:used] = self._data[self._off : self._off + used]
                self._data = new
            else:
                self._data[:used] = self._data[self._off : self._off + used]
            self._off = 0
        w = self._off + used
        self._data[w : w + n] = x
        self.end += n

    def discard_before(self, index: int) -> None:
        index = min(max(index, self.base), self.end)
        self._off += index - self.base
        self.base = index

    def view(self, start: int, stop: int) -> np.ndarray:
        if start < self.base or stop > self.end or start > stop:
            raise IndexError(f"[{start}, {stop}) not in buffer [{self.base}, {self.end})")
        o = self._off - self.base
        return self._data[o + start : o + stop]
