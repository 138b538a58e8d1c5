"""AsrScheduler logic with a fake ASR: EDF order, batching of equal windows, expired never started.

The scheduler runs on an injected clock. The fake ASR's calls take no real time: each moves the
clock on by its nominal cost, and a call a test holds stays "running" until the test releases it.
So the tests wait for conditions (a call started, the runner gathering), never for time to pass,
and assert on what ran, in which batches and with which decoding, not on how long anything took.
"""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sts_service.cost_model import CostModel, Ewma
from sts_service.metrics import StsMetrics
from sts_service.scheduler import AsrScheduler, DeadlineExceeded

# With the clock frozen, a scheduler that waits where it should not waits for ever: fail, not hang.
pytestmark = pytest.mark.timeout(30)


class Clock:
    """The scheduler's clock: real time (the gathering waits are real) or frozen, plus whatever
    the test or a fake ASR call skips ahead instead of sleeping."""

    def __init__(self):
        self.frozen_at: float | None = None
        self.skipped = 0.0

    def __call__(self) -> float:
        return (time.monotonic() if self.frozen_at is None else self.frozen_at) + self.skipped

    def freeze(self) -> None:
        """Nothing passes unless skipped: a gathering wait with room to wait never ends by itself."""
        self.frozen_at = time.monotonic()

    def skip(self, seconds: float) -> None:
        self.skipped += seconds


class FakeAsr:
    max_batch = 3
    beam_size = 5

    def __init__(self, clock: Clock, seconds_per_item=0.05):
        self.clock = clock
        self.calls: list[list[float]] = []
        self.beams: list[int] = []
        self.per_item = seconds_per_item
        self.hold: set[float] = set()  # a call with one of these tags runs until released
        self.released = threading.Event()

    def window_frames(self, n):
        return 1000 if n < 16000 * 9 else 3000

    def transcribe_batch(self, audios, prompts, beam_size=None):
        tags = [float(a[0]) for a in audios]
        self.calls.append(tags)
        self.beams.append(beam_size or self.beam_size)
        if self.hold.intersection(tags):
            assert self.released.wait(10), "the test never released a held call"
        self.clock.skip(self.per_item * len(audios) * (0.5 if beam_size == 1 else 1.0))
        return [f"t{a[0]:.0f}" for a in audios]


def clip(tag: float, seconds: float = 2.0) -> np.ndarray:
    x = np.zeros(int(16000 * seconds), np.float32)
    x[0] = tag
    return x


async def until(predicate, timeout: float = 5.0) -> None:
    """Waits for something the runner or an executor thread makes true (the timeout only guards)."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "the condition never became true"
        await asyncio.sleep(0.001)


def gathering(s: AsrScheduler, waiting: int):
    """The runner holds ``waiting`` fragments back for companions: it cleared its wake-up event
    (which every arrival sets) and has not taken them."""
    return lambda: s.queued == waiting and not s._wake.is_set()


@pytest.fixture
async def sched():
    clock = Clock()
    asr = FakeAsr(clock)
    pool = ThreadPoolExecutor(1)
    s = AsrScheduler(asr, pool, StsMetrics(), clock=clock)
    s.cost = CostModel(post_seed_s=0.01, clock=clock)
    for greedy in (False, True):
        s.cost.observe_asr(1000, 1, 0.05, greedy)
        s.cost.observe_asr(3000, 1, 0.05, greedy)
    s.start()
    yield s, asr, clock
    asr.released.set()
    await s.close()
    pool.shutdown()


async def test_earliest_deadline_first_and_equal_windows_batched(sched):
    s, asr, clock = sched
    now = clock()
    # The first call runs alone; the rest queue behind it and go in deadline order.
    asr.hold = {0.0}
    first = asyncio.create_task(s.transcribe(clip(0), None, now + 5, True))
    await until(lambda: asr.calls)
    jobs = [asyncio.create_task(s.transcribe(clip(tag, secs), None, now + dl, True))
            for tag, secs, dl in ((1, 2, 4.0), (2, 12, 1.0), (3, 2, 3.0), (4, 2, 2.0))]
    await until(lambda: s.queued == 4)
    asr.released.set()
    results = await asyncio.gather(first, *jobs)
    assert [r[0] for r in results] == ["t0", "t1", "t2", "t3", "t4"]
    # tag 2 (long window) has the earliest deadline and runs alone; then 4, 3, 1 share a window.
    assert asr.calls[1] == [2.0]
    assert asr.calls[2] == [4.0, 3.0, 1.0]


async def test_fragment_that_cannot_finish_is_never_started(sched):
    s, asr, clock = sched
    with pytest.raises(DeadlineExceeded) as exc:
        await s.transcribe(clip(7), None, clock() + 0.01, True)
    assert exc.value.stage == "asr" and exc.value.hard
    assert all(7.0 not in call for call in asr.calls)


async def test_queued_fragment_expires_without_work(sched):
    s, asr, clock = sched
    for greedy in (False, True):
        s.cost.prime(1000, greedy, 1, 0.05)
    now = clock()
    asr.hold = {1.0}
    busy = asyncio.create_task(s.transcribe(clip(1), None, now + 5, True))
    await until(lambda: asr.calls)
    # Fits when queued (0.05 s estimated), but the running call goes on past its deadline.
    late = asyncio.create_task(s.transcribe(clip(2), None, now + 0.15, True))
    await until(lambda: s.queued == 1)
    clock.skip(0.3)
    asr.released.set()
    with pytest.raises(DeadlineExceeded):
        await late
    await busy
    assert all(2.0 not in call for call in asr.calls)
    assert s.metrics.work_on_expired._value.get() == 0


async def test_soft_deadline_fails_as_timeout_not_deadline_exceeded(sched):
    s, _, clock = sched
    with pytest.raises(DeadlineExceeded) as exc:
        await s.transcribe(clip(1), None, clock() - 1, False)
    assert exc.value.hard is False


async def test_beam_when_idle_greedy_when_others_wait(sched):
    s, asr, clock = sched
    now = clock()
    await s.transcribe(clip(1), None, now + 5, True)
    assert asr.beams == [5]  # alone and in time: the configured beam
    asr.beams.clear()
    jobs = [asyncio.create_task(s.transcribe(clip(t, w), None, now + 5, True))
            for t, w in ((5, 2), (6, 12), (7, 2), (8, 12))]
    await asyncio.gather(*jobs)
    # Two batches of two (equal windows): batches are always greedy.
    assert sorted(map(sorted, asr.calls[-2:])) == [[5.0, 7.0], [6.0, 8.0]]
    assert asr.beams == [1, 1]
    asr.beams.clear()
    await s.transcribe(clip(9), None, clock() + 5, True)
    await s.transcribe(clip(10, 12), None, clock() + 5, True)
    assert asr.beams == [5, 5], "each ran alone with nothing waiting"


async def test_beam_skipped_when_only_greedy_finishes_in_time(sched):
    s, asr, clock = sched
    s.cost.observe_asr(1000, 1, 0.5, greedy=False)  # beam now looks ~0.5 s, greedy 0.05 s
    await s.transcribe(clip(1), None, clock() + 0.3, True)
    assert asr.beams == [1]


async def test_streams_started_together_share_one_batch(sched):
    """Equal fragments with equal deadlines (streams started together) run as one batch even
    when only single calls have been measured: batching is seeded cheaper than running twice."""
    s, asr, clock = sched
    clock.freeze()
    asr.per_item = 0.1
    for _ in range(30):
        s.cost.observe_asr(1000, 1, 0.1, greedy=True)
    now = clock()
    # 0.1 s a fragment alone: two in a row would end at ~0.2 s + post 0.01 > the 0.19 s deadline.
    pair = [asyncio.create_task(s.transcribe(clip(t), None, now + 0.19, True)) for t in (1, 2)]
    await asyncio.gather(*pair)
    assert asr.calls == [[1.0, 2.0]]


async def test_lone_fragment_waits_briefly_for_a_companion(sched):
    """Streams started together send equal fragments a few ms apart: they share one batch."""
    s, asr, clock = sched
    clock.freeze()
    now = clock()
    first = asyncio.create_task(s.transcribe(clip(1), None, now + 5, True))
    await until(gathering(s, 1))
    clock.skip(0.03)
    second = asyncio.create_task(s.transcribe(clip(2), None, now + 5, True))
    await until(gathering(s, 2))
    clock.skip(s.QUIET_S)  # nothing more arrives: the burst is over
    await asyncio.gather(first, second)
    assert asr.calls == [[1.0, 2.0]]


async def test_no_gathering_wait_without_slack(sched):
    s, asr, clock = sched
    clock.freeze()  # a gathering wait would never end: the call below would time out
    s.cost.prime(1000, True, 1, 0.05)
    s.cost.prime(1000, False, 1, 0.05)
    # 0.05 s run + 0.01 s post: no room to wait for a companion.
    await asyncio.wait_for(s.transcribe(clip(1), None, clock() + 0.08, True), 5)
    assert asr.calls == [[1.0]]


def test_cost_model_learns():
    m = CostModel()
    for _ in range(20):
        m.observe_asr(1000, 2, 0.36)
    assert abs(m.asr(1000, 2) - 0.36) < 0.01
    assert abs(m.asr(1000, 1) - 0.18 / 0.85) < 0.01  # unseen batch size: from the nearest, seeded gain
    assert m.asr(2000) > m.asr(1000)  # unseen window: scaled from the nearest one
    assert m.asr(1000, 2, greedy=True) < m.asr(1000, 2)  # greedy seeded cheaper than the beam
    for _ in range(20):
        m.observe_asr(1000, 4, 0.5, greedy=True)
    assert abs(m.asr(1000, 4, greedy=True) - 0.5) < 0.01


def test_estimates_forget_a_slow_spell():
    """A spell of contention must not leave the estimates high for ever: nothing runs while they
    say no fragment fits, so only time can bring them down (the soak's collapse to 100 %
    deadline_exceeded)."""
    t = [0.0]
    e = Ewma(0.2, clock=lambda: t[0])
    e.update(0.15)
    for _ in range(10):
        e.update(2.0)  # the machine was busy
    assert e.value > 1.5
    t[0] += Ewma.HALF_LIFE_S
    assert e.value == pytest.approx(0.15 + (e._value - 0.15) / 2)
    t[0] += 5 * Ewma.HALF_LIFE_S
    assert e.value < 0.25  # back near the best time seen
    e.update(0.4)  # and the next observation counts from there
    assert 0.15 < e.value < 0.4


async def test_refused_fragments_are_admitted_again_once_the_estimate_decays():
    clock = Clock()
    asr = FakeAsr(clock, 0.01)
    s = AsrScheduler(asr, ThreadPoolExecutor(1), StsMetrics(), clock=clock)
    s.cost = CostModel(post_seed_s=0.01, clock=clock)
    for greedy in (False, True):
        s.cost.prime(1000, greedy, 1, 0.01)
        for _ in range(10):
            s.cost.observe_asr(1000, 1, 1.0, greedy)  # a slow spell: one fragment now "needs" ~1 s
    s.start()
    try:
        with pytest.raises(DeadlineExceeded):
            await s.transcribe(clip(1), None, clock() + 0.3, True)
        clock.skip(10 * Ewma.HALF_LIFE_S)  # nothing observed meanwhile
        result, _, _ = await s.transcribe(clip(1), None, clock() + 0.3, True)
        assert result == "t1"
    finally:
        await s.close()


@pytest.fixture
async def two_workers():
    """A scheduler with two parallel workers over the fake ASR."""
    clock = Clock()
    asr = FakeAsr(clock, 0.1)
    asr.max_batch = 4
    pool = ThreadPoolExecutor(2)
    s = AsrScheduler(asr, pool, StsMetrics(), workers=2, clock=clock)
    s.cost = CostModel(post_seed_s=0.01, clock=clock)
    for b in (1, 2, 4):
        s.cost.observe_asr(1000, b, 0.1 * b, True)
    s.start()
    yield s, asr, clock
    asr.released.set()
    await s.close()
    pool.shutdown()


async def test_beam_on_parallel_workers_only_when_the_asr_is_otherwise_idle(two_workers):
    """Two workers: a lone fragment gets the beam; two at once run side by side, greedy (the
    beam would hold a worker longer when the next burst comes)."""
    s, asr, clock = two_workers
    for b in (1, 2):
        s.cost.observe_asr(1000, b, 0.1 * b, False)
    now = clock()
    await s.transcribe(clip(1), None, now + 5, True)
    assert asr.beams == [5]
    asr.beams.clear()
    asr.hold = {2.0, 3.0}
    pair = asyncio.gather(*[s.transcribe(clip(t), None, now + 5, True) for t in (2, 3)])
    await until(lambda: len(asr.calls) == 3)  # both running at once
    asr.released.set()
    await pair
    assert asr.beams == [1, 1] and sorted(len(c) for c in asr.calls[-2:]) == [1, 1]


async def test_burst_spread_over_parallel_workers(two_workers):
    """Two workers: a burst of four runs as two batches of two at the same time."""
    s, asr, clock = two_workers
    now = clock()
    asr.hold = {1.0, 2.0, 3.0, 4.0}
    burst = asyncio.gather(*[s.transcribe(clip(t), None, now + 5, True) for t in (1, 2, 3, 4)])
    await until(lambda: len(asr.calls) == 2)  # both started before either ended: they overlap
    asr.released.set()
    await burst
    assert sorted(len(c) for c in asr.calls) == [2, 2]


async def test_fragment_does_not_wait_for_a_busy_worker(two_workers):
    """A fragment arriving while one worker runs starts at once on the other one."""
    s, asr, clock = two_workers
    now = clock()
    asr.hold = {1.0}
    first = asyncio.create_task(s.transcribe(clip(1, 1), None, now + 5, True))
    await until(lambda: asr.calls)  # the first runs alone, and keeps running
    result, _, _ = await s.transcribe(clip(2), None, now + 5, True)
    assert result == "t2" and not first.done()  # it did not wait for the first call to end
    asr.released.set()
    await first
    assert asr.calls == [[1.0], [2.0]]


async def test_burst_a_few_ms_apart_is_gathered_into_one_batch(sched):
    """Fragments arriving 30 ms apart (streams started together) end up in one batch, not two:
    the burst is over when nothing has arrived for a while since the last one, not the first."""
    s, asr, clock = sched
    clock.freeze()
    now = clock()
    tasks = [asyncio.create_task(s.transcribe(clip(1), None, now + 5, True))]
    await until(gathering(s, 1))
    clock.skip(0.03)
    tasks.append(asyncio.create_task(s.transcribe(clip(2), None, now + 5, True)))
    await until(gathering(s, 2))
    clock.skip(0.02)  # past QUIET_S since the first arrival, not since the second
    s._wake.set()  # the runner looks again, as it does at every arrival
    await until(gathering(s, 2))
    tasks.append(asyncio.create_task(s.transcribe(clip(3), None, now + 5, True)))
    await asyncio.gather(*tasks)
    assert asr.calls == [[1.0, 2.0, 3.0]]


async def test_close_cancels_a_running_batch(two_workers):
    s, asr, clock = two_workers
    asr.hold = {1.0}
    job = asyncio.create_task(s.transcribe(clip(1), None, clock() + 5, True))
    await until(lambda: asr.calls)  # gathered and running in the executor
    assert s._running
    await s.close()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert not s._running


async def test_full_window_reruns_counted_by_guard():
    """A fragment a truncation guard had decoded again is counted (each costs ~3 sized calls)."""
    from sts_service.asr.whisper import Transcription

    class RerunAsr(FakeAsr):
        def transcribe_batch(self, audios, prompts, beam_size=None):
            return [Transcription("x", False, "", rerun="repetition" if a[0] == 7 else "") for a in audios]

    pool = ThreadPoolExecutor(1)
    metrics = StsMetrics()
    clock = Clock()
    s = AsrScheduler(RerunAsr(clock), pool, metrics, clock=clock)
    s.start()
    try:
        now = clock()
        await asyncio.gather(*(s.transcribe(clip(tag), None, now + 5, True) for tag in (7, 8, 7)))
    finally:
        await s.close()
        pool.shutdown()
    assert metrics.registry.get_sample_value("sts_asr_full_window_reruns_total", {"guard": "repetition"}) == 2


async def test_beam_of_one_uses_the_greedy_estimates():
    """With --asr-beam-size 1 every call is greedy: the estimates the warm-up primed (greedy) apply,
    not a beam estimate seeded at 1.5 times them, which refused fragments that would have made it."""
    clock = Clock()
    clock.freeze()
    asr = FakeAsr(clock, seconds_per_item=0.02)
    asr.beam_size = 1
    pool = ThreadPoolExecutor(1)
    s = AsrScheduler(asr, pool, StsMetrics(), clock=clock)
    s.cost = CostModel(post_seed_s=0.01, clock=clock)
    s.cost.prime(1000, True, 1, 0.1)  # what the warm-up measures
    s.start()
    try:
        result, _, _ = await s.transcribe(clip(3), None, clock() + 0.14, True)  # 0.1 + 0.01 fits, 0.15 would not
    finally:
        await s.close()
        pool.shutdown()
    assert result == "t3" and asr.beams == [1]


async def test_behind_a_busy_worker_the_free_one_takes_what_finishes_the_last_soonest():
    """Three fragments arrive while one worker runs a lone fragment: the free worker takes two
    and leaves one for the busy worker (a batch of three would finish all three later)."""
    clock = Clock()
    asr = FakeAsr(clock, seconds_per_item=0.4)  # greedy: 0.2 s a fragment, batches cost linearly
    asr.hold = {0.0}
    pool = ThreadPoolExecutor(2)
    s = AsrScheduler(asr, pool, StsMetrics(), workers=2, clock=clock)
    s.cost = CostModel(post_seed_s=0.01, clock=clock)
    for b in (1, 2, 3):
        s.cost.prime(1000, True, b, 0.2 * b)
    s.cost.prime(1000, False, 1, 0.4)  # the lone fragment runs the beam on the idle ASR
    s.start()
    try:
        now = clock()
        lone = asyncio.create_task(s.transcribe(clip(0), None, now + 10, True))
        await until(lambda: asr.calls)
        clock.freeze()
        clock.skip(0.1)  # the lone fragment has run for 0.1 s of its expected 0.4 s
        rest = [asyncio.create_task(s.transcribe(clip(tag), None, now + 10, True)) for tag in (1, 2, 3)]
        await asyncio.gather(*rest)
        asr.released.set()
        await lone
        assert asr.calls[0] == [0.0]
        assert sorted(len(c) for c in asr.calls[1:]) == [1, 2], asr.calls
    finally:
        asr.released.set()
        await s.close()
        pool.shutdown()


def test_estimated_wait_counts_running_batches_and_what_waits():
    """GET /load's estimated_wait_ms: a new fragment waits for the first worker to be free after
    the running batches and the queue (batched as the scheduler would) are done."""
    import asyncio as _asyncio

    from sts_service.scheduler import AsrScheduler, _Job

    class Asr:
        max_batch = 2

    class Metrics:
        pass

    loop = _asyncio.new_event_loop()
    try:
        s = AsrScheduler(Asr(), executor=None, metrics=Metrics(), workers=2)
        s.cost.prime(1000, True, 1, 0.3)
        s.cost.prime(1000, True, 2, 0.5)
        assert s.estimated_wait_s(0.0) == 0.0  # idle: a worker is free
        busy = [object(), object()]
        s._busy_until = {busy[0]: 10.4, busy[1]: 10.1}
        assert abs(s.estimated_wait_s(10.0) - 0.1) < 1e-9  # both busy: the earlier end
        for i in range(3):
            s._heap.append(_Job(20.0 + i, i, None, None, 1000, True, 10.0, loop.create_future()))
        # the queue: a batch of 2 (0.5 s) on the worker free at 0.1, then 1 (0.3 s) on the one free
        # at 0.4; a new fragment waits for the first free after that: min(0.6, 0.7)
        assert abs(s.estimated_wait_s(10.0) - 0.6) < 1e-9
    finally:
        loop.close()
