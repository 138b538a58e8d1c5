"""One ASR queue for every connection: earliest deadline first, batched, never late on purpose.

Served in arrival order under load, fragments whose deadline has passed would take the machine and
make every later fragment late too. Here:

- every fragment waits in one queue ordered by deadline (a fragment sent without one gets the
  ASR timeout as its deadline, and fails as `timeout` instead of `deadline_exceeded`);
- whenever one of ``workers`` ASR workers is free, the runner takes the earliest deadline and the
  waiting fragments of the same encoder window (up to ``asr.max_batch``, spread over the workers,
  ``_share``) and transcribes them in one batched call in the ASR executor. Several single-threaded
  workers beat one multi-threaded call on a shared machine (one straggling OpenMP thread stalls
  the whole multi-threaded call; bench/README.md), and a burst does not wait for the whole of the
  batch before it;
- the first fragment of a burst waits until the burst is over (nothing new for 40 ms, at most
  80 ms, a quarter of its slack at most): streams started together send equal fragments a few ms
  apart, which then share batches;
- the configured beam search runs only for a lone fragment on an otherwise idle ASR (nothing
  running, nothing waiting) that finishes with its run time to spare; otherwise the batch is
  decoded greedily (faster, slightly less accurate: quality gives way before any fragment is
  dropped);
- a learned cost model (``cost_model.CostModel``) says how long that call and the stages after it will take;
  a fragment that cannot finish by its deadline is never started: it is answered at once.

One runner task owns the queue and the batch tasks it starts; ``close()`` cancels and awaits
them all and fails what is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from .cost_model import CostModel
from .metrics import StsMetrics

log = logging.getLogger(__name__)


class DeadlineExceeded(Exception):
    """The fragment cannot (or can no longer) be finished before its deadline."""

    def __init__(self, stage: str, message: str, hard: bool = True):
        super().__init__(message)
        self.stage, self.message, self.hard = stage, message, hard


@dataclass(order=True)
class _Job:
    deadline: float
    seq: int
    audio: np.ndarray = field(compare=False)
    prompt: str | None = field(compare=False)
    window: int = field(compare=False)
    hard: bool = field(compare=False)  # the client asked for this deadline
    enqueued: float = field(compare=False)
    future: asyncio.Future = field(compare=False)
    left: object = field(default=None, compare=False)  # asr.whisper.LeftAudio: heard behind it, or None


class AsrScheduler:
    GATHER_S = 0.08  # longest the first fragment of a burst waits for companions to batch with
    QUIET_S = 0.04  # a burst is over when nothing has arrived for this long

    def __init__(self, asr, executor: Executor, metrics: StsMetrics, *, max_queued: int = 64,
                 workers: int = 1, clock: Callable[[], float] = time.monotonic):
        # Deadlines are on ``clock``: the event loop's (asyncio's loop.time() is time.monotonic());
        # tests inject their own to decide without waiting.
        self._clock = clock
        self.asr = asr
        self.executor = executor
        self.metrics = metrics
        self.max_queued = max_queued
        self.workers = max(1, workers)  # batches run at once (the executor must have as many threads)
        self.cost = CostModel(clock=clock)
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()  # one per batch in the executor; owned by the runner
        self._busy_until: dict[asyncio.Task, float] = {}  # a running batch's expected end
        self._last_arrival = 0.0
        self._max_batch = int(getattr(asr, "max_batch", 1))
        self._beam = int(getattr(asr, "beam_size", 1))
        self._has_beam = self._beam > 1  # a beam of 1 is greedy search: the same call, the same estimates

    @property
    def queued(self) -> int:
        return len(self._heap)

    def estimated_wait_s(self, now: float) -> float:
        """How long a fragment arriving now would wait for an ASR worker, by the cost model: the
        running batches' expected ends, then what waits, batched, each on the first free worker.
        The load a client compares replicas by (`GET /load`)."""
        free_at = sorted([max(0.0, end - now) for end in self._busy_until.values()]
                         + [0.0] * max(0, self.workers - len(self._busy_until)))
        live = sorted(self._live())
        while live:
            batch, live = live[:self._max_batch], live[self._max_batch:]
            free_at[0] += self.cost.asr(batch[0].window, len(batch), True)
            free_at.sort()
        return free_at[0]

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="asr-scheduler")

    async def close(self) -> None:
        if self._runner:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in self._heap:
            if not job.future.done():
                job.future.cancel()
        self._heap.clear()

    def _window(self, n_samples: int) -> int:
        fn = getattr(self.asr, "window_frames", None)
        return fn(n_samples) if fn else 3000

    def window_for(self, audio: np.ndarray, left=None) -> int:
        """The encoder window a fragment will take (with its left context in front, if any)."""
        return self._window(len(audio) + (len(left.audio) if left is not None else 0))

    async def transcribe(self, audio: np.ndarray, prompt: str | None, deadline: float, hard: bool,
                         left=None):
        """Queue one fragment; returns (Transcription, queued s, ran s) or raises DeadlineExceeded.
        ``left`` (an ``asr.whisper.LeftAudio``) is decoded in front of it, for an ASR that takes it."""
        loop = asyncio.get_running_loop()
        now = self._clock()
        if not getattr(self.asr, "takes_left_context", False):
            left = None
        window = self.window_for(audio, left)
        cheapest = self.cost.asr(window, 1, True)
        if hard and now + cheapest + self.cost.post.value > deadline:
            self._exceeded("asr")
            raise DeadlineExceeded("asr", f"{(deadline - now) * 1000:.0f} ms left, ASR alone needs "
                                          f"~{cheapest * 1000:.0f} ms")
        job = _Job(deadline, next(self._seq), audio, prompt, window, hard, now, loop.create_future(), left)
        heapq.heappush(self._heap, job)
        self._last_arrival = now
        self.metrics.asr_queue.set(len(self._heap))
        self._wake.set()
        try:
            return await job.future
        finally:
            if not job.future.done():
                job.future.cancel()  # the caller gave up: the runner skips it

    def _exceeded(self, stage: str) -> None:
        self.metrics.deadline_exceeded.labels(stage).inc()

    def _expire(self, job: _Job, now: float) -> None:
        if not job.future.done():
            late = (now - job.deadline) * 1000
            if job.hard:
                self._exceeded("asr")
            job.future.set_exception(DeadlineExceeded(
                "asr", f"could not start before the deadline ({late:+.0f} ms past it with the "
                       f"expected run time)", hard=job.hard))

    def _next_batch(self, now: float, limit: int | None = None) -> tuple[list[_Job], bool]:
        """Earliest deadline first; drops what cannot finish; joins equal windows into a batch.

        At most ``limit`` fragments (default ``asr.max_batch``). Returns the batch and whether to
        decode it greedily. Feasibility is judged on the
        cheapest decoding; the configured beam is used only for a lone fragment on an otherwise
        idle ASR that would finish with its own run time to spare (quality when there is room,
        throughput under load).
        """
        greedy = True
        while self._heap:
            head = self._heap[0]
            if head.future.done():
                heapq.heappop(self._heap)
                continue
            run = self.cost.asr(head.window, 1, greedy)
            if now + run + (self.cost.post.value if head.hard else 0) > head.deadline:
                heapq.heappop(self._heap)
                self._expire(head, now + run)
                continue
            break
        if not self._heap:
            return [], greedy
        head = heapq.heappop(self._heap)
        batch = [head]
        limit = self._max_batch if limit is None else max(1, min(limit, self._max_batch))
        for job in sorted(self._heap):
            if len(batch) >= limit:
                break
            if job.window != head.window or job.future.done():
                continue
            finish = now + self.cost.asr(head.window, len(batch) + 1, greedy) + self.cost.post.value
            if finish <= min(j.deadline for j in batch + [job]):
                batch.append(job)
        for job in batch[1:]:
            self._heap.remove(job)
        heapq.heapify(self._heap)
        if self._has_beam and len(batch) == 1 and not self._running and not self._live():
            # Room for the beam: a lone fragment on an otherwise idle ASR that would finish with
            # its own run time to spare. Anything else is greedy: a beam call holds its worker
            # 1.5 times as long when the next burst comes (measured in bench_load, see the spec).
            beam = self.cost.asr(head.window, 1, False)
            greedy = now + 2 * beam + self.cost.post.value > head.deadline
        return batch, greedy

    def _live(self) -> list[_Job]:
        return [j for j in self._heap if not j.future.done()]

    async def _gather(self) -> None:
        """The first fragment of a burst waits briefly for the rest of it.

        Streams started together send their fragments tens of ms apart. Taken at once, the first
        would run alone and the others wait for its whole run; waiting until the burst is over
        (nothing new for QUIET_S), a batch is full, or GATHER_S has passed (and never more than a
        quarter of the most urgent fragment's slack in a bigger batch) lets them share batches.
        """
        if self._max_batch < 2:
            return
        live = self._live()
        if not live:
            return
        while len(live) < self._max_batch:
            head = min(live)  # waiting is only worth it while a bigger batch still fits its deadline
            bigger = self.cost.asr(head.window, len(live) + 1, True)
            now = self._clock()
            slack = head.deadline - now - bigger - self.cost.post.value
            until = min(min(j.enqueued for j in live) + self.GATHER_S, now + slack / 4)
            wait = min(until, self._last_arrival + self.QUIET_S) - now
            if wait <= 0.005:
                return
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)  # woken by the next arrival
            live = self._live()

    def _share(self, now: float) -> int:
        """Batch size for the next free worker.

        With several workers free: what waits, spread over them. With one free and others busy:
        as many as makes the last of the waiting fragments finish soonest, the rest going to
        whichever worker frees up first. Measured at k = 4 dense streams: one stream's fragment
        ran alone and the other three, arriving ~100 ms later, went to the free worker as a batch
        of 3 (1.2-1.4 s under load, all three then too late); 2 now and 1 after the lone one
        finish together, sooner.
        """
        live = self._live()
        free = self.workers - len(self._running)
        if free != 1 or not self._busy_until:
            return max(1, -(-len(live) // max(1, free)))
        window = min(live).window
        frees_at = min(self._busy_until.values())
        best, share = float("inf"), 1
        for b in range(1, min(len(live), self._max_batch) + 1):
            done = now + self.cost.asr(window, b, True)
            rest = len(live) - b
            last = max(done, min(frees_at, done) + self.cost.asr(window, rest, True)) if rest else done
            if last < best - 1e-6:
                best, share = last, b
        return share

    async def _run(self) -> None:
        """Owns the queue: starts a batch whenever a worker is free and something waits."""
        while True:
            while not self._live() or len(self._running) >= self.workers:
                self._wake.clear()
                await self._wake.wait()
            await self._gather()
            now = self._clock()
            batch, greedy = self._next_batch(now, self._share(now))
            self.metrics.asr_queue.set(len(self._heap))
            if not batch:
                continue
            task = asyncio.create_task(self._run_batch(batch, greedy, now), name="asr-batch")
            self._running.add(task)
            self._busy_until[task] = now + self.cost.asr(batch[0].window, len(batch), greedy)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._busy_until.pop(task, None)
        self._wake.set()

    async def _run_batch(self, batch: list[_Job], greedy: bool, now: float) -> None:
        loop = asyncio.get_running_loop()
        if any(now > j.deadline for j in batch):  # cannot happen: _next_batch checks it
            self.metrics.work_on_expired.inc()
        t0 = self._clock()
        # A remote ASR's requests end in time for the stages after it (local models cannot be cut short).
        budget = max(0.05, min(j.deadline for j in batch) - t0 - self.cost.post.value)
        try:
            results = await loop.run_in_executor(self.executor, self._call, [j.audio for j in batch],
                                                 [j.prompt for j in batch], greedy, budget,
                                                 [j.left for j in batch])
        except asyncio.CancelledError:
            for job in batch:
                job.future.cancel()
            raise
        except Exception as exc:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        ran = self._clock() - t0
        decoding = "greedy" if greedy else "beam"
        log.debug("asr batch of %d, window %d, %s: waited %s ms, ran %.0f ms (expected %.0f), %d queued, "
                  "%d running", len(batch), batch[0].window, decoding,
                  "/".join(f"{(now - j.enqueued) * 1000:.0f}" for j in batch), ran * 1000,
                  self.cost.asr(batch[0].window, len(batch), greedy) * 1000, len(self._heap), len(self._running))
        self.cost.observe_asr(batch[0].window, len(batch), ran, greedy)
        self.metrics.asr_batch_size.observe(len(batch))
        self.metrics.asr_calls.labels(decoding).inc()
        for job, result in zip(batch, results):
            if getattr(result, "rerun", ""):
                self.metrics.asr_reruns.labels(result.rerun).inc()
            if not job.future.done():
                job.future.set_result((result, now - job.enqueued, ran))

    def _call(self, audios, prompts, greedy: bool = False, budget: float | None = None, lefts=None):
        batch_fn = getattr(self.asr, "transcribe_batch", None)
        if batch_fn is not None and getattr(self.asr, "remote", False):
            return batch_fn(audios, prompts, timeout=budget)
        if batch_fn is not None:
            kw = {"lefts": lefts} if lefts and any(x is not None for x in lefts) else {}
            return batch_fn(audios, prompts, 1, **kw) if greedy else batch_fn(audios, prompts, **kw)
        return [self.asr.transcribe(a) for a in audios]
