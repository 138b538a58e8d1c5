"""The sts-service replicas a media-service process may use, and which one a stream connects to.

`STS_URL` names one replica, several (comma-separated), or a DNS name whose every address is a
replica (a headless Kubernetes Service, a scaled compose service). A stream that (re)connects asks
`choose()`: the replicas' `GET /load` answers (polled at most every REFRESH_S, shared by every
stream of the process) rank them, least loaded first (`rank_key`). A replica that failed is left
out for a while, one that drains (SIGTERM) until it says it no longer does. One replica: no
polling, the client connects as it always did.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..redaction import redact_url

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # /load answers are reused this long (every stream choosing at once shares one poll)
RESOLVE_S = 10.0  # a DNS name is resolved again after this long (replicas come and go)
POLL_TIMEOUT_S = 1.0  # a replica whose /load does not answer within this is down for this choice
FAILED_COOLDOWN_S = 5.0  # a replica whose connection failed is left out this long (unless it answers /load)
WAIT_STEP_MS = 250.0  # estimated waits within one step count as equal; streams per ASR worker decide


@dataclass
class Replica:
    """One sts-service replica as last seen: its /load answer and what this process saw happen."""

    url: str
    ready: bool = True  # unknown load counts as ready: an older sts-service has no /load
    draining: bool = False
    sessions: int = 0
    asr_workers: int = 1
    estimated_wait_ms: float = 0.0
    down_until: float = 0.0  # time.monotonic() before which the replica is left out
    tiebreak: float = field(default_factory=random.random)

    def usable(self, now: float) -> bool:
        return self.ready and not self.draining and now >= self.down_until


def rank_key(r: Replica) -> tuple:
    """Least loaded first: a replica whose fragments already wait a step longer loses; within a
    step, fewer streams per ASR worker, then the shorter wait, then a random tiebreak (two
    media-services starting together do not both pile onto the first replica listed)."""
    return (int(r.estimated_wait_ms // WAIT_STEP_MS), r.sessions / max(1, r.asr_workers),
            r.estimated_wait_ms, r.tiebreak)


def pick(replicas: list[Replica], now: float, exclude: frozenset[str] = frozenset()) -> Replica | None:
    """The replica a new stream should use, or None when no replica is usable."""
    usable = [r for r in replicas if r.url not in exclude and r.usable(now)]
    return min(usable, key=rank_key) if usable else None


def split_urls(spec: str) -> list[str]:
    return [u.strip().rstrip("/") for u in spec.split(",") if u.strip()]


def expandable(url: str) -> bool:
    """A name worth resolving into one replica per address: plain http, a DNS name (not an
    address literal, not localhost, whose two families would be the same server twice)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host or host == "localhost":
        return False  # https: the certificate names the host, not each address
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def with_host(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def resolve_all(url: str) -> list[str]:
    """One URL per A/AAAA address of the URL's host (sorted, duplicates dropped)."""
    parts = urlsplit(url)
    infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 80,
                                                         type=socket.SOCK_STREAM)
    return sorted({with_host(url, info[4][0]) for info in infos})


class StsPool:
    """Replica choice for every stream of one media-service process (one instance, shared)."""

    def __init__(self, spec: str, *, clock=time.monotonic):
        self.spec = spec
        self.urls = split_urls(spec)
        if not self.urls:
            raise ValueError("STS_URL names no sts-service")
        self._clock = clock
        self._replicas: dict[str, Replica] = {}
        self._resolved_at = -RESOLVE_S
        self._polled_at = -REFRESH_S
        self._lock = asyncio.Lock()
        self._resolve_error = ""

    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    @property
    def single(self) -> bool:
        return len(self.urls) == 1 and not expandable(self.urls[0])

    async def choose(self, exclude: frozenset[str] = frozenset()) -> str:
        """The URL a stream should connect to now. Never fails: with nothing usable it returns
        the replica left out longest ago, and the connect attempt reports the real error."""
        if self.single:
            return self.urls[0]
        async with self._lock:
            now = self._clock()
            if now - self._resolved_at >= RESOLVE_S:
                await self._resolve()
            if now - self._polled_at >= REFRESH_S:
                await self._poll()
            replicas = self.replicas()
            best = pick(replicas, self._clock(), exclude)
            if best is None:
                others = [r for r in replicas if r.url not in exclude] or replicas
                if not others:
                    return self.urls[0]  # nothing resolved: connecting reports why
                best = min(others, key=lambda r: (r.draining, r.down_until))
            best.sessions += 1  # counted now: the next stream choosing before the next poll sees it
            return best.url

    def mark_failed(self, url: str) -> None:
        r = self._replicas.get(url)
        if r is not None:
            r.down_until = self._clock() + FAILED_COOLDOWN_S

    def mark_draining(self, url: str) -> None:
        r = self._replicas.get(url)
        if r is not None:
            r.draining = True

    def others_usable(self, url: str) -> bool:
        now = self._clock()
        return any(r.usable(now) for r in self._replicas.values() if r.url != url)

    async def _resolve(self) -> None:
        urls: list[str] = []
        for url in self.urls:
            if not expandable(url):
                urls.append(url)
                continue
            try:
                urls.extend(await resolve_all(url))
            except OSError as exc:
                if self._resolve_error != str(exc):
                    log.warning("sts pool: cannot resolve %s: %s", redact_url(url), exc)
                self._resolve_error = str(exc)
                urls.extend(u for u in self._replicas if u not in urls)  # keep what we had
        self._resolved_at = self._clock()
        if set(urls) != set(self._replicas):
            log.info("sts pool: replicas %s", ", ".join(map(redact_url, urls)) or "none")
        self._replicas = {u: self._replicas.get(u) or Replica(u) for u in urls}

    async def _poll(self) -> None:
        timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(*(self._poll_one(http, r) for r in self.replicas()))
        self._polled_at = self._clock()

    async def _poll_one(self, http: aiohttp.ClientSession, r: Replica) -> None:
        try:
            async with http.get(r.url + "/load") as resp:
                if resp.status == 404:  # an sts-service without /load: load unknown, connect to see
                    r.ready, r.draining = True, False
                    return
                body = await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            r.down_until = max(r.down_until, self._clock() + FAILED_COOLDOWN_S)
            log.debug("sts pool: %s/load: %s", redact_url(r.url), exc or type(exc).__name__)
            return
        r.ready, r.draining = bool(body.get("ready")), bool(body.get("draining"))
        r.sessions = int(body.get("sessions", 0))
        r.asr_workers = int(body.get("asr_workers", 1)) or 1
        r.estimated_wait_ms = float(body.get("estimated_wait_ms", 0.0))
        r.down_until = 0.0  # it answers: whatever failed before, it is worth a connect again
