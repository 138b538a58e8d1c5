"""The lease keeper: one thread that renews every lease this replica holds, RENEWALS_PER_TTL
times per TTL, on a blocking Redis client of its own.

Why a thread: the event loop can be held up for seconds on a loaded host (a stream starting,
GIL contention from the media threads), and a lease must not lapse because of that. The thread
only renews; what follows from an outcome (give a lost stream up, record a lease taken again)
is handed to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from .lease import BlockingRenewer, Lease, Renewal

log = logging.getLogger(__name__)

RENEWALS_PER_TTL = 4  # a renewal may fail (or come late) twice before the outputs stop


class LeaseKeeper:
    def __init__(self, redis_url: str, replica_id: str, ttl_s: float, prefix: str,
                 held: Callable[[], list[Lease]],
                 on_outcomes: Callable[[list[tuple[Lease, Renewal, tuple[str, int] | None]]], None],
                 on_error: Callable[[Exception | None], None]):
        import redis

        timeout = ttl_s / RENEWALS_PER_TTL
        self._client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=timeout,
                                            socket_connect_timeout=timeout)
        self._renewer = BlockingRenewer(self._client, replica_id, ttl_s, prefix)
        self.interval_s = ttl_s / RENEWALS_PER_TTL
        self._held, self._on_outcomes, self._on_error = held, on_outcomes, on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            leases = self._held()
            try:
                results = self._renewer.renew_all(leases)
                error = None
            except Exception as exc:  # Redis away: nothing confirmed; the clocks run out by themselves
                results, error = [], exc
            self._post(self._on_error, error)
            changed = [(lease, outcome, holder) for lease, (outcome, holder) in zip(leases, results)
                       if outcome != Renewal.RENEWED]
            if changed:
                self._post(self._on_outcomes, changed)
            self._stop.wait(self.interval_s)

    def _post(self, fn, arg) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, arg)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        self._client.close()
