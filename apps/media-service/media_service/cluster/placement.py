"""Which replica a stream starts on: the one with the most headroom.

Headroom is counted in streams: the slots `--max-streams` leaves, scaled down by the replica's
streams' input lag (a replica whose streams read behind their live input is past what its host
carries: none left at LAG_FULL_S), and none at all once its CPU share (of one core, smoothed: the
media threads of one process share one GIL, so about one core is all a replica can use) reaches
CPU_BUDGET. Equal headroom: fewer streams, then less CPU. Loads are published every HEARTBEAT_S,
so streams placed meanwhile are counted by the placer itself (`pending`) until the replica
reports them.
"""

from __future__ import annotations

from collections.abc import Iterable

from .replicas import ReplicaLoad

CPU_BUDGET = 0.9  # of one core
LAG_FULL_S = 2.0


def headroom(load: ReplicaLoad, extra: int = 0) -> float:
    """Streams the replica can still take (-inf: none)."""
    room = float(load.max_streams - len(load.streams) - extra)
    room *= 1 - min(load.input_lag_s, LAG_FULL_S) / LAG_FULL_S
    return room if room > 0 and not load.draining and load.cpu_share < CPU_BUDGET else float("-inf")


def choose(loads: Iterable[ReplicaLoad], pending: dict[str, int] | None = None,
           exclude: Iterable[str] = ()) -> ReplicaLoad | None:
    """The replica with the most headroom (ties: fewer streams, then id), or None when all are full."""
    pending, excluded = pending or {}, set(exclude)
    best, best_key = None, None
    for load in loads:
        if load.id in excluded:
            continue
        extra = pending.get(load.id, 0)
        room = headroom(load, extra)
        if room == float("-inf"):
            continue
        key = (room, -(len(load.streams) + extra), -load.cpu_share, load.id)
        if best_key is None or key > best_key:
            best, best_key = load, key
    return best


def assign(orphans: list[str], loads: list[ReplicaLoad], exclude_of: dict[str, str]) -> dict[str, str]:
    """Spread orphaned streams over the replicas, one at a time to the one with the most headroom
    (each assignment counts against its replica for the next): {stream id: replica id}. Every
    replica computes the same assignment from the same board and takes its own share."""
    pending: dict[str, int] = {}
    out = {}
    for stream_id in sorted(orphans):
        target = choose(loads, pending, exclude=[exclude_of[stream_id]] if stream_id in exclude_of else [])
        if target is None:
            continue
        out[stream_id] = target.id
        pending[target.id] = pending.get(target.id, 0) + 1
    return out
