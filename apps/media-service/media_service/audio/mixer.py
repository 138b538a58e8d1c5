"""Placing dubbed audio on the 48 kHz media timeline and mixing the output.

Timeline positions are 48 kHz sample indices from the input's first audio timestamp. A
``DubTrack`` holds dubbed clips at absolute positions and renders any window ``[start, start+n)``
of the output from the original audio of that window.

Mixing
------
Clips that touch (``a.end == b.start``) form one *dub region*. A coverage envelope ``w(t)`` is 1
inside a region and ramps with a raised-cosine over ``ramp`` samples (default 480 = 10 ms) *inside*
each region edge (a region shorter than ``2 * ramp`` uses half its length). Then, per sample::

    duck:        out = orig * (1 - w * (1 - g)) + dub * w      g = 10 ** (duck_gain_db / 20)
    replace:     out = orig * (1 - w)           + dub * w
    passthrough: out = orig                               (bit-exact, not clipped)

The dub is faded with the same envelope, so a clip starting or ending on a non-zero sample never
clicks. The envelope is a lookup in a precomputed table indexed by absolute timeline offsets and
everything else is element-wise float32 arithmetic, so rendering in chunks of any size gives
bit-identical output to rendering at once.

Output limiting: ``duck``/``replace`` output is hard-clipped to [-1, 1] (the dub is normalised
speech and the original is ducked under it, so clipping is rare; a hard clip is stateless and keeps
chunk-size independence, which a look-ahead limiter would not).

Mode switches: ``mode`` and ``duck_gain_db`` are passed per ``render`` call and take effect in the
very frame they are passed with. When they change between two *contiguous* render calls the first
``switch_ramp`` samples (default 480 = 10 ms, always less than one 1024-sample AAC frame) of that
frame crossfade from the previous setting to the new one to avoid a click; from then on the output
is exactly the new mode's output (e.g. the original, bit-exact, for ``passthrough``).
``switch_ramp=0`` makes switches hard.

Overlap policy: the *latest* ``add`` wins. Existing clips overlapping a new clip are trimmed (or
split) so that the new clip's region is covered only by the new clip. Adding a clip for a region
that was already rendered only affects later renders of that region.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

from ..states import Mode
from .dsp import db_to_gain

DEFAULT_RAMP = 480  # 10 ms at 48 kHz


@dataclass
class _Clip:
    start: int
    samples: np.ndarray  # (m, channels) float32

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


def _raised_cosine(r: int) -> np.ndarray:
    """Rising ramp of r samples, strictly inside (0, 1): 0.5 - 0.5 cos(pi (k + 0.5) / r)."""
    k = np.arange(r, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / r)).astype(np.float32)


class DubTrack:
    def __init__(self, ramp: int = DEFAULT_RAMP, switch_ramp: int = DEFAULT_RAMP) -> None:
        if ramp < 1 or switch_ramp < 0:
            raise ValueError("ramp must be >= 1 and switch_ramp >= 0")
        self.ramp = ramp
        self.switch_ramp = switch_ramp
        self._ramps: dict[int, np.ndarray] = {ramp: _raised_cosine(ramp)}
        self._switch_ramp = _raised_cosine(switch_ramp) if switch_ramp else np.zeros(0, np.float32)
        self._clips: list[_Clip] = []  # sorted by start, never overlapping
        self._starts: list[int] = []
        self._last: tuple[int, Mode, float] | None = None  # (end of last render, mode, gain_db)

    # -- clips ------------------------------------------------------------------------------

    def add(self, start: int, samples: np.ndarray) -> None:
        """Place a 48 kHz clip (``(m,)`` mono or ``(m, channels)``) at timeline index ``start``.

        The latest clip wins: earlier clips are trimmed/split where they overlap it.
        """
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] < 1:
            raise ValueError("samples must be (m,) or (m, channels)")
        if len(x) == 0:
            return
        start = int(start)
        new = _Clip(start, x)
        kept: list[_Clip] = []
        for c in self._clips:
            if c.end <= new.start or c.start >= new.end:
                kept.append(c)
                continue
            if c.start < new.start:
                kept.append(_Clip(c.start, c.samples[: new.start - c.start]))
            if c.end > new.end:
                kept.append(_Clip(new.end, c.samples[new.end - c.start :]))
        kept.append(new)
        kept.sort(key=lambda c: c.start)
        self._clips = kept
        self._starts = [c.start for c in kept]

    def prune(self, before: int) -> int:
        """Drop clips ending at or before timeline index ``before``; returns how many were dropped."""
        n0 = len(self._clips)
        self._clips = [c for c in self._clips if c.end > before]
        self._starts = [c.start for c in self._clips]
        return n0 - len(self._clips)

    def clear(self) -> None:
        self._clips = []
        self._starts = []

    @property
    def clips(self) -> list[tuple[int, int]]:
        """``(start, end)`` of the stored clips, in order."""
        return [(c.start, c.end) for c in self._clips]

    def __len__(self) -> int:
        return len(self._clips)

    def covered(self, start: int, end: int) -> int:
        """Number of samples of ``[start, end)`` covered by a dub clip."""
        total = 0
        for c in self._clips:
            total += max(0, min(end, c.end) - max(start, c.start))
        return total

    # -- rendering ---------------------------------------------------------------------------

    def _ramp_table(self, r: int) -> np.ndarray:
        t = self._ramps.get(r)
        if t is None:
            t = self._ramps[r] = _raised_cosine(r)
        return t

    def _regions(self, start: int, stop: int) -> list[tuple[int, int, list[_Clip]]]:
        """Dub regions (merged touching clips) that overlap [start, stop), with their clips.

        A region is reported whole (its true start/end), so ramps depend only on the clip set.
        """
        clips = self._clips
        if not clips:
            return []
        i = bisect.bisect_right(self._starts, start) - 1
        i = max(i, 0)
        # walk back to the start of the region containing clip i
        while i > 0 and clips[i - 1].end == clips[i].start:
            i -= 1
        regions: list[tuple[int, int, list[_Clip]]] = []
        j = i
        while j < len(clips) and clips[j].start < stop:
            k = j
            while k + 1 < len(clips) and clips[k].end == clips[k + 1].start:
                k += 1
            r_start, r_end = clips[j].start, clips[k].end
            if r_end > start:
                regions.append((r_start, r_end, clips[j : k + 1]))
            j = k + 1
        return regions

    def _dub_and_envelope(self, start: int, n: int, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        stop = start + n
        regions = self._regions(start, stop)
        if not regions:
            return None
        w = np.zeros(n, dtype=np.float32)
        dub = np.zeros((n, channels), dtype=np.float32)
        for r_start, r_end, clips in regions:
            a, b = max(r_start, start), min(r_end, stop)
            if a >= b:
                continue
            w[a - start : b - start] = 1.0
            r = min(self.ramp, max(1, (r_end - r_start) // 2))
            table = self._ramp_table(r)
            # rising edge: timeline [r_start, r_start + r) -> table[0:r]
            lo, hi = max(r_start, start), min(r_start + r, stop)
            if lo < hi:
                w[lo - start : hi - start] = table[lo - r_start : hi - r_start]
            # falling edge: timeline [r_end - r, r_end) -> table[r-1 .. 0]
            lo, hi = max(r_end - r, start), min(r_end, stop)
            if lo < hi:
                idx = (r_end - 1) - np.arange(lo, hi)  # distance from the end, 0 .. r-1
                w[lo - start : hi - start] = np.minimum(w[lo - start : hi - start], table[idx])
            for c in clips:
                ca, cb = max(c.start, start), min(c.end, stop)
                if ca >= cb:
                    continue
                seg = c.samples[ca - c.start : cb - c.start]
                cch = seg.shape[1]
                if cch == channels:
                    dub[ca - start : cb - start] = seg
                elif cch == 1:
                    dub[ca - start : cb - start] = seg  # broadcast mono to all channels
                elif channels == 1:
                    dub[ca - start : cb - start, 0] = seg.mean(axis=1)
                else:
                    raise ValueError(f"cannot mix a {cch}-channel clip into {channels} channels")
        return dub, w

    def _mix(self, start: int, original: np.ndarray, mode: Mode, duck_gain_db: float) -> np.ndarray:
        if mode is Mode.PASSTHROUGH:
            return original.copy()
        n, ch = original.shape
        dw = self._dub_and_envelope(start, n, ch)
        if dw is None:
            return np.clip(original, -1.0, 1.0)
        dub, w = dw
        g = np.float32(0.0 if mode is Mode.REPLACE else db_to_gain(duck_gain_db))
        orig_gain = np.float32(1.0) - w * (np.float32(1.0) - g)
        out = original * orig_gain[:, None] + dub * w[:, None]
        np.clip(out, -1.0, 1.0, out=out)
        return out

    def render(
        self,
        start: int,
        n: int,
        original: np.ndarray,
        mode: Mode | str = Mode.DUCK,
        duck_gain_db: float = -14.0,
    ) -> np.ndarray:
        """Output for timeline samples ``[start, start + n)`` as float32 ``(n, channels)``.

        ``original`` is the input audio of the same window, ``(n, channels)`` (or ``(n,)`` mono,
        then the result is ``(n,)`` too).
        """
        mode = Mode(mode)
        orig = np.asarray(original, dtype=np.float32)
        mono = orig.ndim == 1
        if mono:
            orig = orig[:, None]
        if orig.ndim != 2 or orig.shape[0] != n:
            raise ValueError(f"original must have {n} rows, got shape {np.shape(original)}")
        out = self._mix(start, orig, mode, duck_gain_db)
        last = self._last
        if (
            last is not None
            and self.switch_ramp
            and last[0] == start
            and (last[1], last[2]) != (mode, duck_gain_db)
            and not (last[1] is Mode.PASSTHROUGH and mode is Mode.PASSTHROUGH)
        ):
            k = min(self.switch_ramp, n)
            prev = self._mix(start, orig[:k], last[1], last[2])
            up = self._switch_ramp[:k, None]
            out[:k] = prev * (np.float32(1.0) - up) + out[:k] * up
        self._last = (start + n, mode, float(duck_gain_db))
        return out[:, 0] if mono else out


class DubTracks:
    """The dub tracks of one stream (one per language) and the line below which output is final.

    The dubbing stage places clips from an executor thread while the playout thread renders:
    they meet here under one lock, and the "late" rule lives here too: a clip that starts where
    output was already rendered is refused (the original played there), never spliced in half.
    """

    def __init__(self, languages) -> None:
        self._tracks = {lang: DubTrack() for lang in languages}
        self._lock = threading.Lock()
        self.rendered_until = 0  # timeline index below which output is final

    @property
    def languages(self) -> list[str]:
        return list(self._tracks)

    def place(self, language: str, start: int, samples: np.ndarray, latest: int | None = None) -> int | None:
        """Add a clip at `start`; returns where it starts, or None when it is late or the language
        is not one of this stream's.

        Late: output from `start` on is already rendered. With `latest`, such a clip starts at the
        first sample not yet rendered instead, as long as that is not after `latest`, and its tail
        is cut by as much (a late start: the dub stays inside its span).
        """
        track = self._tracks.get(language)
        if track is None:
            return None
        with self._lock:
            shift = max(0, self.rendered_until - start)
            if shift and (latest is None or start + shift > latest or shift >= len(samples)):
                return None
            track.add(start + shift, samples[: len(samples) - shift])
            return start + shift

    def render(self, start: int, n: int, original: np.ndarray, mode: Mode, duck_gain_db: float) -> dict:
        """Each language's mix of `[start, start + n)`; from now on that span is final."""
        with self._lock:
            self.rendered_until = start + n
            return {lang: track.render(start, n, original, mode, duck_gain_db) for lang, track in self._tracks.items()}

    def prune(self, before: int) -> None:
        with self._lock:
            for track in self._tracks.values():
                track.prune(before)
