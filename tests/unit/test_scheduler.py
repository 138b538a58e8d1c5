"""AsrScheduler logic with a fake ASR: EDF order, batching of equal windows, expired never started."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sts_service.cost_model import CostModel, Ewma
from sts_service.metrics import StsMetrics
from sts_service.scheduler import AsrScheduler, DeadlineExceeded


class FakeAsr:
    max_batch = 3
    beam_size = 5

    def __init__(self, seconds_per_item=0.05):
        self.calls: list[list[float]] = []
        self.beams: list[int] = []
        self.per_item = seconds_per_item

    def window_frames(self, n):
        return 1000 if n < 16000 * 9 else 3000

    def transcribe_batch(self, audios, prompts, beam_size=None):
        self.calls.append([float(a[0]) for a in audios])
        self.beams.append(beam_size or self.beam_size)
        time.sleep(self.per_item * len(audios) * (0.5 if beam_size == 1 else 1.0))
        return [f"t{a[0]:.0f}" for a in audios]


def clip(tag: float, seconds: float = 2.0) -> np.ndarray:
    x = np.zeros(int(16000 * seconds), np.float32)
    x[0] = tag
    return x


@pytest.fixture
async def sched():
    asr = FakeAsr()
    pool = ThreadPoolExecutor(1)
    s = AsrScheduler(asr, pool, StsMetrics())
    s.cost = CostModel(post_seed_s=0.01)
    for greedy in (False, True):
        s.cost.observe_asr(1000, 1, 0.05, greedy)
        s.cost.observe_asr(3000, 1, 0.05, greedy)
    s.start()
    yield s, asr
    await s.close()
    pool.shutdown()


async def test_earliest_deadline_first_and_equal_windows_batched(sched):
    s, asr = sched
    loop = asyncio.get_running_loop()
    now = loop.time()
    # The first call starts at once; the rest queue behind it in deadline order.
    first = asyncio.create_task(s.transcribe(clip(0), None, now + 5, True))
    await asyncio.sleep(0.15)  # past the gathering wait: it runs alone
    jobs = [asyncio.create_task(s.transcribe(clip(tag, secs), None, now + dl, True))
            for tag, secs, dl in ((1, 2, 4.0), (2, 12, 1.0), (3, 2, 3.0), (4, 2, 2.0))]
    results = await asyncio.gather(first, *jobs)
    assert [r[0] for r in results] == ["t0", "t1", "t2", "t3", "t4"]
    # tag 2 (long window) has the earliest deadline and runs alone; then 4, 3, 1 share a window.
    assert asr.calls[1] == [2.0]
    assert asr.calls[2] == [4.0, 3.0, 1.0]


async def test_fragment_that_cannot_finish_is_never_started(sched):
    s, asr = sched
    now = asyncio.get_running_loop().time()
    with pytest.raises(DeadlineExceeded) as exc:
        await s.transcribe(clip(7), None, now + 0.01, True)
    assert exc.value.stage == "asr" and exc.value.hard
    assert all(7.0 not in call for call in asr.calls)


async def test_queued_fragment_expires_without_work(sched):
    s, asr = sched
    asr.per_item = 0.3
    now = asyncio.get_running_loop().time()
    busy = asyncio.create_task(s.transcribe(clip(1), None, now + 5, True))
    await asyncio.sleep(0.01)
    # Fits when queued (0.05 s estimated), but the running batch takes 0.3 s: it expires waiting.
    with pytest.raises(DeadlineExceeded):
        await s.transcribe(clip(2), None, now + 0.15, True)
    await busy
    assert all(2.0 not in call for call in asr.calls)
    assert s.metrics.work_on_expired._value.get() == 0


async def test_soft_deadline_fails_as_timeout_not_deadline_exceeded(sched):
    s, _ = sched
    now = asyncio.get_running_loop().time()
    with pytest.raises(DeadlineExceeded) as exc:
        await s.transcribe(clip(1), None, now - 1, False)
    assert exc.value.hard is False


async def test_beam_when_idle_greedy_when_others_wait(sched):
    s, asr = sched
    now = asyncio.get_running_loop().time()
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
    first = asyncio.create_task(s.transcribe(clip(9), None, now + 5, True))
    await asyncio.sleep(0.15)
    jobs = [asyncio.create_task(s.transcribe(clip(t, 12), None, now + 5, True)) for t in (10,)]
    await asyncio.gather(first, *jobs)
    assert asr.beams == [5, 5], "each ran alone with nothing waiting"


async def test_beam_skipped_when_only_greedy_finishes_in_time(sched):
    s, asr = sched
    s.cost.observe_asr(1000, 1, 0.5, greedy=False)  # beam now looks ~0.5 s, greedy 0.05 s
    now = asyncio.get_running_loop().time()
    await s.transcribe(clip(1), None, now + 0.3, True)
    assert asr.beams == [1]


async def test_streams_started_together_share_one_batch(sched):
    """Equal fragments with equal deadlines (streams started together) run as one batch even
    when only single calls have been measured: batching is seeded cheaper than running twice."""
    s, asr = sched
    asr.per_item = 0.1
    for _ in range(30):
        s.cost.observe_asr(1000, 1, 0.1, greedy=True)
    now = asyncio.get_running_loop().time()
    # 0.1 s a fragment alone: two in a row would end at ~0.2 s + post 0.01 > the 0.19 s deadline.
    pair = [asyncio.create_task(s.transcribe(clip(t), None, now + 0.19, True)) for t in (1, 2)]
    await asyncio.gather(*pair)
    assert asr.calls == [[1.0, 2.0]]


async def test_lone_fragment_waits_briefly_for_a_companion(sched):
    """Streams started together send equal fragments a few ms apart: they share one batch."""
    s, asr = sched
    now = asyncio.get_running_loop().time()
    first = asyncio.create_task(s.transcribe(clip(1), None, now + 5, True))
    await asyncio.sleep(0.03)
    second = asyncio.create_task(s.transcribe(clip(2), None, now + 5, True))
    await asyncio.gather(first, second)
    assert asr.calls == [[1.0, 2.0]]


async def test_no_gathering_wait_without_slack(sched):
    s, asr = sched
    s.cost.prime(1000, True, 1, 0.05)
    s.cost.prime(1000, False, 1, 0.05)
    now = asyncio.get_running_loop().time()
    t0 = time.perf_counter()
    await s.transcribe(clip(1), None, now + 0.08, True)  # 0.05 s run + 0.01 s post: no room to wait
    assert time.perf_counter() - t0 < 0.075


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


async def test_refused_fragments_are_admitted_again_once_the_estimate_decays(monkeypatch):
    monkeypatch.setattr(Ewma, "HALF_LIFE_S", 0.05)
    asr = FakeAsr(0.01)
    s = AsrScheduler(asr, ThreadPoolExecutor(1), StsMetrics())
    s.cost = CostModel(post_seed_s=0.01)
    for greedy in (False, True):
        s.cost.prime(1000, greedy, 1, 0.01)
        for _ in range(10):
            s.cost.observe_asr(1000, 1, 1.0, greedy)  # a slow spell: one fragment now "needs" ~1 s
    s.start()
    try:
        loop = asyncio.get_running_loop()
        with pytest.raises(DeadlineExceeded):
            await s.transcribe(clip(1), None, loop.time() + 0.3, True)
        await asyncio.sleep(0.5)  # ten half-lives, nothing observed meanwhile
        result, _, _ = await s.transcribe(clip(1), None, loop.time() + 0.3, True)
        assert result == "t1"
    finally:
        await s.close()


class TimedAsr(FakeAsr):
    """Records when each call ran, to see calls overlap on parallel workers."""

    def __init__(self, seconds_per_item=0.05):
        super().__init__(seconds_per_item)
        self.spans: list[tuple[float, float]] = []

    def transcribe_batch(self, audios, prompts, beam_size=None):
        t0 = time.monotonic()
        out = super().transcribe_batch(audios, prompts, beam_size)
        self.spans.append((t0, time.monotonic()))
        return out


@pytest.fixture
async def two_workers():
    """A scheduler with two parallel workers over a fake ASR that records when each call ran."""
    asr = TimedAsr(0.1)
    asr.max_batch = 4
    pool = ThreadPoolExecutor(2)
    s = AsrScheduler(asr, pool, StsMetrics(), workers=2)
    s.cost = CostModel(post_seed_s=0.01)
    for b in (1, 2, 4):
        s.cost.observe_asr(1000, b, 0.1 * b, True)
    s.start()
    yield s, asr
    await s.close()
    pool.shutdown()


async def test_beam_on_parallel_workers_only_when_the_asr_is_otherwise_idle(two_workers):
    """Two workers: a lone fragment gets the beam; two at once run side by side, greedy (the
    beam would hold a worker longer when the next burst comes)."""
    s, asr = two_workers
    for b in (1, 2):
        s.cost.observe_asr(1000, b, 0.1 * b, False)
    now = asyncio.get_running_loop().time()
    await s.transcribe(clip(1), None, now + 5, True)
    assert asr.beams == [5]
    asr.beams.clear()
    await asyncio.gather(*[s.transcribe(clip(t), None, now + 5, True) for t in (2, 3)])
    assert asr.beams == [1, 1] and sorted(len(c) for c in asr.calls[-2:]) == [1, 1]


async def test_burst_spread_over_parallel_workers(two_workers):
    """Two workers: a burst of four runs as two batches of two at the same time."""
    s, asr = two_workers
    now = asyncio.get_running_loop().time()
    await asyncio.gather(*[s.transcribe(clip(t), None, now + 5, True) for t in (1, 2, 3, 4)])
    assert sorted(len(c) for c in asr.calls) == [2, 2]
    (a0, a1), (b0, b1) = asr.spans
    assert b0 < a1 and a0 < b1  # the two calls overlapped


async def test_fragment_does_not_wait_for_a_busy_worker(two_workers):
    """A fragment arriving while one worker runs starts at once on the other one."""
    s, asr = two_workers
    now = asyncio.get_running_loop().time()
    first = asyncio.create_task(s.transcribe(clip(1, 1), None, now + 5, True))
    await asyncio.sleep(0.15)  # past the gathering wait: the first runs alone
    _, queued, _ = await s.transcribe(clip(2), None, now + 5, True)
    await first
    assert asr.calls == [[1.0], [2.0]]
    assert queued < 0.1  # it did not wait for the first call to end


async def test_burst_a_few_ms_apart_is_gathered_into_one_batch(sched):
    """Fragments arriving 20 ms apart (streams started together) end up in one batch, not two."""
    s, asr = sched
    now = asyncio.get_running_loop().time()
    tasks = []
    for t in (1, 2, 3):
        tasks.append(asyncio.create_task(s.transcribe(clip(t), None, now + 5, True)))
        await asyncio.sleep(0.02)
    await asyncio.gather(*tasks)
    assert asr.calls == [[1.0, 2.0, 3.0]]


async def test_close_cancels_a_running_batch(two_workers):
    s, _ = two_workers
    now = asyncio.get_running_loop().time()
    job = asyncio.create_task(s.transcribe(clip(1), None, now + 5, True))
    await asyncio.sleep(0.12)  # gathered and running in the executor
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
    s = AsrScheduler(RerunAsr(), pool, metrics)
    s.start()
    try:
        now = asyncio.get_running_loop().time()
        await asyncio.gather(*(s.transcribe(clip(tag), None, now + 5, True) for tag in (7, 8, 7)))
    finally:
        await s.close()
        pool.shutdown()
    assert metrics.registry.get_sample_value("sts_asr_full_window_reruns_total", {"guard": "repetition"}) == 2


async def test_beam_of_one_uses_the_greedy_estimates():
    """With --asr-beam-size 1 every call is greedy: the estimates the warm-up primed (greedy) apply,
    not a beam estimate seeded at 1.5 times them, which refused fragments that would have made it."""
    asr = FakeAsr(seconds_per_item=0.02)
    asr.beam_size = 1
    pool = ThreadPoolExecutor(1)
    s = AsrScheduler(asr, pool, StsMetrics())
    s.cost = CostModel(post_seed_s=0.01)
    s.cost.prime(1000, True, 1, 0.1)  # what the warm-up measures
    s.start()
    try:
        now = asyncio.get_running_loop().time()
        result, _, _ = await s.transcribe(clip(3), None, now + 0.14, True)  # 0.1 + 0.01 fits, 0.15 would not
    finally:
        await s.close()
        pool.shutdown()
    assert result == "t3" and asr.beams == [1]


async def test_behind_a_busy_worker_the_free_one_takes_what_finishes_the_last_soonest():
    """Three fragments arrive while one worker runs a lone fragment: the free worker takes two
    and leaves one for the busy worker (a batch of three would finish all three later)."""
    asr = FakeAsr(seconds_per_item=0.4)  # greedy: 0.2 s a fragment, batches cost linearly
    pool = ThreadPoolExecutor(2)
    s = AsrScheduler(asr, pool, StsMetrics(), workers=2)
    s.cost = CostModel(post_seed_s=0.01)
    for b in (1, 2, 3):
        s.cost.prime(1000, True, b, 0.2 * b)
    s.cost.prime(1000, False, 1, 0.4)  # the lone fragment runs the beam on the idle ASR
    s.start()
    try:
        loop = asyncio.get_running_loop()
        now = loop.time()
        lone = asyncio.create_task(s.transcribe(clip(0), None, now + 10, True))
        await asyncio.sleep(0.1)  # the lone fragment is running
        rest = [asyncio.create_task(s.transcribe(clip(tag), None, now + 10, True)) for tag in (1, 2, 3)]
        await asyncio.gather(lone, *rest)
        assert asr.calls[0] == [0.0]
        assert sorted(len(c) for c in asr.calls[1:]) == [1, 2], asr.calls
    finally:
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
