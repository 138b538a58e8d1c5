"""This replica's membership of the cluster: its leases (kept renewed), the streams' specs in
Redis (so another replica can start them), and its load on the board.

Redis keys (prefix `livedub`): `lease:<id>` (owner `<replica>|<fence>`, TTL), `fence:<id>` (INCR),
hash `specs` (id -> the StreamRequest JSON), hash `owners` (id -> `<replica>|<fence>|<how>`, the last
owner, kept when it leaves without a clean stop so that the next one can name it), set `stopped`
(ids an operator stopped: reconcile leaves them), `standby:<id>` (the one successor standing by
for a hand-over, TTL), `replica:<id>` (load, TTL).

Hand-over (SIGTERM): the leaving owner marks its streams `handover` at once, then plays out what
it has buffered. Meanwhile a successor starts each one in standby: it reads and dubs the input,
its outputs gated shut, and takes the lease the moment the leaving owner releases it, with D of
input already buffered, so its output starts at once instead of D after it started reading.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import socket

from ..config import MediaConfig, StreamRequest
from ..events import EventLog
from ..metrics import MediaMetrics
from ..redaction import redact
from .keeper import LeaseKeeper
from .lease import Lease, LeaseClock, Leases, Renewal
from .replicas import HEARTBEAT_S, CpuMeter, LoadBoard, ReplicaLoad

log = logging.getLogger(__name__)

PREFIX = "livedub"
STANDBY_POLL_S = 0.2  # how soon a standby successor notices the lease it waits for was released
# The last owner's entry is only removed if it is still this owner's (a stale owner's clean-up
# must never remove its successor's spec).
FORGET_SPEC = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur and string.sub(cur, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


class ClusterUnavailable(Exception):
    """Redis does not answer: no stream can be claimed (started) now."""


class OwnedElsewhere(Exception):
    """The stream's lease is held by another replica."""

    def __init__(self, stream_id: str, holder: tuple[str, int] | None):
        super().__init__(f"stream {stream_id} runs on replica {holder[0] if holder else '?'}")
        self.stream_id, self.holder = stream_id, holder


def replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def advertised_url(cfg: MediaConfig) -> str:
    if cfg.advertise_url:
        return cfg.advertise_url.rstrip("/")
    host = cfg.host
    if not host or _unspecified(host):  # a wildcard bind is reached at the host's own address
        host = socket.gethostbyname(socket.gethostname())
    return f"http://{host}:{cfg.port}"


def current_request(worker) -> StreamRequest:
    """The worker's request as it runs now (a PATCH may have changed mix and gain)."""
    return worker.request.model_copy(update={"mix": worker.mode, "duck_gain_db": worker.duck_gain_db})


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return False


def parse_owner(value: str | None) -> tuple[str, int, str] | None:
    """`<replica>|<fence>|<how>` -> (replica, fence, how)."""
    if not value:
        return None
    parts = value.split("|")
    return (parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "") if len(parts) >= 2 else None


class ClusterNode:
    """Owns the Redis clients, the lease keeper's thread and three tasks (heartbeat, hand-overs,
    failover scan); `registry` calls `claim` / `released` around every stream it runs."""

    def __init__(self, cfg: MediaConfig, registry, metrics: MediaMetrics, events: EventLog):
        import redis.asyncio as aioredis

        self.cfg, self.registry, self.metrics, self.events = cfg, registry, metrics, events
        self.ttl_s = cfg.lease_ttl_s
        # Every Redis call gives up well inside a lease: a hung call must not outlive it.
        timeout = self.ttl_s / 3
        self.redis = aioredis.from_url(cfg.redis_url, decode_responses=True, socket_timeout=timeout,
                                                socket_connect_timeout=timeout)
        self.id = replica_id()
        self.url = advertised_url(cfg)
        self.leases = Leases(self.redis, self.id, self.ttl_s, PREFIX)
        self.board = LoadBoard(self.redis, PREFIX)
        self._forget_spec = self.redis.register_script(FORGET_SPEC)
        self.held: dict[str, Lease] = {}
        # Started here, waiting for the lease of the replica (id) that is handing them over.
        self.standby: dict[str, tuple[LeaseClock, str]] = {}
        self.draining = False
        self._cpu = CpuMeter()
        self._cpu_share = 0.0
        self._tasks: list[asyncio.Task] = []
        self._chores: set[asyncio.Task] = set()  # give-ups and records that the keeper's outcomes start
        # A renewal reads `held` from the keeper's thread: a copy made in one C call is consistent.
        self.keeper = LeaseKeeper(cfg.redis_url, self.id, self.ttl_s, PREFIX, held=lambda: list(self.held.values()),
                                  on_outcomes=self._renewed, on_error=self._redis_state)
        self._redis_error: str | None = None
        self.session = None  # aiohttp.ClientSession for forwarding, made at start

    key_specs = f"{PREFIX}:specs"
    key_owners = f"{PREFIX}:owners"
    key_stopped = f"{PREFIX}:stopped"

    # ------------------------------------------------------------ ownership (called by the registry)

    async def claim(self, request: StreamRequest):
        """Take the stream's lease and record its spec; returns the output gate (a callable that
        says whether this replica may still write). Raises OwnedElsewhere."""
        from redis.exceptions import RedisError

        stream_id = request.stream_id()
        try:
            previous = parse_owner(await self.redis.hget(self.key_owners, stream_id))
            lease, holder = await self.leases.acquire(stream_id, known_fence=previous[1] if previous else 0)
        except RedisError as exc:
            raise ClusterUnavailable(f"the cluster's Redis does not answer ({redact(str(exc))}): no stream "
                                     "can start now") from None
        if lease is None:
            if holder and holder[0] == self.id and stream_id in self.held:
                return self.held[stream_id].clock.valid
            if holder and previous and previous[2] == "handover" and previous[0] == holder[0] != self.id:
                if not await self._reserve_standby(stream_id):
                    raise OwnedElsewhere(stream_id, holder)  # another replica stands by for it
                clock = self.standby.setdefault(stream_id, (LeaseClock(self.ttl_s), holder[0]))[0]  # shut till then
                log.info("stream %s: replica %s is handing it over: started here in standby", stream_id, holder[0])
                return clock.valid
            raise OwnedElsewhere(stream_id, holder)
        await self._owned(stream_id, request, lease, previous)
        return lease.clock.valid

    async def _owned(self, stream_id: str, request: StreamRequest, lease: Lease,
                     previous: tuple[str, int, str] | None) -> None:
        self.held[stream_id] = lease
        await self._record(stream_id, request, lease)
        self._spawn(self.board.publish(self.load()))  # at once: the others place and fail over by it
        if previous and previous[0] != self.id:
            how = "handover" if previous[2] == "handover" else "lease_expired"
            self.metrics.takeovers.labels(how).inc()
            self.events.publish(stream_id, "taken_over", {"from": previous[0], "reason": how, "fence": lease.fence})
            log.info("stream %s: taken over from replica %s (%s), fence %d", stream_id, previous[0], how, lease.fence)

    async def _record(self, stream_id: str, request: StreamRequest, lease: Lease) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key_specs, stream_id, request.model_dump_json())
            pipe.hset(self.key_owners, stream_id, f"{self.id}|{lease.fence}|running")
            await pipe.execute()

    async def save_spec(self, stream_id: str, request: StreamRequest) -> None:
        """A running stream's request changed (mix, gain): a successor starts it as it is now."""
        lease = self.held.get(stream_id)
        if lease is not None:
            await self._record(stream_id, request, lease)

    async def released(self, stream_id: str, handover: bool = False) -> None:
        """The stream stopped here. Without `handover` it is gone from the cluster (its spec too,
        if this replica still owns it); with it (SIGTERM), another replica takes it up."""
        if self.standby.pop(stream_id, None) is not None:
            try:
                await self.redis.delete(self.standby_key(stream_id))
            except Exception:  # nosec B110  # Redis away: the reservation expires by itself
                pass
        lease = self.held.pop(stream_id, None)
        if lease is None:
            return
        lease.clock.revoke()
        try:
            if handover:
                await self.redis.hset(self.key_owners, stream_id, f"{self.id}|{lease.fence}|handover")
            else:
                await self._forget_spec(keys=[self.key_specs, self.key_owners],
                                        args=[stream_id, f"{self.id}|{lease.fence}|"])
            await self.leases.release(lease)
        except Exception as exc:  # Redis away: the lease lapses by itself
            log.warning("stream %s: could not release its lease: %s", stream_id, redact(str(exc)))

    def owns(self, stream_id: str) -> bool:
        lease = self.held.get(stream_id)
        return lease is not None and lease.clock.valid()

    # ------------------------------------------------------------ what other replicas run

    async def specs(self) -> dict[str, StreamRequest]:
        out = {}
        for stream_id, text in (await self.redis.hgetall(self.key_specs)).items():
            try:
                out[stream_id] = StreamRequest.model_validate_json(text)
            except ValueError:
                log.warning("cluster: spec of %s in Redis is not a valid request: ignored", stream_id)
        return out

    async def owners(self) -> dict[str, tuple[str, int, str]]:
        raw = await self.redis.hgetall(self.key_owners)
        return {k: v for k, v in ((k, parse_owner(v)) for k, v in raw.items()) if v}

    async def holder_url(self, stream_id: str) -> tuple[str, str] | None:
        """(replica id, API URL) of the stream's current owner, if any replica holds it."""
        holder = (await self.leases.holders([stream_id])).get(stream_id)
        if holder is None:
            return None
        load = (await self.board.loads()).get(holder[0])
        return (holder[0], load.url) if load else None

    async def operator_stopped(self, stream_id: str) -> None:
        await self.redis.sadd(self.key_stopped, stream_id)

    async def published_again(self, stream_id: str) -> None:
        await self.redis.srem(self.key_stopped, stream_id)

    async def stopped_ids(self) -> set[str]:
        return set(await self.redis.smembers(self.key_stopped))

    async def forget_stopped(self, keep: set[str]) -> None:
        gone = await self.stopped_ids() - keep
        if gone:
            await self.redis.srem(self.key_stopped, *gone)

    # ------------------------------------------------------------ tasks

    def load(self) -> ReplicaLoad:
        workers = [w for w in self.registry.all() if not w.done]
        streams = {w.id for w in workers} | set(self.held) | set(self.standby)  # a claim comes before its worker
        return ReplicaLoad(id=self.id, url=self.url, streams=sorted(streams),
                           max_streams=self.cfg.max_streams, cpu_share=self._cpu_share,
                           input_lag_s=round(max((w.input_lag_s for w in workers), default=0.0), 3),
                           draining=self.draining)

    def _renewed(self, changed) -> None:
        """Outcomes of the keeper's renewals (event loop). A lost lease (another replica holds it)
        means this replica was cut off or paused: the stream is given up at once, its outputs
        already shut by their gate. A lease found gone (Redis restarted empty) was taken again."""
        for lease, outcome, holder in changed:
            if self.held.get(lease.stream_id) is not lease:
                continue
            if outcome == Renewal.LOST:
                log.warning("stream %s: lease lost to replica %s: giving the stream up", lease.stream_id,
                            holder[0] if holder else "?")
                self.events.publish(lease.stream_id, "lease_lost", {"holder": holder[0] if holder else None})
                self.held.pop(lease.stream_id, None)
                self._spawn(self.registry.stop(lease.stream_id, drain=False))
            elif outcome == Renewal.REACQUIRED:
                self.events.publish(lease.stream_id, "lease_reacquired", {"fence": lease.fence})
                log.info("stream %s: lease was gone from Redis: taken again (fence %d)", lease.stream_id, lease.fence)
                worker = self.registry.get(lease.stream_id)
                if worker is not None:
                    self._spawn(self._record(lease.stream_id, current_request(worker), lease))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._chores.add(task)
        task.add_done_callback(self._chore_done)

    def _chore_done(self, task: asyncio.Task) -> None:
        self._chores.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cluster: %s", redact(str(task.exception())))

    def standby_key(self, stream_id: str) -> str:
        return f"{PREFIX}:standby:{stream_id}"

    async def _reserve_standby(self, stream_id: str) -> bool:
        """One successor per hand-over: the reservation lives while its holder renews it."""
        key, ttl_ms = self.standby_key(stream_id), int(self.ttl_s * 1000)
        if await self.redis.set(key, self.id, nx=True, px=ttl_ms):
            return True
        return await self.redis.get(key) == self.id

    async def _take_handovers(self) -> None:
        """Standby streams: take each lease as soon as its leaving owner releases it (or it lapses);
        a stream the leaving owner ended instead (its spec gone) stops here too."""
        while True:
            await asyncio.sleep(STANDBY_POLL_S)
            for stream_id, (clock, leaving) in list(self.standby.items()):
                try:
                    await self.redis.pexpire(self.standby_key(stream_id), int(self.ttl_s * 1000))
                    previous = parse_owner(await self.redis.hget(self.key_owners, stream_id))
                    if previous is None:
                        self.standby.pop(stream_id, None)
                        await self.registry.stop(stream_id, drain=False)
                        continue
                    lease, holder = await self.leases.acquire(stream_id, known_fence=previous[1], clock=clock)
                except Exception as exc:  # Redis away: try again next time
                    self._redis_down(exc)
                    continue
                if lease is None and holder is not None and holder[0] != leaving:
                    log.info("stream %s: replica %s took it over: standby here ends", stream_id, holder[0])
                    self.standby.pop(stream_id, None)
                    await self.registry.stop(stream_id, drain=False)
                    continue
                worker = self.registry.get(stream_id)
                if lease is None or self.standby.pop(stream_id, None) is None or worker is None:
                    if lease is not None:  # stopped meanwhile
                        await self.leases.release(lease)
                    continue
                await self.redis.delete(self.standby_key(stream_id))
                await self._owned(stream_id, current_request(worker), lease, previous)

    async def hand_over(self) -> None:
        """SIGTERM: no new streams here; every stream is marked for a successor to start in standby
        while this replica plays out what it has buffered."""
        self.draining = True
        try:
            await self.board.publish(self.load())
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream_id, lease in self.held.items():
                    pipe.hset(self.key_owners, stream_id, f"{self.id}|{lease.fence}|handover")
                await pipe.execute()
        except Exception as exc:  # Redis away: the leases lapse instead, and are taken over then
            log.warning("cluster: could not announce the hand-over: %s", redact(str(exc)))

    async def _heartbeat(self) -> None:
        while True:
            self._cpu_share = self._cpu.share()  # over one heartbeat period
            try:
                await self.board.publish(self.load())
                self._redis_back()
            except Exception as exc:
                self._redis_down(exc)
            await asyncio.sleep(HEARTBEAT_S)

    def _redis_state(self, exc: Exception | None) -> None:
        self._redis_back() if exc is None else self._redis_down(exc)

    def _redis_down(self, exc: Exception) -> None:
        error = redact(str(exc) or type(exc).__name__)
        if error != self._redis_error:
            log.warning("cluster: Redis unreachable (%s): streams stop writing when their lease runs out", error)
        self._redis_error = error

    def _redis_back(self) -> None:
        if self._redis_error:
            log.info("cluster: Redis answers again")
        self._redis_error = None

    async def start(self, failover) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.keeper.start()
        for name, coro in (("heartbeat", self._heartbeat()),
                           ("handovers", self._take_handovers()), ("failover", failover.run())):
            self._tasks.append(asyncio.create_task(coro, name=f"cluster-{name}"))
        log.info("cluster: replica %s at %s, Redis %s, lease TTL %.1f s", self.id, self.url,
                 redact(self.cfg.redis_url), self.ttl_s)

    def drain(self) -> None:
        """Shutting down: no new streams or takeovers here (the board says so at the next heartbeat)."""
        self.draining = True

    async def close(self) -> None:
        await self.keeper.stop()
        for task in self._tasks + list(self._chores):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._chores, return_exceptions=True)
        self._tasks.clear()
        try:
            await self.board.withdraw(self.id)
        except Exception:  # nosec B110  # Redis away at shutdown: the load key expires by itself
            pass
        if self.session is not None:
            await self.session.close()
        await self.redis.aclose()
