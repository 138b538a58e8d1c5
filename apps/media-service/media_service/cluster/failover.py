"""Failover: streams whose spec is in Redis but whose lease nobody holds are started again.

That is the state a stream is left in when its owner dies (its lease expires after at most the
TTL) and when an owner gave it up; a stream being handed over (SIGTERM) is treated the same, and
started here in standby until its leaving owner releases it (node.py). Every replica scans every SCAN_S; the orphans are spread by `placement.assign`
(the old owner excluded) and each replica starts its share. A stream that no replica takes
within ORPHAN_GRACE_S (its assignee is full, or died meanwhile) is taken by any replica that can.
The lease makes a start exactly-once: two replicas racing for one stream both try to acquire it,
one gets it, the other's start fails with OwnedElsewhere and nothing runs twice.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..redaction import redact
from .node import ClusterNode, OwnedElsewhere
from .placement import assign

log = logging.getLogger(__name__)

SCAN_S = 0.5
ORPHAN_GRACE_S = 2.0


class Failover:
    def __init__(self, node: ClusterNode):
        self.node = node
        self._orphan_since: dict[str, float] = {}
        self._last_error: str | None = None

    async def scan_once(self) -> list[str]:
        """One pass; returns the ids this replica started."""
        node = self.node
        if node.draining:
            return []
        specs = await node.specs()
        candidates = [s for s in specs if s not in node.held and s not in node.standby]
        holders = await node.leases.holders(candidates)
        owners = await node.owners()
        # Free, or held by a replica that is handing it over (started here in standby, see node.py).
        orphans = [s for s in candidates if holders[s] is None
                   or (s in owners and owners[s][2] == "handover" and owners[s][0] == holders[s][0])]
        now = time.monotonic()
        self._orphan_since = {s: self._orphan_since.get(s, now) for s in orphans}
        if not orphans:
            return []
        loads = [load for load in (await node.board.loads()).values() if not load.draining]
        if all(load.id != node.id for load in loads):
            loads.append(node.load())  # this replica's heartbeat has not landed yet
        previous = {s: owners[s][0] for s in orphans if s in owners}
        plan = assign(orphans, loads, previous)
        started = []
        for stream_id in sorted(orphans):
            mine = plan.get(stream_id) == node.id
            # Overdue: no replica took it up. A stream still held by its leaving owner is not (one
            # successor waits for it in standby); once released, any replica may take it.
            overdue = (now - self._orphan_since[stream_id] > ORPHAN_GRACE_S and holders[stream_id] is None
                       and previous.get(stream_id) != node.id)
            if not (mine or overdue):
                continue
            try:
                worker, created = await node.registry.start(specs[stream_id])
            except OwnedElsewhere:
                continue  # another replica was quicker
            except Exception as exc:  # full, refused, Redis away: the next pass (or another replica) tries
                log.warning("failover: cannot start %s here: %s", stream_id, redact(str(exc)))
                continue
            if created:
                started.append(worker.id)
                self._orphan_since.pop(stream_id, None)
        return started

    async def run(self) -> None:
        while True:
            try:
                await self.scan_once()
                self._last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the keeper logs it; try again next pass
                error = redact(str(exc) or type(exc).__name__)
                if error != self._last_error:
                    log.warning("failover scan: %s", error)
                self._last_error = error
            await asyncio.sleep(SCAN_S)
