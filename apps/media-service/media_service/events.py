"""Stream lifecycle events (started, input lost/recovered, sts state, fallbacks, dubs, stopped).

A bounded, thread-safe log with a global sequence number: consumers that join late read the
backlog with `since`, then long-poll for more. Published from any thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .waiters import Waiters


class EventLog:
    def __init__(self, maxlen: int = 2000):
        self.maxlen = maxlen  # events kept (older ones are dropped; the seq numbers tell a reader)
        self._events: deque[dict] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._seq = 0
        self._waiters = Waiters()

    def publish(self, stream: str, kind: str, data: dict | None = None) -> dict:
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, "time": time.time(), "stream": stream, "type": kind, "data": data or {}}
            self._events.append(event)
        self._waiters.wake()
        return event

    @property
    def last_seq(self) -> int:
        return self._seq

    def since(self, seq: int = 0, stream: str | None = None, limit: int = 500) -> list[dict]:
        with self._lock:
            out = [e for e in self._events if e["seq"] > seq and (stream is None or e["stream"] == stream)]
        return out[:limit]

    async def wait_since(self, seq: int, stream: str | None, timeout: float) -> list[dict]:
        """Events after `seq`, waiting up to `timeout` seconds for the first one."""
        return await self._waiters.wait_for(lambda: self.since(seq, stream), timeout)
