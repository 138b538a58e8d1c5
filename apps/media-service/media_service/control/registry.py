"""The running stream workers, by id: idempotent start and stop, shared by REST and hooks."""

from __future__ import annotations

import asyncio
import logging

from ..config import MediaConfig, StreamRequest
from ..events import EventLog
from ..metrics import MediaMetrics
from ..states import StreamState
from ..stream.sts_pool import StsPool
from ..stream.worker import StreamWorker

log = logging.getLogger(__name__)


class StreamExists(Exception):
    def __init__(self, worker: StreamWorker):
        super().__init__(f"stream {worker.id} already exists with a different request")
        self.worker = worker


class LimitReached(Exception):
    """A configured limit refuses the request; `limit` names it (metrics label, error text)."""

    def __init__(self, limit: str, message: str, status: int = 503):
        super().__init__(message)
        self.limit, self.status = limit, status  # 503: the service is full; 400: the request is too big


OUTPUT_STALL_S = 10.0  # an output loop that has not turned this long is stuck (watchdog)


class StreamRegistry:
    def __init__(self, cfg: MediaConfig, metrics: MediaMetrics, events: EventLog):
        self.cfg, self.metrics, self.events = cfg, metrics, events
        self._workers: dict[str, StreamWorker] = {}
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task | None = None
        self.sts_pool = StsPool(cfg.sts_url)  # one replica choice for all the process's streams
        # Called (awaited) with the id of every stream removed: per-stream state elsewhere
        # (the preview registry) goes with it.
        self.on_removed: list = []
        # Cluster mode (cluster/node.py): takes the stream's lease before a worker starts (raises
        # OwnedElsewhere when another replica holds it) and gives it up when the worker stops.
        self.ownership = None

    def get(self, stream_id: str) -> StreamWorker | None:
        return self._workers.get(stream_id)

    def all(self) -> list[StreamWorker]:
        return list(self._workers.values())

    async def start(self, request: StreamRequest) -> tuple[StreamWorker, bool]:
        """Start a worker; if one with this id runs the same request, return it (created=False).

        Raises LimitReached at --max-streams / --max-languages, and TargetRefused when an input or output is outside what the service may open
        (files outside --media-root, hosts outside --media-hosts): the one place it is checked.
        """
        stream_id = request.stream_id()
        policy = self.cfg.target_policy()
        for url, output, kind, what in request.targets():
            policy.check(url, output=output, kind=kind, what=what)
        if len(request.target_languages) > self.cfg.max_languages:
            raise LimitReached("languages", f"{len(request.target_languages)} target languages; at most "
                                            f"{self.cfg.max_languages} per stream (--max-languages)", status=400)
        async with self._lock:
            existing = self._workers.get(stream_id)
            if existing is not None and not existing.done:
                same = existing.request.model_dump(exclude={"mix"}) == request.model_dump(exclude={"mix"})
                if not same:
                    raise StreamExists(existing)
                return existing, False
            running = sum(1 for w in self._workers.values() if not w.done)
            if running >= self.cfg.max_streams:
                raise LimitReached("streams", f"{running} streams are running, the limit is {self.cfg.max_streams} "
                                              "(--max-streams / MEDIA_MAX_STREAMS); stop one or raise the limit")
            gate = await self.ownership.claim(request) if self.ownership is not None else None
            worker = StreamWorker(stream_id, request, self.cfg, self.metrics, self.events, sts_pool=self.sts_pool,
                                  output_gate=gate)
            self._workers[stream_id] = worker
            await worker.start()
            self.metrics.streams_active.set(len([w for w in self._workers.values() if not w.done]))
            if self._reaper is None:
                self._reaper = asyncio.create_task(self._reap())
            return worker, True

    async def stop(self, stream_id: str, drain: bool = True, drain_limit_s: float | None = None,
                   handover: bool = False) -> StreamWorker | None:
        """Stop and forget a worker; stopping an unknown or stopped stream is not an error.
        `handover` (cluster mode): another replica is to carry the stream on."""
        async with self._lock:
            worker = self._workers.pop(stream_id, None)
        if worker is not None and not worker.done:
            await worker.stop(drain=drain, drain_limit_s=drain_limit_s)
        if worker is not None and self.ownership is not None:
            await self.ownership.released(stream_id, handover=handover)  # after its outputs closed
        if worker is not None:
            for forget in self.on_removed:
                await forget(stream_id)
        self.metrics.streams_active.set(len([w for w in self._workers.values() if not w.done]))
        return worker

    async def _reap(self) -> None:
        """Workers that stop themselves (input gone for good) are removed here; failed ones are
        stopped (and kept, so that their reason can be read); the watchdog fails a worker whose
        output thread has not come round its loop for OUTPUT_STALL_S."""
        while True:
            await asyncio.sleep(1.0)
            for worker in list(self._workers.values()):
                stalled = worker.output_stalled_s()
                if stalled > OUTPUT_STALL_S:
                    worker.fail(f"output thread stuck for {stalled:.0f} s")
                if worker.state == StreamState.ENDED:
                    await self.stop(worker.id)
                elif worker.state == StreamState.FAILED:
                    await worker.stop(drain=False)

    async def close(self) -> None:
        """Shutdown (SIGTERM): every stream stops reading and, in parallel, plays out what is
        buffered (at most --shutdown-drain s) and closes its outputs cleanly; in cluster mode it
        is then handed over (another replica starts it)."""
        if self._reaper:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        drain_s = self.cfg.shutdown_drain_s
        handover = self.ownership is not None
        if handover:
            await self.ownership.hand_over()
        live = [w for w in self.all() if not w.done]
        if live:
            log.info("shutting down: %d streams play out what is buffered (at most %.0f s)", len(live), drain_s)
        await asyncio.gather(*(self.stop(w.id, drain=drain_s > 0, drain_limit_s=drain_s, handover=handover)
                               for w in self.all()),
                             return_exceptions=True)
