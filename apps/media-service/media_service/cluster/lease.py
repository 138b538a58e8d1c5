"""Stream leases in Redis: exactly one owner per stream, a fencing token per ownership, and the
local clock that says how long the owner may still write.

Why a local clock: Redis expires a key on its own clock, and a process that was paused (SIGSTOP,
a VM freeze, a long GC) cannot know how long it slept. So the owner never asks Redis whether it
still holds a lease before writing; it trusts a renewal only from the moment the renewal was
*sent*, on its own monotonic clock, for the TTL minus a margin (`LeaseClock`). Its outputs stop
when that runs out, before Redis can give the stream to another replica. The fencing token (an
INCR per acquisition, never reused, carried in the lease's value) makes every later write of
the lease conditional: a stale owner's renewal or release cannot touch its successor's lease.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

# KEYS[1] lease, KEYS[2] fence counter; ARGV[1] replica id, ARGV[2] ttl ms, ARGV[3] highest fence
# this caller has seen for the stream (a Redis that restarted empty starts INCR at 1 again: the
# counter is lifted above it so that tokens keep increasing).
_TAKE = """
local f = redis.call('INCR', KEYS[2])
local known = tonumber(ARGV[3])
if f <= known then f = known + 1; redis.call('SET', KEYS[2], f) end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. f, 'PX', ARGV[2])
return f
"""
ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
""" + _TAKE.replace("return f", "return {1, tostring(f)}")
# ARGV[3]: the fence held. Renewed {1}; the key was gone (expired, or Redis restarted empty) and
# nobody else holds it: taken again with a new fence {2, fence}; someone else holds it {0, value}.
RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] .. '|' .. ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ARGV[3]}
end
if cur then return {0, cur} end
""" + _TAKE.replace("return f", "return {2, tostring(f)}")
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def margin_for(ttl_s: float) -> float:
    """Time kept in hand before the lease could expire: Redis's clock may run ahead of ours
    and the last write must be over before anyone else can start (a fifth of the TTL, >= 0.2 s)."""
    return max(0.2, ttl_s / 5)


class LeaseClock:
    """Until when (this process's monotonic clock) the owner may write; read from any thread."""

    def __init__(self, ttl_s: float, margin_s: float | None = None):
        self.ttl_s = ttl_s
        self.margin_s = margin_for(ttl_s) if margin_s is None else margin_s
        self._valid_until = 0.0  # one float, replaced whole: no lock needed to read it

    def confirmed(self, sent_at: float) -> None:
        """A renewal (or acquisition) sent at `sent_at` succeeded."""
        self._valid_until = max(self._valid_until, sent_at + self.ttl_s - self.margin_s)

    def revoke(self) -> None:
        self._valid_until = 0.0

    def valid(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self._valid_until

    def remaining(self, now: float | None = None) -> float:
        return max(0.0, self._valid_until - (time.monotonic() if now is None else now))


@dataclass
class Lease:
    stream_id: str
    fence: int
    clock: LeaseClock = field(repr=False)


class Renewal(str, Enum):
    RENEWED = "renewed"
    REACQUIRED = "reacquired"  # the key had gone (Redis restarted empty, or it lapsed) and was free
    LOST = "lost"  # another replica holds it: this one must give the stream up


def parse_holder(value: str | None) -> tuple[str, int] | None:
    """`<replica>|<fence>` -> (replica, fence)."""
    if not value:
        return None
    replica, _, fence = value.rpartition("|")
    return replica, int(fence)


class Leases:
    """The lease operations of one replica (`replica_id`) on a redis.asyncio client."""

    def __init__(self, redis, replica_id: str, ttl_s: float, prefix: str = "livedub"):
        self.redis, self.replica_id, self.ttl_s, self.prefix = redis, replica_id, ttl_s, prefix
        self._acquire = redis.register_script(ACQUIRE)
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)

    def lease_key(self, stream_id: str) -> str:
        return f"{self.prefix}:lease:{stream_id}"

    def fence_key(self, stream_id: str) -> str:
        return f"{self.prefix}:fence:{stream_id}"

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    async def acquire(self, stream_id: str, known_fence: int = 0,
                      clock: LeaseClock | None = None) -> tuple[Lease | None, tuple[str, int] | None]:
        """(the lease, None) when it was free; (None, (holder, fence)) when someone holds it.
        `clock`: the one a waiting worker's gate already reads (hand-over)."""
        sent_at = time.monotonic()
        ok, value = await self._acquire(keys=[self.lease_key(stream_id), self.fence_key(stream_id)],
                                        args=[self.replica_id, self.ttl_ms, known_fence])
        if not int(ok):
            return None, parse_holder(_text(value))
        lease = Lease(stream_id, int(value), clock or LeaseClock(self.ttl_s))
        lease.clock.confirmed(sent_at)
        return lease, None

    async def renew_all(self, leases: list[Lease]) -> list[tuple[Renewal, tuple[str, int] | None]]:
        """Renew every lease in one round trip; each clock moves on only for a renewal that was
        confirmed, from the time the batch was sent. Raises redis errors (nothing confirmed)."""
        if not leases:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for lease in leases:
            await self._renew(**self._renew_call(lease), client=pipe)
        sent_at = time.monotonic()
        return apply_renewals(leases, await pipe.execute(), sent_at)

    def _renew_call(self, lease: Lease) -> dict:
        return {"keys": [self.lease_key(lease.stream_id), self.fence_key(lease.stream_id)],
                "args": [self.replica_id, self.ttl_ms, lease.fence]}

    async def release(self, lease: Lease) -> bool:
        """Give the lease up (only if it is still this one: same replica and fence)."""
        lease.clock.revoke()
        return bool(await self._release(keys=[self.lease_key(lease.stream_id)],
                                        args=[f"{self.replica_id}|{lease.fence}"]))

    async def holders(self, stream_ids: list[str]) -> dict[str, tuple[str, int] | None]:
        if not stream_ids:
            return {}
        values = await self.redis.mget([self.lease_key(s) for s in stream_ids])
        return {s: parse_holder(_text(v)) for s, v in zip(stream_ids, values)}


class BlockingRenewer(Leases):
    """`renew_all` on a blocking redis client, for a thread of its own (node.LeaseKeeper): a busy
    event loop must not be what lets a lease lapse."""

    def renew_all(self, leases: list[Lease]) -> list[tuple[Renewal, tuple[str, int] | None]]:  # type: ignore[override]
        if not leases:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for lease in leases:
            self._renew(**self._renew_call(lease), client=pipe)
        sent_at = time.monotonic()
        return apply_renewals(leases, pipe.execute(), sent_at)


def apply_renewals(leases: list[Lease], replies: list, sent_at: float) -> list[tuple[Renewal, tuple[str, int] | None]]:
    out = []
    for lease, (code, value) in zip(leases, replies):
        code = int(code)
        if code == 0:
            lease.clock.revoke()
            out.append((Renewal.LOST, parse_holder(_text(value))))
            continue
        if code == 2:
            lease.fence = int(value)
        lease.clock.confirmed(sent_at)
        out.append((Renewal.RENEWED if code == 1 else Renewal.REACQUIRED, None))
    return out


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
