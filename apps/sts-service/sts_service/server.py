"""The Socket.IO /sts server on aiohttp: protocol handlers, health, readiness, load and metrics.

Handlers only validate, account and schedule: every fragment becomes a task owned by its
Session, and the blocking model work runs in the pipeline's executors, so acks stay fast.
At SIGTERM the server drains (`StsServer.drain`): it refuses new streams and tells its clients
to move theirs to another replica, serving them until they have, before it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import socketio
from aiohttp import web
from livedub_protocol import (
    FRAGMENT_DATA,
    FRAGMENT_PROCESSED,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    NAMESPACE,
    PROTOCOL_VERSION,
    SERVER_DRAINING,
    STREAM_BACKPRESSURE,
    STREAM_END,
    STREAM_INIT,
    AudioFormat,
    ErrorCode,
    FragmentAck,
    FragmentData,
    FragmentError,
    FragmentProcessed,
    ProtocolError,
    ServerDraining,
    StreamBackpressure,
    StreamEnd,
    StreamInit,
    StreamInitAck,
    describe_validation_error,
    dump,
    error_ack,
    parse,
    pcm16_duration_ms,
    reject_ack,
)
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from .asr.left_context import LeftContext
from .auth import token_ok
from .config import StsConfig
from .engines import Engines, load_engines
from .metrics import StsMetrics
from .pipeline import DubbingPipeline, StreamSpec
from .sessions import Session, SessionRegistry

log = logging.getLogger(__name__)

# A fragment's duration_ms may differ from its audio length by this much (rounding on the client).
DURATION_TOLERANCE_MS = 50.0
# Largest Socket.IO message: the longest legal fragment at the highest legal rate, plus room for the fields.
MESSAGE_SLACK_BYTES = 64 * 1024


def max_message_bytes(cfg: StsConfig) -> int:
    return int(cfg.max_fragment_ms / 1000.0 * MAX_SAMPLE_RATE_HZ * 2) + MESSAGE_SLACK_BYTES


RETURN_MARGIN_S = 0.05  # a result must be sent this long before the client's deadline
SHUTDOWN_DRAIN_S = 10.0  # at SIGTERM, fragments in flight get this long to finish; the rest are answered failed
# A drain ends early once nothing has been in flight for this long: a client that does not move its
# streams (protocol < 1.4) is not waited for, and a silent stream loses nothing by the disconnect.
DRAIN_IDLE_S = 2.0


class StsServer:
    def __init__(self, cfg: StsConfig, engines: Engines | None = None):
        self.cfg = cfg
        self.metrics = StsMetrics()
        self.engines = engines
        self.pipeline: DubbingPipeline | None = None
        self.sessions = SessionRegistry()
        # The message limit fits the longest legal fragment at the highest legal rate, so any
        # fragment the server could accept fits and a fragment above the limit at a lower rate
        # still gets a `fragment_too_large` ack. Servers connect over websocket: no browser
        # origin is allowed unless configured. Pings notice a silent partition in ~10 s.
        origins = [o.strip() for o in cfg.cors_origins.split(",") if o.strip()]
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=origins,
                                        max_http_buffer_size=max_message_bytes(cfg), ping_interval=5,
                                        ping_timeout=5, logger=False, engineio_logger=False)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/ready", self._ready)
        self.app.router.add_get("/load", self._load)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.on_startup.append(self._on_startup)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.on_cleanup.append(self._on_cleanup)
        self._load_task: asyncio.Task | None = None
        self._closers: set[asyncio.Task] = set()
        self.draining = False
        self._last_accept = 0.0  # loop time of the last accepted fragment (drain idleness)
        ns = NAMESPACE
        self.sio.on("connect", self._connect, namespace=ns)
        self.sio.on("disconnect", self._disconnect, namespace=ns)
        self.sio.on(STREAM_INIT, self._stream_init, namespace=ns)
        self.sio.on(FRAGMENT_DATA, self._fragment_data, namespace=ns)
        self.sio.on(STREAM_END, self._stream_end, namespace=ns)

    # ------------------------------------------------------------ lifecycle

    async def _on_startup(self, app: web.Application) -> None:
        self._load_task = asyncio.create_task(self._load_models())

    async def _load_models(self) -> None:
        loop = asyncio.get_running_loop()
        if self.engines is None:
            log.info("loading models ...")
            self.engines = await loop.run_in_executor(None, load_engines, self.cfg)
        self.pipeline = DubbingPipeline(self.cfg, self.engines, self.metrics)
        await loop.run_in_executor(self.pipeline.asr_executor, self.pipeline.warm_up)
        self.pipeline.start()
        self.metrics.ready.set(1)
        log.info("ready: %s", self.engines.capabilities())

    async def _on_shutdown(self, app: web.Application) -> None:
        """SIGTERM: the fragments in flight finish, or are answered `failed` with a code, while the
        connections are still open (aiohttp closes them only after this)."""
        sessions = self.sessions.all()
        busy = sum(len(s.tasks) for s in sessions)
        if busy:
            log.info("shutting down: %d fragments in flight get up to %.0f s", busy, SHUTDOWN_DRAIN_S)
        await asyncio.gather(*(s.drain(SHUTDOWN_DRAIN_S) for s in sessions), return_exceptions=True)

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._load_task:
            self._load_task.cancel()
            await asyncio.gather(self._load_task, return_exceptions=True)
        for session in self.sessions.all():
            await session.close()
        if self.pipeline:
            await self.pipeline.aclose()

    @property
    def ready(self) -> bool:
        return self.pipeline is not None

    async def drain(self, timeout: float, interrupted: asyncio.Event | None = None) -> None:
        """Stop taking streams and let the clients move theirs: refuse connects and `stream:init`
        (`draining`), tell every connection (`server:draining`), and keep serving until no session
        is left, nothing has been in flight for DRAIN_IDLE_S, `timeout` passes or `interrupted`
        is set (a second signal). Readiness turns 503 so orchestrators stop routing here."""
        loop = asyncio.get_running_loop()
        self.draining = True
        self.metrics.draining.set(1)
        log.info("draining: %d sessions; new streams are refused, open ones served up to %.0f s",
                 len(self.sessions), timeout)
        with contextlib.suppress(Exception):
            await self.sio.emit(SERVER_DRAINING, dump(ServerDraining(drain_s=timeout)), namespace=NAMESPACE)
        start = idle_since = loop.time()
        while loop.time() - start < timeout and not (interrupted and interrupted.is_set()):
            now = loop.time()
            if self._inflight() or now - self._last_accept < DRAIN_IDLE_S:
                idle_since = now
            if not len(self.sessions) or now - idle_since >= DRAIN_IDLE_S:
                break
            await asyncio.sleep(0.1)
        log.info("drained after %.1f s: %d sessions left", loop.time() - start, len(self.sessions))

    def _inflight(self) -> int:
        return sum(s.inflight for s in self.sessions.all())

    # ------------------------------------------------------------ HTTP

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "ready": self.ready})

    def _load_failure(self) -> str:
        task = self._load_task
        if task and task.done() and not task.cancelled() and task.exception():
            return str(task.exception())
        return ""

    async def _ready(self, request: web.Request) -> web.Response:
        if self._load_failure():
            return web.json_response({"ready": False, "error": self._load_failure()}, status=500)
        if self.draining:
            return web.json_response({"ready": False, "draining": True}, status=503)
        body = {"ready": self.ready}
        if self.ready:
            body["capabilities"] = self.engines.capabilities()
        return web.json_response(body, status=200 if self.ready else 503)

    def load(self) -> dict:
        """What a client picks a replica by (specs/sts-service.md, Load)."""
        scheduler = self.pipeline.scheduler if self.pipeline is not None else None
        wait_s = scheduler.estimated_wait_s(asyncio.get_running_loop().time()) if scheduler else 0.0
        return {"ready": self.ready, "draining": self.draining, "sessions": len(self.sessions),
                "connections": int(self.metrics.connections._value.get()), "inflight": self._inflight(),
                "asr_queue": scheduler.queued if scheduler else 0,
                "asr_workers": scheduler.workers if scheduler else self.cfg.asr_workers,
                "estimated_wait_ms": round(wait_s * 1000.0, 1)}

    async def _load(self, request: web.Request) -> web.Response:
        return web.json_response(self.load())

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ------------------------------------------------------------ Socket.IO

    async def _connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        expected = None if self.cfg.no_auth else self.cfg.auth_token
        if not token_ok(expected, auth):
            self.metrics.errors.labels(ErrorCode.UNAUTHORIZED.value).inc()
            log.warning("refused connection %s: unauthorized", sid)
            self._close_transport_soon(sid)
            raise socketio.exceptions.ConnectionRefusedError("unauthorized: missing or wrong token")
        if self.draining:
            self.metrics.errors.labels(ErrorCode.DRAINING.value).inc()
            self._close_transport_soon(sid)
            raise socketio.exceptions.ConnectionRefusedError("draining: shutting down; use another replica")
        if self.metrics.connections._value.get() >= self.cfg.max_connections:
            self.metrics.errors.labels(ErrorCode.OVERLOADED.value).inc()
            self._close_transport_soon(sid)
            raise socketio.exceptions.ConnectionRefusedError(
                f"overloaded: {self.cfg.max_connections} connections already (--max-connections)")
        self.metrics.connections.inc()
        log.info("client connected sid=%s", sid)

    def _close_transport_soon(self, sid: str) -> None:
        """A refused namespace connect leaves the Engine.IO session open; close it once the
        refusal has been sent, so an unauthenticated client holds nothing."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE) if hasattr(self.sio, "manager") else None

        async def close() -> None:
            await asyncio.sleep(0.2)
            with contextlib.suppress(Exception):
                await self.sio.eio.disconnect(eio_sid or sid)

        task = asyncio.get_running_loop().create_task(close())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self.metrics.connections.dec()
        for session in self.sessions.pop_all(sid):
            self.metrics.sessions.dec()
            await session.close()
        log.info("client disconnected sid=%s", sid)

    async def _refused(self, sid: str, exc: ProtocolError, event: str) -> None:
        """Count a refused request; a malformed one is also reported with an `error` event.

        Either way the caller answers it with a negative ack and the connection stays up.
        """
        self.metrics.errors.labels(exc.code.value).inc()
        log.info("refused %s from %s: %s", event, sid, exc.message)
        if exc.code == ErrorCode.INVALID_PAYLOAD:
            await self.sio.emit("error", {"event": event, "code": exc.code.value, "message": exc.message},
                                to=sid, namespace=NAMESPACE)

    async def _stream_init(self, sid: str, data: Any = None, *extra: Any) -> dict:
        try:
            audio = data.get("audio") if isinstance(data, dict) else None
            if audio is not None:
                try:
                    AudioFormat.model_validate(audio)
                except ValidationError as exc:
                    raise ProtocolError(ErrorCode.UNSUPPORTED_AUDIO,
                                        f"audio: {describe_validation_error(exc)} (supported: pcm_s16le, "
                                        f"mono, {MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz)") from None
            init = parse(StreamInit, data)
            if self.draining:
                raise ProtocolError(ErrorCode.DRAINING, "shutting down: open the stream on another replica")
            if not self.ready:
                failure = self._load_failure()
                if failure:
                    raise ProtocolError(ErrorCode.INTERNAL, f"models failed to load: {failure}",
                                        retryable=False)
                raise ProtocolError(ErrorCode.OVERLOADED, "models are still loading; retry shortly")
            supported = set(self.engines.target_languages(init.source_language))
            unsupported = [t for t in init.target_languages if t not in supported]
            if unsupported:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_LANGUAGE,
                    f"cannot dub {init.source_language} -> {', '.join(unsupported)}; "
                    f"supported targets from {init.source_language}: {sorted(supported) or 'none'}")
            if init.source_language != "en" and "tiny.en" in self.engines.asr.name:
                raise ProtocolError(ErrorCode.UNSUPPORTED_LANGUAGE,
                                    f"ASR model {self.engines.asr.name} only understands English")
        except ProtocolError as exc:
            await self._refused(sid, exc, STREAM_INIT)
            return error_ack(exc.code, exc.message)
        if (self.sessions.get(sid, init.stream_id) is None
                and self.sessions.count(sid) >= self.cfg.max_sessions_per_connection):
            exc = ProtocolError(ErrorCode.OVERLOADED, f"{self.cfg.max_sessions_per_connection} stream sessions "
                                "on this connection already (--max-sessions-per-connection)")
            await self._refused(sid, exc, STREAM_INIT)
            return error_ack(exc.code, exc.message)
        max_ms = min(self.cfg.max_fragment_ms, init.max_fragment_ms or self.cfg.max_fragment_ms)
        spec = StreamSpec(init.source_language, list(init.target_languages), init.audio.sample_rate_hz,
                          dict(init.voice))
        session = Session(sid=sid, stream_id=init.stream_id, spec=spec, max_fragment_ms=max_ms,
                          left_context=LeftContext(self.cfg.asr_left_context_s,
                                                   self.cfg.asr_left_context_pause_s))
        old = self.sessions.put(session)
        if old is not None:
            await old.close()  # re-init replaces the stream's session (e.g. after a reconnect)
        else:
            self.metrics.sessions.inc()
        log.info("stream:init stream_id=%s %s->%s session=%s", init.stream_id, init.source_language,
                 ",".join(init.target_languages), session.session_id)
        return dump(StreamInitAck(session_id=session.session_id, protocol_version=PROTOCOL_VERSION,
                                  max_inflight=self.cfg.max_inflight,
                                  capabilities=self.engines.capabilities(init.source_language)))

    async def _fragment_data(self, sid: str, data: Any = None, *extra: Any) -> dict:
        try:
            frag = parse(FragmentData, data)
            session = self.sessions.get(sid, frag.stream_id)
            if session is None:
                raise ProtocolError(ErrorCode.UNKNOWN_STREAM,
                                    f"stream {frag.stream_id!r} has no session: send stream:init first")
            audio_ms = pcm16_duration_ms(frag.audio, session.spec.sample_rate_hz)
            if audio_ms > session.max_fragment_ms or frag.duration_ms > session.max_fragment_ms:
                raise ProtocolError(ErrorCode.FRAGMENT_TOO_LARGE,
                                    f"fragment of {max(audio_ms, frag.duration_ms):.0f} ms exceeds the "
                                    f"limit of {session.max_fragment_ms:.0f} ms")
            if abs(audio_ms - frag.duration_ms) > DURATION_TOLERANCE_MS:
                raise ProtocolError(ErrorCode.INVALID_PAYLOAD,
                                    f"duration_ms ({frag.duration_ms:.0f}) does not match the audio "
                                    f"({audio_ms:.0f} ms at {session.spec.sample_rate_hz} Hz)")
            if session.inflight >= self.cfg.max_queued:
                raise ProtocolError(ErrorCode.OVERLOADED,
                                    f"{session.inflight} fragments in flight for this stream; slow down")
            if self.metrics.inflight._value.get() >= self.cfg.max_queued_total:
                raise ProtocolError(ErrorCode.OVERLOADED,
                                    f"{self.cfg.max_queued_total} fragments in flight on this server; slow down")
        except ProtocolError as exc:
            await self._refused(sid, exc, FRAGMENT_DATA)
            return reject_ack(exc.code, exc.message)
        session.fragments += 1
        self._last_accept = asyncio.get_running_loop().time()
        # Aim to finish a little before the client's deadline: the answer still has to travel
        # back and be placed (RETURN_MARGIN_S).
        deadline = (asyncio.get_running_loop().time() + frag.deadline_ms / 1000.0 - RETURN_MARGIN_S
                    if frag.deadline_ms is not None else None)
        late_s = frag.late_start_ms / 1000.0 if deadline is not None and frag.late_start_ms else 0.0
        task = asyncio.create_task(self._run_fragment(session, frag, deadline, late_s),
                                   name=f"fragment:{frag.stream_id}:{frag.fragment_id}")
        session.tasks.add(task)
        self.metrics.inflight.inc()
        task.add_done_callback(lambda t: (session.tasks.discard(t), self.metrics.inflight.dec()))
        await self._maybe_backpressure(session)
        return dump(FragmentAck(queue_depth=session.inflight))

    async def _run_fragment(self, session: Session, frag: FragmentData, deadline: float | None,
                            late_s: float = 0.0) -> None:
        try:
            result = await self.pipeline.process(frag, session.spec, deadline, session.last_transcript,
                                                 session.context, late_start_s=late_s,
                                                 left_context=session.left_context)
        except asyncio.CancelledError:
            # Abandoned (stream:end wait ran out, re-init, shutdown): still answer it once.
            abandoned = FragmentProcessed(
                stream_id=frag.stream_id, fragment_id=frag.fragment_id,
                sequence_number=frag.sequence_number, start_ms=frag.start_ms,
                duration_ms=frag.duration_ms, status="failed",
                error=FragmentError(code=ErrorCode.TIMEOUT, stage="internal", retryable=True,
                                    message="abandoned before it finished (stream ended, re-initialised "
                                            "or server shutting down)"))
            session.record("failed", 0.0)
            self.metrics.fragments.labels("failed").inc()
            self.metrics.errors.labels(ErrorCode.TIMEOUT.value).inc()
            await asyncio.shield(self.sio.emit(FRAGMENT_PROCESSED, dump(abandoned), to=session.sid,
                                               namespace=NAMESPACE))
            raise
        session.record(result.status, result.timings_ms.total)
        if result.transcript:
            session.last_transcript = result.transcript
        log.info("fragment:processed stream_id=%s fragment_id=%s status=%s total=%.0fms", frag.stream_id,
                 frag.fragment_id, result.status, result.timings_ms.total)
        log.debug("transcript %s/%s: %r", frag.stream_id, frag.fragment_id, result.transcript)
        await self.sio.emit(FRAGMENT_PROCESSED, dump(result), to=session.sid, namespace=NAMESPACE)
        session.tasks.discard(asyncio.current_task())
        await self._maybe_backpressure(session)

    async def _maybe_backpressure(self, session: Session) -> None:
        inflight, limit = session.inflight, self.cfg.max_inflight
        if not session.slowed_down and inflight >= limit:
            session.slowed_down = True
            action = "slow_down"
        elif session.slowed_down and inflight <= limit // 2:
            session.slowed_down = False
            action = "ok"
        else:
            return
        msg = StreamBackpressure(stream_id=session.stream_id, inflight=inflight, max_inflight=limit,
                                 action=action)
        await self.sio.emit(STREAM_BACKPRESSURE, dump(msg), to=session.sid, namespace=NAMESPACE)

    async def _stream_end(self, sid: str, data: Any = None, *extra: Any) -> dict:
        try:
            end = parse(StreamEnd, data)
            session = self.sessions.get(sid, end.stream_id)
            if session is None:
                raise ProtocolError(ErrorCode.UNKNOWN_STREAM, f"stream {end.stream_id!r} has no session")
        except ProtocolError as exc:
            await self._refused(sid, exc, STREAM_END)
            return error_ack(exc.code, exc.message)
        await session.drain(self.cfg.end_wait_s)
        if self.sessions.get(sid, end.stream_id) is session:
            self.sessions.pop(sid, end.stream_id)
            self.metrics.sessions.dec()
        log.info("stream:end stream_id=%s %s", end.stream_id, session.stats())
        return session.stats()


async def serve(cfg: StsConfig) -> None:
    """Listen until SIGTERM/SIGINT, drain (a second signal cuts the drain short), then shut down
    (fragments in flight get SHUTDOWN_DRAIN_S). The listener stays open while draining, so
    `/ready`, `/load` and `/metrics` keep answering and refusals are explicit."""
    server = StsServer(cfg)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    log.info("sts-service listening on http://%s:%d (namespace %s, auth %s)", cfg.host, cfg.port, NAMESPACE,
             "off" if cfg.no_auth else "token")
    loop = asyncio.get_running_loop()
    signals = [asyncio.Event(), asyncio.Event()]  # first signal, second signal

    def on_signal() -> None:
        (signals[1] if signals[0].is_set() else signals[0]).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await signals[0].wait()
        await server.drain(cfg.drain_timeout_s, interrupted=signals[1])
    finally:
        await runner.cleanup()


def run(cfg: StsConfig) -> None:
    asyncio.run(serve(cfg))
