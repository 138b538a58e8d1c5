"""Per-connection stream sessions: what each stream asked for, its fragments in flight, its stats.

A Session owns the asyncio tasks of its fragments: `close()` cancels and awaits them, so a
disconnect or a re-init never leaves work running for a client that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field

import numpy as np
from livedub_protocol import StreamEndAck, dump

from .asr.left_context import LeftContext
from .context import StreamContext
from .pipeline import StreamSpec


@dataclass
class Session:
    sid: str
    stream_id: str
    spec: StreamSpec
    max_fragment_ms: float
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tasks: set[asyncio.Task] = field(default_factory=set)
    fragments: int = 0
    succeeded: int = 0
    no_speech: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    slowed_down: bool = False
    last_transcript: str | None = None  # the ASR prompt for the next fragment
    context: StreamContext = field(default_factory=StreamContext)  # recent speech, for MT that takes context
    left_context: LeftContext = field(default_factory=lambda: LeftContext(0.0))  # recent audio, for ASR

    @property
    def inflight(self) -> int:
        return len(self.tasks)

    def record(self, status: str, total_ms: float) -> None:
        if status == "ok":
            self.succeeded += 1
        elif status == "no_speech":
            self.no_speech += 1
        else:
            self.failed += 1
        self.latencies_ms.append(total_ms)
        del self.latencies_ms[:-1000]  # bounded

    def stats(self) -> dict:
        lat = np.asarray(self.latencies_ms or [0.0])
        return dump(StreamEndAck(fragments=self.fragments, succeeded=self.succeeded, no_speech=self.no_speech,
                                 failed=self.failed, p50_ms=float(np.percentile(lat, 50)),
                                 p95_ms=float(np.percentile(lat, 95))))

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for fragments in flight, then abandon the rest."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
        await self.close()

    async def close(self) -> None:
        self.left_context.close()  # nobody waits for the words of a fragment that will not finish
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks.clear()


class SessionRegistry:
    """Sessions keyed by (sid, stream_id): streams of different clients never see each other."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Session] = {}

    def get(self, sid: str, stream_id: str) -> Session | None:
        return self._by_key.get((sid, stream_id))

    def put(self, session: Session) -> Session | None:
        """Store; returns the session it replaced (the caller closes it)."""
        key = (session.sid, session.stream_id)
        old = self._by_key.get(key)
        self._by_key[key] = session
        return old

    def pop(self, sid: str, stream_id: str) -> Session | None:
        return self._by_key.pop((sid, stream_id), None)

    def pop_all(self, sid: str) -> list[Session]:
        keys = [k for k in self._by_key if k[0] == sid]
        return [self._by_key.pop(k) for k in keys]

    def count(self, sid: str) -> int:
        return sum(1 for k in self._by_key if k[0] == sid)

    def __len__(self) -> int:
        return len(self._by_key)

    def all(self) -> list[Session]:
        return list(self._by_key.values())
