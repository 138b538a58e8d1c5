"""Any replica answers: a new stream is started on the replica with the most headroom, and a
request about a stream is answered by the replica that runs it.

- `Placer.place`: POST /v1/streams, publish hooks and reconcile come here. A stream some replica
  already holds goes to that replica (it answers 200 or 409 as for a local stream); a new one to
  `placement.choose` (this replica when it is the best, or when no other answers).
- `cluster_middleware`: GET /v1/streams lists every replica's streams (each with its `replica`);
  a request about `/v1/streams/{id}...` that this replica does not run is forwarded to the owner
  (snapshot, PATCH, DELETE, and every POST: bypass, signed links) or redirected there (307:
  previews, feeds, HLS files).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from ..config import StreamRequest
from ..redaction import redact
from .forward import call, forwarded, json_of, relay
from .node import ClusterNode
from .placement import choose

log = logging.getLogger(__name__)

PENDING_S = 10.0  # a stream placed on a replica counts against it until its load lists it, or this long
StartHere = Callable[[StreamRequest], Awaitable[tuple[int, dict]]]


class Placer:
    def __init__(self, node: ClusterNode):
        self.node = node
        self._placed: dict[str, tuple[str, float]] = {}  # stream id -> (replica id, when)

    def _pending(self, loads) -> dict[str, int]:
        now = time.monotonic()
        self._placed = {s: (r, t) for s, (r, t) in self._placed.items() if now - t < PENDING_S}
        pending: dict[str, int] = {}
        for stream_id, (replica, _) in self._placed.items():
            load = loads.get(replica)
            if load is not None and stream_id not in load.streams:
                pending[replica] = pending.get(replica, 0) + 1
        return pending

    async def place(self, request: StreamRequest, start_here: StartHere) -> tuple[int, dict]:
        """(status, body) of starting `request` on the replica it belongs on."""
        node, stream_id = self.node, request.stream_id()
        holder = await node.holder_url(stream_id)
        loads = await node.board.loads()
        loads[node.id] = node.load()  # this replica's own load is current
        tried: set[str] = set()
        while True:
            if holder is not None:
                target_id, url = holder
            else:
                best = choose(loads.values(), self._pending(loads), exclude=tried)
                if best is None:
                    return await start_here(request)  # every replica full: this one answers why
                target_id, url = best.id, best.url
            # Reserved before it starts: placements running meanwhile (hooks come in bursts) count it.
            self._placed[stream_id] = (target_id, time.monotonic())
            if target_id == node.id:
                status, body = await start_here(request)
                if status != 201:
                    self._placed.pop(stream_id, None)
                return status, {**body, "replica": node.id} if status < 300 else body
            try:
                status, data, _ = await call(node.session, "POST", f"{url}/v1/streams",
                                             authorization=f"Bearer {node.cfg.api_token}",
                                             body=request.model_dump_json(exclude_none=True).encode(),
                                             content_type="application/json")
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.warning("cluster: replica %s at %s does not answer (%s): placing %s elsewhere", target_id, url,
                            redact(str(exc) or type(exc).__name__), stream_id)
                self._placed.pop(stream_id, None)
                tried.add(target_id)
                holder = None
                continue
            if status != 201:
                self._placed.pop(stream_id, None)
            body = json_of(data)
            body.setdefault("replica", target_id)
            return status, body


def _stream_id(request: web.Request) -> str | None:
    parts = request.path.strip("/").split("/")
    return parts[2] if len(parts) >= 3 and parts[:2] == ["v1", "streams"] else None


JSON_ACTIONS = {("GET", 3), ("PATCH", 3), ("DELETE", 3)}  # snapshot, patch, delete; and every POST


def cluster_middleware(node: ClusterNode, registry):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if forwarded(request) or not request.path.startswith("/v1/streams"):
            return await handler(request)
        stream_id = _stream_id(request)
        if stream_id is None:
            if request.method == "GET":
                return await _list_cluster(request, handler, node)
            return await handler(request)
        if registry.get(stream_id) is not None:
            return await handler(request)
        try:
            owner = await node.holder_url(stream_id)
        except Exception as exc:  # Redis away: answer with what this replica knows
            log.warning("cluster: cannot look up the owner of %s: %s", stream_id, redact(str(exc)))
            owner = None
        if owner is None or owner[0] == node.id:
            return await handler(request)  # not found (404) as on a single replica
        depth = len(request.path.strip("/").split("/"))
        if request.method == "POST" or (request.method, depth) in JSON_ACTIONS:
            try:
                return await relay(node.session, request, owner[1])
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                return web.json_response({"error": {"code": "unavailable", "message":
                                                    f"stream {stream_id} runs on replica {owner[0]}, which does not "
                                                    f"answer: {redact(str(exc) or type(exc).__name__)}"}},
                                         status=503, headers={"Retry-After": "2"})
        raise web.HTTPTemporaryRedirect(owner[1] + request.path_qs)

    return middleware


async def _list_cluster(request: web.Request, handler, node: ClusterNode) -> web.StreamResponse:
    """This replica's streams and every other live replica's, each with its `replica`."""
    response = await handler(request)
    if response.status != 200 or not isinstance(response, web.Response):
        return response
    streams = [{**s, "replica": node.id} for s in json.loads(response.text)["streams"]]
    try:
        loads = await node.board.loads()
    except Exception as exc:
        log.warning("cluster: cannot list the other replicas: %s", redact(str(exc)))
        loads = {}
    others = [load for load in loads.values() if load.id != node.id]

    async def fetch(load):
        try:
            status, data, _ = await call(node.session, "GET", load.url + request.path_qs,
                                         authorization=request.headers.get("Authorization"))
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return []
        return [{**s, "replica": load.id} for s in json_of(data).get("streams", [])] if status == 200 else []

    for part in await asyncio.gather(*(fetch(load) for load in others)):
        streams += part
    return web.json_response({"streams": streams})
