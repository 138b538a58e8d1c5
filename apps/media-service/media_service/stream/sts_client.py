"""Socket.IO client of one stream to the sts-service, with an explicit connection state machine.

States: disconnected -> connecting -> connected -> (drop) -> reconnecting -> connecting -> ...
Each (re)connect goes to the replica the pool chooses (`sts_pool.py`: least loaded, failed and
draining ones left out) and sends `stream:init`. A fragment is sent only while connected and
while the server's in-flight limit allows; `process()` answers by the fragment's deadline or raises
`Fallback` with the reason, so the caller always knows what to play.

A replica that drains (`server:draining`, protocol 1.4) is left without a gap: the stream opens a
session on another replica, sends its next fragments there, and ends the old session once the
fragments sent to it are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import socketio
from livedub_protocol import (
    FRAGMENT_DATA,
    FRAGMENT_PROCESSED,
    NAMESPACE,
    SERVER_DRAINING,
    STREAM_BACKPRESSURE,
    STREAM_END,
    STREAM_INIT,
    ErrorCode,
    FragmentAck,
    FragmentData,
    FragmentProcessed,
    ProtocolError,
    StreamBackpressure,
    StreamEnd,
    StreamEndAck,
    StreamInit,
    StreamInitAck,
    dump,
    parse,
    parse_ack,
)

from ..redaction import redact, redact_url
from ..states import FallbackReason, StsState
from .sts_pool import StsPool

log = logging.getLogger(__name__)

# One connection attempt (TCP, websocket handshake, Engine.IO open, namespace) ends after this.
# Without a bound, an sts-service whose port accepts but never answers (a black-holed network, a
# wedged process) held the attempt for aiohttp's 300 s default, and the stream stayed
# `connecting` long after the network was back.
CONNECT_TIMEOUT_S = 10.0
# A session left on a draining replica is ended once its fragments are answered, at most this late
# (a fragment's own deadline is shorter: the stream has given up on it by then).
RETIRE_MAX_S = 30.0


class Fallback(Exception):
    """The dub for a fragment will not come: play the original. `reason` is a metric label."""

    def __init__(self, reason: FallbackReason, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = FallbackReason(reason)
        self.detail = detail


class _Link:
    """One Socket.IO connection to one replica, carrying this stream's session."""

    def __init__(self, url: str):
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        self.lost = asyncio.Event()  # the connection is gone
        self.draining = asyncio.Event()  # the replica asked its clients to move
        self.refusal = ""  # the server's connect refusal, if any
        self.slow_down = False
        self.max_inflight = 1
        self.capabilities: dict = {}
        self.sent: set[str] = set()  # fragments sent on this link and not answered yet
        self.answered = asyncio.Event()  # set while `sent` is empty
        self.answered.set()

    def add(self, fragment_id: str) -> None:
        self.sent.add(fragment_id)
        self.answered.clear()

    def discard(self, fragment_id: str) -> None:
        self.sent.discard(fragment_id)
        if not self.sent:
            self.answered.set()


class StsClient:
    def __init__(self, pool: StsPool | str, token: str, init: StreamInit, *,
                 on_state: Callable[[StsState], None] | None = None,
                 on_move: Callable[[str, str], None] | None = None,
                 retry_min_s: float = 0.5, retry_max_s: float = 5.0):
        self.pool = StsPool(pool) if isinstance(pool, str) else pool
        self.token = token
        self.init = init
        self.on_state = on_state or (lambda s: None)
        self.on_move = on_move or (lambda old, new: None)
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.state = StsState.DISCONNECTED
        self.last_error = ""
        self.connects = 0
        self.moves = 0  # sessions moved off a draining replica without a gap
        self._link: _Link | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._ready = asyncio.Event()  # connected and initialised
        self._supervisor: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()  # sessions being ended on draining replicas

    # ------------------------------------------------------------ state machine

    def _set_state(self, state: StsState) -> None:
        if state != self.state:
            log.info("sts[%s]: %s -> %s", self.init.stream_id, self.state, state)
            self.state = state
            self.on_state(state)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def url(self) -> str:
        """The replica the stream's fragments go to ("" while not connected)."""
        return self._link.url if self._link is not None and self._ready.is_set() else ""

    @property
    def max_inflight(self) -> int:
        return self._link.max_inflight if self._link is not None else 1

    @property
    def capabilities(self) -> dict:
        return self._link.capabilities if self._link is not None else {}

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name=f"sts:{self.init.stream_id}")

    async def _supervise(self) -> None:
        delay = self.retry_min_s
        first = True
        while True:
            self._set_state(StsState.CONNECTING if first else StsState.RECONNECTING)
            url = ""
            try:
                url = await self.pool.choose()
                self._link = await self._open(url)
                self.connects += 1
                self.last_error = ""
                self._ready.set()
                self._set_state(StsState.CONNECTED)
                delay = self.retry_min_s
                await self._serve()
                url = self._link.url  # the replica the session ended on (after any moves)
                self.last_error = "connection lost"
                self.pool.mark_failed(url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = redact(str(exc)) or type(exc).__name__
                log.warning("sts[%s]: %s", self.init.stream_id, self.last_error)
                if "unauthorized" in self.last_error.lower():
                    self._set_state(StsState.UNAUTHORIZED)
                    delay = self.retry_max_s
                elif url and _draining(exc):
                    self.pool.mark_draining(url)
                elif url:
                    self.pool.mark_failed(url)
            self._ready.clear()
            link, self._link = self._link, None
            if link is not None:
                self._fail_sent(link, FallbackReason.STS_DISCONNECTED, self.last_error)
                with contextlib.suppress(Exception):
                    await link.sio.disconnect()
            first = False
            if self.state != StsState.UNAUTHORIZED:
                self._set_state(StsState.RECONNECTING)
            if self.state != StsState.UNAUTHORIZED and url and self.pool.others_usable(url):
                await asyncio.sleep(self.retry_min_s)  # another replica is there: no back-off
                continue
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)

    async def _open(self, url: str) -> _Link:
        """Connect to `url` and initialise the stream's session there; raises on any failure."""
        link = _Link(url)
        sio = link.sio
        for event, handler in ((FRAGMENT_PROCESSED, self._on_processed), (STREAM_BACKPRESSURE, self._on_backpressure),
                               (SERVER_DRAINING, self._on_draining), ("disconnect", self._on_disconnect),
                               ("connect_error", self._on_connect_error)):
            sio.on(event, _bound(handler, link), namespace=NAMESPACE)
        try:
            try:
                await asyncio.wait_for(sio.connect(url, namespaces=[NAMESPACE], transports=["websocket"],
                                                   auth={"token": self.token}, wait_timeout=5),
                                       CONNECT_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise ConnectionError(f"no answer from {url} within {CONNECT_TIMEOUT_S:g} s") from None
            except socketio.exceptions.ConnectionError as exc:
                raise ConnectionError(link.refusal or f"{url}: {exc}") from None
            try:
                ack = parse_ack(StreamInitAck, await sio.call(STREAM_INIT, dump(self.init), namespace=NAMESPACE,
                                                              timeout=10))
            except ProtocolError as exc:
                raise ProtocolError(exc.code, f"stream:init refused: {exc.code.value}: {exc.message}") from None
        except BaseException:
            with contextlib.suppress(Exception):
                await sio.disconnect()
            raise
        link.max_inflight = ack.max_inflight
        link.capabilities = ack.capabilities.model_dump()
        return link

    async def _serve(self) -> None:
        """Returns when the current link is lost; a draining replica's session moves first."""
        while True:
            link = self._link
            lost = asyncio.ensure_future(link.lost.wait())
            drain = asyncio.ensure_future(link.draining.wait())
            try:
                await asyncio.wait({lost, drain}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                drain.cancel()
            if link.lost.is_set():
                return
            self.pool.mark_draining(link.url)
            try:
                url = await self.pool.choose(exclude=frozenset({link.url}))
                if url == link.url:
                    raise ConnectionError("no other replica")
                new = await self._open(url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sts[%s]: %s is draining and the stream cannot move (%s); it stays until the "
                            "replica closes", self.init.stream_id, link.url, exc)
                await link.lost.wait()
                return
            self._link = new
            self.connects += 1
            self.moves += 1
            log.info("sts[%s]: moved from %s (draining) to %s", self.init.stream_id, redact_url(link.url), redact_url(new.url))
            self.on_move(link.url, new.url)
            task = asyncio.create_task(self._retire(link), name=f"sts-retire:{self.init.stream_id}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, link: _Link) -> None:
        """End the session on a replica the stream has moved off, once its fragments are answered."""
        waits = {asyncio.ensure_future(link.answered.wait()), asyncio.ensure_future(link.lost.wait())}
        try:
            await asyncio.wait(waits, timeout=RETIRE_MAX_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        try:
            if not link.lost.is_set():
                with contextlib.suppress(Exception):
                    await link.sio.call(STREAM_END, dump(StreamEnd(stream_id=self.init.stream_id)),
                                        namespace=NAMESPACE, timeout=2)
        finally:
            self._fail_sent(link, FallbackReason.STS_DISCONNECTED, "replica drained")
            with contextlib.suppress(Exception):
                await link.sio.disconnect()

    async def _on_connect_error(self, link: _Link, data=None) -> None:
        message = data.get("message") if isinstance(data, dict) else data
        link.refusal = redact(f"connect refused: {message}")

    async def _on_disconnect(self, link: _Link, *args) -> None:
        if link is self._link:
            self._ready.clear()
        link.lost.set()

    async def _on_draining(self, link: _Link, data=None) -> None:
        log.info("sts[%s]: %s is draining", self.init.stream_id, redact_url(link.url))
        link.draining.set()

    async def close(self) -> None:
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        link = self._link
        if link is not None and self._ready.is_set():
            with contextlib.suppress(Exception):
                summary = parse_ack(StreamEndAck, await link.sio.call(
                    STREAM_END, dump(StreamEnd(stream_id=self.init.stream_id)), namespace=NAMESPACE, timeout=2))
                log.info("sts[%s]: ended: %d fragments (%d ok, %d no speech, %d failed), p95 %.0f ms",
                         self.init.stream_id, summary.fragments, summary.succeeded, summary.no_speech,
                         summary.failed, summary.p95_ms)
        self._ready.clear()
        self._fail_pending(FallbackReason.CLOSED, "stream stopped")
        if link is not None:
            with contextlib.suppress(Exception):
                await link.sio.disconnect()
        self._set_state(StsState.CLOSED)

    # ------------------------------------------------------------ fragments

    def _fail_pending(self, reason: FallbackReason, detail: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Fallback(reason, detail))
        self._pending.clear()

    def _fail_sent(self, link: _Link, reason: FallbackReason, detail: str) -> None:
        """The fragments sent on `link` will not be answered: their spans fall back."""
        for fragment_id in list(link.sent):
            fut = self._pending.pop(fragment_id, None)
            if fut is not None and not fut.done():
                fut.set_exception(Fallback(reason, detail))
            link.discard(fragment_id)

    async def _on_processed(self, link: _Link, data) -> None:
        try:
            msg = parse(FragmentProcessed, data)
        except ProtocolError as exc:
            log.warning("sts[%s]: bad fragment:processed: %s", self.init.stream_id, exc.message)
            return
        link.discard(msg.fragment_id)
        fut = self._pending.pop(msg.fragment_id, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def _on_backpressure(self, link: _Link, data) -> None:
        try:
            link.slow_down = parse(StreamBackpressure, data).action == "slow_down"
        except ProtocolError as exc:
            log.warning("sts[%s]: bad stream:backpressure: %s", self.init.stream_id, exc.message)

    @property
    def inflight(self) -> int:
        return len(self._pending)

    async def process(self, frag: FragmentData, deadline: float) -> FragmentProcessed:
        """Send one fragment and wait for its result until `deadline` (time.monotonic())."""
        if not self._ready.is_set():
            raise Fallback(FallbackReason.STS_UNAVAILABLE, f"sts-service {self.state}")
        while True:
            link = self._link
            if link is None or not self._ready.is_set():
                raise Fallback(FallbackReason.STS_UNAVAILABLE, f"sts-service {self.state}")
            limit = max(1, link.max_inflight // 2) if link.slow_down else link.max_inflight
            if self.inflight < limit:
                break
            if time.monotonic() >= deadline - 0.5:
                raise Fallback(FallbackReason.BACKPRESSURE, f"{self.inflight} fragments in flight")
            await asyncio.sleep(0.05)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Fallback(FallbackReason.TIMEOUT, "deadline passed before sending")
        fut = asyncio.get_running_loop().create_future()
        self._pending[frag.fragment_id] = fut
        link.add(frag.fragment_id)
        try:
            try:
                parse_ack(FragmentAck, await link.sio.call(FRAGMENT_DATA, dump(frag), namespace=NAMESPACE,
                                                           timeout=min(remaining, 5.0)))
            except ProtocolError as exc:
                raise Fallback(FallbackReason.REJECTED, f"{exc.code.value}: {exc.message}") from None
            return await asyncio.wait_for(asyncio.shield(fut), deadline - time.monotonic())
        except (asyncio.TimeoutError, socketio.exceptions.TimeoutError):
            raise Fallback(FallbackReason.TIMEOUT, "no result before the deadline") from None
        except socketio.exceptions.SocketIOError as exc:
            raise Fallback(FallbackReason.STS_DISCONNECTED, str(exc)) from None
        finally:
            self._pending.pop(frag.fragment_id, None)
            link.discard(frag.fragment_id)


def _draining(exc: BaseException) -> bool:
    """A refusal that says the replica is shutting down (connect or `stream:init`)."""
    if isinstance(exc, ProtocolError):
        return exc.code == ErrorCode.DRAINING
    return "draining" in str(exc)


def _bound(handler, link: _Link):
    """A Socket.IO handler for one link (a coroutine function, which python-socketio awaits)."""
    async def on_event(*args):
        return await handler(link, *args)
    return on_event
