"""The media timeline: the single clock that places every segment, dub and output frame.

Positions are sample indices at 48 kHz counted from the first audio timestamp of the input.
Decoded audio is laid end to end in samples (no per-frame rounding can accumulate); the input
timestamps are trusted again only when they disagree by more than `tolerance` (a real gap or
overlap, e.g. a publisher that reconnected), so the timeline neither drifts nor jitters.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

RATE = 48000  # the timeline, the decoded input, the dubs once placed and the AAC outputs
VAD_RATE = 16000  # the segmenter's copy (Silero VAD, and what the sts-service is sent)
VAD_STEP = RATE // VAD_RATE  # timeline samples per VAD sample: VAD index i is timeline index i * VAD_STEP
TOLERANCE_S = 0.015  # input timestamps within this of the running position are laid end to end
# Input timestamps that jump further than this (forwards or backwards, e.g. an encoder restart or
# the 32-bit RTMP timestamp wrapping after ~49.7 days) start a new session on the timeline instead
# of a gap to fill with silence (an hour is ~2.8 GB) or audio dropped until they catch up.
JUMP_S = 2.0


@dataclass
class Placement:
    start: int  # timeline index of the first sample
    gap: int  # samples of silence inserted before it (input timestamps jumped forward)
    dropped: int  # leading samples dropped (input overlapped what was already placed)


class Timeline:
    """Maps input timestamps (seconds) to timeline sample indices and output timestamps.

    `shift_s` is added to the current input session's timestamps to get output time: 0 for the
    first session; when a publisher reconnects (its clock restarts), the new session is shifted
    so that the output continues where it stopped.
    """

    def __init__(self, rate: int = RATE, tolerance_s: float = TOLERANCE_S):
        self.rate = rate
        self.tolerance = int(round(tolerance_s * rate))
        self.origin_s: float | None = None  # output time of timeline index 0
        self.shift_s = 0.0
        self.end = 0  # next expected index
        self._exact = False  # the next placement is the first of a new session: at its own time

    def place(self, pts_s: float, n: int) -> Placement:
        out_s = pts_s + self.shift_s
        if self.origin_s is None:
            self.origin_s = out_s
        expected = self.end
        actual = int(round((out_s - self.origin_s) * self.rate))
        exact, self._exact = self._exact, False
        if actual == expected or (not exact and abs(actual - expected) <= self.tolerance):
            start, gap, dropped = expected, 0, 0
        elif actual > expected:
            start, gap, dropped = actual, actual - expected, 0
        else:
            start, gap, dropped = expected, 0, min(n, expected - actual)
        self.end = start + n - dropped
        return Placement(start, gap, dropped)

    def is_jump(self, pts_s: float) -> bool:
        """Whether input time `pts_s` is more than JUMP_S away from where the timeline ends."""
        if self.origin_s is None:
            return False
        return abs(pts_s + self.shift_s - self.to_out_seconds_of_index(self.end)) > JUMP_S

    def new_session(self, first_pts_s: float, resume_out_s: float) -> None:
        """A reconnected input whose first timestamp is `first_pts_s` continues at `resume_out_s`.

        The session's first audio is placed at its own time, not laid end to end within the
        tolerance: video is shifted exactly, so snapping the audio by up to the tolerance would put
        the whole new session that far out of sync. The splice gets a few ms of silence, or of
        overlap dropped, instead.
        """
        self.shift_s = resume_out_s - first_pts_s
        self._exact = True

    def to_out_seconds_of_index(self, index: int) -> float:
        return (self.origin_s or 0.0) + index / self.rate

    def out_index_pts(self, index: int) -> int:
        """Output audio pts (1/rate ticks) of timeline sample `index`."""
        return int(round((self.origin_s or 0.0) * self.rate)) + index


class AudioStore:
    """Original audio on the timeline, with the wall-clock time each stretch arrived.

    Written by the ingest thread, read by the output thread; bounded by `discard_before`.
    """

    def __init__(self, channels: int = 2):
        self.channels = channels
        self._lock = threading.Lock()
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (start, samples (n, ch))
        self._arrivals: deque[tuple[int, float]] = deque()  # (end index, monotonic arrival)
        self.end = 0
        self.closed = False

    def write(self, start: int, samples: np.ndarray, arrival: float | None = None) -> None:
        arrival = time.monotonic() if arrival is None else arrival
        with self._lock:
            if len(samples):
                self._chunks.append((start, samples))
            self.end = max(self.end, start + len(samples))
            self._arrivals.append((self.end, arrival))

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def arrival_of(self, index: int) -> float | None:
        """When the sample at `index` arrived; None if it has not."""
        with self._lock:
            for end, t in self._arrivals:
                if index < end:
                    return t
        return None

    def read(self, start: int, n: int) -> np.ndarray:
        """Samples [start, start+n); silence where nothing was written (gaps)."""
        out = np.zeros((n, self.channels), np.float32)
        stop = start + n
        with self._lock:
            for c_start, data in self._chunks:
                c_end = c_start + len(data)
                if c_end <= start:
                    continue
                if c_start >= stop:
                    break
                lo, hi = max(start, c_start), min(stop, c_end)
                out[lo - start:hi - start] = data[lo - c_start:hi - c_start]
        return out

    def discard_before(self, index: int) -> None:
        with self._lock:
            while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= index:
                self._chunks.popleft()
            while len(self._arrivals) > 1 and self._arrivals[0][0] <= index:
                self._arrivals.popleft()
