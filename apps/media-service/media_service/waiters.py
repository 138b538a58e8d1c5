"""Long polls on what threads add: an asyncio reader waits until there is something for it.

Shared by the event log and the caption tracks, whose writers are other threads (ingest, output,
executors) and whose readers are API requests on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Waiters:
    """asyncio readers waiting for a writer on any thread.

    The writer adds under its own lock and then calls `wake()`. A reader looks, registers, and
    looks again before it sleeps: what was added between its first look and its registration is
    found by the second look (no wake-up reached it), and what is added later wakes it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def wake(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
        for loop, event in waiting:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def wait_for(self, look: Callable[[], list[T]], timeout: float) -> list[T]:
        """What `look()` returns, waiting up to `timeout` seconds for it to return something ([]
        if nothing came). Woken by every `wake()`, it looks again and sleeps on if it is not for it."""
        found = look()
        if found or timeout <= 0:
            return found
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiting.add(entry)
        try:
            deadline = time.monotonic() + timeout
            while True:
                entry[1].clear()  # before looking: a wake-up from now on is not lost
                found = look()
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(entry[1].wait(), left)
        finally:
            with self._lock:
                self._waiting.discard(entry)
