"""Where a span that reached the maximum fragment length is cut: a clause pause, else its quietest point.

A forced cut inside a word costs the ASR that word on both sides, and a cut inside a clause costs
the translation its sense, so the cut goes first to a pause long enough to be a prosodic break
between clauses (``longest_pause``: VAD below the speech threshold for a run of windows, shorter
than the silence that would have closed the span; the longest such run in the search range, the
latest of equals), else to the longest gap between words the VAD saw in the last third of the
span (a run of any length below the threshold). Within that pause or gap, or within the last
third when there is neither, it goes to the lowest
short-term energy (10 ms frames, smoothed over 30 ms) plus a penalty proportional to the VAD
probability there, and to the middle of the stretch within 1 dB of that minimum: as far as
possible from the words on both sides.
"""

from __future__ import annotations

import numpy as np

CUT_FRAME = 160  # 10 ms energy frames at 16 kHz
PROB_PENALTY_DB = 10.0


def longest_pause(probs: np.ndarray, threshold: float, min_windows: int) -> tuple[int, int] | None:
    """``(a, b)``: the longest run of VAD windows ``probs[a:b]`` below ``threshold`` that lasts at
    least ``min_windows`` (the latest of equally long runs), or None."""
    low = np.concatenate([[False], np.asarray(probs) < threshold, [False]])
    edges = np.flatnonzero(low[1:] != low[:-1])  # run starts and ends, alternating
    starts, ends = edges[0::2], edges[1::2]
    if min_windows < 1 or not len(starts):
        return None
    lengths = ends - starts
    best = len(lengths) - 1 - int(np.argmax(lengths[::-1]))  # the latest of the longest
    if lengths[best] < min_windows:
        return None
    return int(starts[best]), int(ends[best])


def quietest_point(audio: np.ndarray, first_frame: int, probs: np.ndarray) -> int:
    """Timeline index of the cut in ``audio`` (whole CUT_FRAME frames starting at frame
    ``first_frame``), given the VAD probability at each frame's centre (``probs``, one a frame)."""
    f = CUT_FRAME
    x = audio.astype(np.float64).reshape(-1, f)
    energy = np.mean(x * x, axis=1)
    smooth = np.convolve(energy, np.ones(3) / 3.0, mode="same")
    # edge frames only average two neighbours; correct their normalisation
    smooth[0] = (energy[0] + energy[1]) / 2.0
    smooth[-1] = (energy[-1] + energy[-2]) / 2.0
    score = 10.0 * np.log10(smooth + 1e-10) + PROB_PENALTY_DB * probs
    k = int(np.argmin(score))
    quiet = score <= score[k] + 1.0
    a = k
    while a > 0 and quiet[a - 1]:
        a -= 1
    b = k
    while b + 1 < len(quiet) and quiet[b + 1]:
        b += 1
    return (first_frame + (a + b) // 2) * f + f // 2
