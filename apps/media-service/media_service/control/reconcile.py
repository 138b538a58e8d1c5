"""Streams come back after a restart: media-service asks MediaMTX which inputs are being published.

Why: streams live in memory, and MediaMTX's `runOnReady` hook fires once per publish. After a
media-service restart (or a hook lost on the way) every live input would stay undubbed until its
publisher reconnected. With `--mediamtx-api` set, the `Reconciler` lists MediaMTX's ready paths at
start and every `RECONCILE_INTERVAL_S`, and starts a stream for each `<app>/<name>/in` that has
none, exactly as the hook would have (the publisher's `?lang=` is not in the list: service
defaults apply). A stream an operator stopped over the API is not brought back while its path
stays published. With `--rtmp-user` the list is read as that MediaMTX user (HTTP basic auth: the
deployed config grants it the `api` action; nothing is granted by address).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
from pydantic import ValidationError

from ..config import StreamRequest
from ..events import EventLog
from ..redaction import redact, redact_url
from ..targets import TargetRefused
from .registry import LimitReached, StreamExists, StreamRegistry

log = logging.getLogger(__name__)

RECONCILE_INTERVAL_S = 10.0
ITEMS_PER_PAGE = 200
MAX_PAGES = 50  # 10 000 paths: more is a misconfiguration, not a reason to loop forever


async def list_ready_paths(session: aiohttp.ClientSession, api_url: str) -> list[str]:
    """Names of MediaMTX paths that have a publisher (`ready`), over `GET /v3/paths/list`."""
    names: list[str] = []
    page, pages = 0, 1
    while page < min(pages, MAX_PAGES):
        url = f"{api_url.rstrip('/')}/v3/paths/list?page={page}&itemsPerPage={ITEMS_PER_PAGE}"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            if resp.status != 200:
                raise RuntimeError(f"MediaMTX API answered {resp.status} to /v3/paths/list")
            body = await resp.json(content_type=None)
        names += [str(item["name"]) for item in body.get("items") or [] if item.get("ready") and "name" in item]
        pages = int(body.get("pageCount") or 1)
        page += 1
    return names


class Reconciler:
    """Owns one polling task (started and cancelled with the app)."""

    def __init__(self, api_url: str, registry: StreamRegistry, events: EventLog,
                 request_for_path: Callable[[str], StreamRequest | None], interval_s: float = RECONCILE_INTERVAL_S,
                 credentials: tuple[str, str] | None = None):
        self.api_url, self.registry, self.events = api_url, registry, events
        self.auth = aiohttp.BasicAuth(*credentials) if credentials else None
        self.request_for_path = request_for_path
        self.interval_s = interval_s
        self._stopped_by_operator: set[str] = set()  # ids not to restart while their path is published
        self._task: asyncio.Task | None = None
        self._last_error: str | None = None
        # Cluster mode (--redis-url): streams any replica runs or will take over are left alone,
        # operator stops are shared, and `place` starts a stream on the emptiest replica.
        self.cluster = None
        self.place = None

    def operator_stopped(self, stream_id: str) -> None:
        self._stopped_by_operator.add(stream_id)

    def published_again(self, stream_id: str) -> None:
        self._stopped_by_operator.discard(stream_id)

    async def run_once(self, session: aiohttp.ClientSession) -> list[str]:
        """One pass: start what MediaMTX publishes and we do not run; return the ids started."""
        ready = await list_ready_paths(session, self.api_url)
        started: list[str] = []
        wanted: set[str] = set()
        stopped, known = set(self._stopped_by_operator), set()
        if self.cluster is not None:
            stopped |= await self.cluster.stopped_ids()
            known = set(await self.cluster.specs())
        for path in ready:
            try:
                req = self.request_for_path(path)
            except ValidationError:
                log.warning("reconcile: MediaMTX path %r does not make a valid stream", path)
                continue
            if req is None:  # not an input path (our own outputs, other apps)
                continue
            stream_id = req.stream_id()
            wanted.add(stream_id)
            existing = self.registry.get(stream_id)
            if stream_id in stopped or stream_id in known or (existing is not None and not existing.done):
                continue
            if self.place is not None:
                status, _ = await self.place(req)
                if status == 201:
                    started.append(stream_id)
                    self.events.publish(stream_id, "reconciled", {"path": path})
                continue
            try:
                worker, created = await self.registry.start(req)
            except (StreamExists, LimitReached, TargetRefused) as exc:
                log.warning("reconcile: cannot start %s: %s", stream_id, exc)
                continue
            if created:
                started.append(worker.id)
                self.events.publish(worker.id, "reconciled", {"path": path})
                log.info("reconcile: %s is published on MediaMTX and had no stream: started", path)
        self._stopped_by_operator &= wanted  # a path that went away may start normally next time
        if self.cluster is not None:
            await self.cluster.forget_stopped(wanted)
        return started

    async def _run(self) -> None:
        async with aiohttp.ClientSession(auth=self.auth) as session:
            while True:
                try:
                    await self.run_once(session)
                    if self._last_error:
                        log.info("reconcile: MediaMTX API %s answers again", redact_url(self.api_url))
                    self._last_error = None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the API may be down for a while: log once, keep polling
                    error = redact(str(exc) or type(exc).__name__)
                    if error != self._last_error:
                        log.warning("reconcile: MediaMTX API %s: %s", redact_url(self.api_url), error)
                    self._last_error = error
                await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mediamtx-reconcile")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
