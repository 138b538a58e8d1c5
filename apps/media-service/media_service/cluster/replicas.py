"""The replicas' load board: each replica publishes what it carries under a key with a TTL, so a
replica that dies drops off the board by itself (stale after LOAD_TTL_S).

A load names the replica's API URL (where streams are forwarded), its streams, `--max-streams`,
its CPU share (of one core, smoothed), the worst input lag of its streams,
and whether it is draining (SIGTERM: no new streams)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

HEARTBEAT_S = 1.5
LOAD_TTL_S = 5.0


@dataclass
class ReplicaLoad:
    id: str
    url: str
    streams: list[str] = field(default_factory=list)
    max_streams: int = 16
    cpu_share: float = 0.0  # of one core, smoothed (a replica's media threads share one GIL)
    input_lag_s: float = 0.0
    draining: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ReplicaLoad:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class CpuMeter:
    """This process's CPU time over wall time, as a share of one core, averaged over a few
    readings (a stream starting costs a burst that says little about what it will cost)."""

    SMOOTHING = 0.5  # weight of the newest reading

    def __init__(self):
        self._cpu, self._wall = time.process_time(), time.monotonic()
        self.value = 0.0

    def share(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        used = max(0.0, (cpu - self._cpu) / max(1e-3, wall - self._wall))
        self._cpu, self._wall = cpu, wall
        self.value = round(self.SMOOTHING * used + (1 - self.SMOOTHING) * self.value, 3)
        return self.value


class LoadBoard:
    def __init__(self, redis, prefix: str = "livedub"):
        self.redis, self.prefix = redis, prefix

    def key(self, replica_id: str) -> str:
        return f"{self.prefix}:replica:{replica_id}"

    async def publish(self, load: ReplicaLoad) -> None:
        await self.redis.set(self.key(load.id), load.to_json(), px=int(LOAD_TTL_S * 1000))

    async def withdraw(self, replica_id: str) -> None:
        await self.redis.delete(self.key(replica_id))

    async def loads(self) -> dict[str, ReplicaLoad]:
        """Every replica seen within LOAD_TTL_S, by id."""
        keys = [k async for k in self.redis.scan_iter(match=self.key("*"), count=200)]
        if not keys:
            return {}
        out = {}
        for value in await self.redis.mget(keys):
            if value:
                load = ReplicaLoad.from_json(value)
                out[load.id] = load
        return out
