"""The ASR scheduler's cost model: how long an ASR call and the stages after it will take."""

from __future__ import annotations

import time
from collections.abc import Callable


class Ewma:
    """A run time estimate: exponentially weighted, and forgetting what it has not seen lately.

    Between observations the excess over the best time observed halves every ``half_life_s``.
    Without that, a burst of contention (another process on the cores) raises the estimates until
    every fragment looks infeasible; refused fragments are never run, so nothing observed would
    bring them down, and the service would go on refusing everything with the machine idle.
    Decaying, a refused fragment is tried again within a few half-lives, and what it measures sets
    the estimate. The half-life is long on purpose: keys observed only now and then (batch sizes,
    the beam) must not look cheaper than they are, or fragments are transcribed and then refused
    before translation. Measurements: bench/README.md, "Measurements behind the code".
    """

    HALF_LIFE_S = 30.0

    def __init__(self, initial: float, alpha: float = 0.3, *, half_life_s: float | None = None,
                 clock=time.monotonic):
        self.alpha, self._clock = alpha, clock
        self.half_life_s = self.HALF_LIFE_S if half_life_s is None else half_life_s
        self._value = self.best = initial
        self._at = clock()

    @property
    def value(self) -> float:
        idle = self._clock() - self._at
        return self.best + (self._value - self.best) * 0.5 ** (idle / self.half_life_s)

    def update(self, x: float) -> None:
        value = self.value
        self._value, self._at = value + self.alpha * (x - value), self._clock()
        self.best = min(self.best, x)


class CostModel:
    """Expected run time (s) of an ASR call and of the stages that follow one fragment.

    Learned per (encoder window, greedy or beam search, batch size): what batching saves is
    measured, not assumed (bench_asr.py measures it). An unseen key is seeded from the nearest
    learned one, scaled linearly in window and in batch size with a modest batching gain
    (``BATCH_SEED``, no more than bench_asr.py finds per item); with nothing learned,
    pessimistically. The gain must not be seeded at zero: streams started together send equal
    fragments with equal deadlines, and a batch of two seeded at twice the cost of one would never
    be tried, so the second would always miss its deadline behind the first.
    """

    BEAM_OVER_GREEDY = 1.5  # seed ratio when only the other decoding mode has been measured
    BATCH_SEED = 0.85  # seeded cost per item of a batch relative to a batch of one

    def __init__(self, post_seed_s: float = 0.25, *, clock: Callable[[], float] = time.monotonic):
        self._asr: dict[tuple[int, bool, int], Ewma] = {}
        self._clock = clock
        self.post = Ewma(post_seed_s, clock=clock)

    def _entry(self, window: int, greedy: bool, batch: int) -> Ewma:
        key = (window, greedy, batch)
        if key not in self._asr:
            self._asr[key] = Ewma(self._seed(window, greedy, batch), clock=self._clock)
        return self._asr[key]

    def _seed(self, window: int, greedy: bool, batch: int) -> float:
        if not self._asr:
            return (0.1 + 0.00045 * window) * batch
        (w, g, b), e = min(self._asr.items(), key=lambda kv: (kv[0][1] != greedy, abs(kv[0][0] - window),
                                                               abs(kv[0][2] - batch)))
        mode = 1.0 if g == greedy else (self.BEAM_OVER_GREEDY if g else 1.0 / self.BEAM_OVER_GREEDY)
        per_item = e.value / b / (self.BATCH_SEED if b > 1 else 1.0)
        return per_item * window / w * batch * (self.BATCH_SEED if batch > 1 else 1.0) * mode

    def prime(self, window: int, greedy: bool, batch: int, seconds: float) -> None:
        """Start a key from a measured time (the ASR's warm-up) instead of a seed."""
        self._asr[(window, greedy, batch)] = Ewma(seconds, clock=self._clock)

    def asr(self, window: int, batch: int = 1, greedy: bool = False) -> float:
        return self._entry(window, greedy, batch).value

    def observe_asr(self, window: int, batch: int, seconds: float, greedy: bool = False) -> None:
        self._entry(window, greedy, batch).update(seconds)
