"""Socket.IO client of one stream to the sts-service, with an explicit connection state machine.

States: disconnected -> connecting -> connected -> (drop) -> reconnecting -> connecting -> ...
`stream:init` is sent after every (re)connect. A fragment is sent only while connected and while
the server's in-flight limit allows; `process()` answers by the fragment's deadline or raises
`Fallback` with the reason, so the caller always knows what to play.
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
    STREAM_BACKPRESSURE,
    STREAM_END,
    STREAM_INIT,
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

from ..redaction import redact
from ..states import FallbackReason, StsState

log = logging.getLogger(__name__)

# One connection attempt (TCP, websocket handshake, Engine.IO open, namespace) ends after this.
# Without a bound, an sts-service whose port accepts but never answers (a black-holed network, a
# wedged process) held the attempt for aiohttp's 300 s default, and the stream stayed
# `connecting` long after the network was back.
CONNECT_TIMEOUT_S = 10.0


class Fallback(Exception):
    """The dub for a fragment will not come: play the original. `reason` is a metric label."""

    def __init__(self, reason: FallbackReason, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = FallbackReason(reason)
        self.detail = detail


class StsClient:
    def __init__(self, url: str, token: str, init: StreamInit, *,
                 on_state: Callable[[StsState], None] | None = None,
                 retry_min_s: float = 0.5, retry_max_s: float = 5.0):
        self.url = url
        self.token = token
        self.init = init
        self.on_state = on_state or (lambda s: None)
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.state = StsState.DISCONNECTED
        self.max_inflight = 1
        self.capabilities: dict = {}
        self.last_error = ""
        self.connects = 0
        self._slow_down = False
        self._pending: dict[str, asyncio.Future] = {}
        self._ready = asyncio.Event()  # connected and initialised
        self._dropped = asyncio.Event()
        self._supervisor: asyncio.Task | None = None
        self._sio = self._make_client()

    def _make_client(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        sio.on(FRAGMENT_PROCESSED, self._on_processed, namespace=NAMESPACE)
        sio.on(STREAM_BACKPRESSURE, self._on_backpressure, namespace=NAMESPACE)
        sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        sio.on("connect_error", self._on_connect_error, namespace=NAMESPACE)
        return sio

    async def _on_connect_error(self, data) -> None:
        message = data.get("message") if isinstance(data, dict) else data
        self.last_error = redact(f"connect refused: {message}")

    # ------------------------------------------------------------ state machine

    def _set_state(self, state: StsState) -> None:
        if state != self.state:
            log.info("sts[%s]: %s -> %s", self.init.stream_id, self.state, state)
            self.state = state
            self.on_state(state)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name=f"sts:{self.init.stream_id}")

    async def _supervise(self) -> None:
        delay = self.retry_min_s
        first = True
        while True:
            self._set_state(StsState.CONNECTING if first else StsState.RECONNECTING)
            try:
                await self._connect_once()
                delay = self.retry_min_s
                await self._dropped.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                refused = self.last_error if self.last_error.startswith("connect refused") else ""
                self.last_error = refused or redact(str(exc)) or type(exc).__name__
                unauthorized = "unauthorized" in self.last_error.lower()
                log.warning("sts[%s]: %s", self.init.stream_id, self.last_error)
                if unauthorized:
                    self._set_state(StsState.UNAUTHORIZED)
                    delay = self.retry_max_s
            self._ready.clear()
            self._fail_pending(FallbackReason.STS_DISCONNECTED, self.last_error or "connection lost")
            with contextlib.suppress(Exception):
                await self._sio.disconnect()
            first = False
            if self.state != StsState.UNAUTHORIZED:
                self._set_state(StsState.RECONNECTING)
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)

    async def _connect_once(self) -> None:
        self._dropped.clear()
        self.last_error = ""
        self._sio = self._make_client()
        try:
            await asyncio.wait_for(self._sio.connect(self.url, namespaces=[NAMESPACE], transports=["websocket"],
                                                     auth={"token": self.token}, wait_timeout=5),
                                   CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ConnectionError(f"no answer from {self.url} within {CONNECT_TIMEOUT_S:g} s") from None
        try:
            ack = parse_ack(StreamInitAck, await self._sio.call(STREAM_INIT, dump(self.init), namespace=NAMESPACE,
                                                                timeout=10))
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"stream:init refused: {exc.code.value}: {exc.message}") from None
        self.max_inflight = ack.max_inflight
        self.capabilities = ack.capabilities.model_dump()
        self.connects += 1
        self.last_error = ""
        self._slow_down = False
        self._ready.set()
        self._set_state(StsState.CONNECTED)

    async def _on_disconnect(self, *args) -> None:
        self._ready.clear()
        self._dropped.set()

    async def close(self) -> None:
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._ready.is_set():
            with contextlib.suppress(Exception):
                summary = parse_ack(StreamEndAck, await self._sio.call(
                    STREAM_END, dump(StreamEnd(stream_id=self.init.stream_id)), namespace=NAMESPACE, timeout=2))
                log.info("sts[%s]: ended: %d fragments (%d ok, %d no speech, %d failed), p95 %.0f ms",
                         self.init.stream_id, summary.fragments, summary.succeeded, summary.no_speech,
                         summary.failed, summary.p95_ms)
        self._ready.clear()
        self._fail_pending(FallbackReason.CLOSED, "stream stopped")
        with contextlib.suppress(Exception):
            await self._sio.disconnect()
        self._set_state(StsState.CLOSED)

    # ------------------------------------------------------------ fragments

    def _fail_pending(self, reason: FallbackReason, detail: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Fallback(reason, detail))
        self._pending.clear()

    async def _on_processed(self, data) -> None:
        try:
            msg = parse(FragmentProcessed, data)
        except ProtocolError as exc:
            log.warning("sts[%s]: bad fragment:processed: %s", self.init.stream_id, exc.message)
            return
        fut = self._pending.pop(msg.fragment_id, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def _on_backpressure(self, data) -> None:
        try:
            self._slow_down = parse(StreamBackpressure, data).action == "slow_down"
        except ProtocolError as exc:
            log.warning("sts[%s]: bad stream:backpressure: %s", self.init.stream_id, exc.message)

    @property
    def inflight(self) -> int:
        return len(self._pending)

    async def process(self, frag: FragmentData, deadline: float) -> FragmentProcessed:
        """Send one fragment and wait for its result until `deadline` (time.monotonic())."""
        if not self._ready.is_set():
            raise Fallback(FallbackReason.STS_UNAVAILABLE, f"sts-service {self.state}")
        limit = max(1, self.max_inflight // 2) if self._slow_down else self.max_inflight
        while self.inflight >= limit:
            if time.monotonic() >= deadline - 0.5:
                raise Fallback(FallbackReason.BACKPRESSURE, f"{self.inflight} fragments in flight")
            await asyncio.sleep(0.05)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Fallback(FallbackReason.TIMEOUT, "deadline passed before sending")
        fut = asyncio.get_running_loop().create_future()
        self._pending[frag.fragment_id] = fut
        try:
            try:
                parse_ack(FragmentAck, await self._sio.call(FRAGMENT_DATA, dump(frag), namespace=NAMESPACE,
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
