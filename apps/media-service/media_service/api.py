"""The control plane (aiohttp): health, metrics, the /v1/streams REST API, events, publish hooks,
the live preview (`/v1/streams/{id}/preview.mjpg`) and the dashboard page (`/`).

Where the API token is checked: `auth_middleware`. Every /v1 request needs `Authorization: Bearer
<token>` (MEDIA_API_TOKEN, or the one generated at start). Two kinds of caller cannot send a header:
the publish hooks (nginx-rtmp, MediaMTX) pass `?token=`, and the dashboard's `<img>` preview uses a
short-lived signed link from `POST /v1/streams/{id}/preview-link`, so the token itself never sits
in a URL that a browser keeps. The dashboard page holds no data and is open like /health.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from urllib.parse import parse_qs, urlencode

from aiohttp import web
from livedub_protocol import describe_validation_error
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from .budget import DelayTooShort, check_delay
from .config import MediaConfig, StreamPatch, StreamRequest
from .dashboard import DASHBOARD_HTML
from .events import EventLog
from .metrics import MediaMetrics
from .preview import BroadcasterStopped, PreviewRegistry
from .reconcile import Reconciler
from .registry import LimitReached, StreamExists, StreamRegistry
from .signed_links import LinkSigner
from .states import Mode
from .targets import TargetRefused

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health", "/metrics")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


MAX_BODY_BYTES = 64 * 1024  # the largest legal StreamRequest is under 10 KiB

# RTMP servers' hooks cannot send a header and may carry the token in the query string; <img>
# previews open with a signed link instead (`signed_links.py`); every other /v1 route takes the
# token only as a bearer header.
QUERY_TOKEN_PREFIXES = ("/v1/hooks/",)
SIGNED_LINK_SUFFIXES = ("/preview.mjpg",)
BODY_METHODS = ("POST", "PUT", "PATCH")


def _origin_is_foreign(request: web.Request) -> bool:
    """A browser request from another site (CSRF, DNS rebinding) carries an Origin that is not
    this service's own host; servers and curl send none."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    if origin == "null":
        return True
    return origin.split("://", 1)[-1].rstrip("/").lower() != (request.host or "").lower()


@web.middleware
async def auth_middleware(request: web.Request, handler):
    if request.path in OPEN_PATHS or not request.path.startswith("/v1/"):
        return await handler(request)
    cfg = request.app["config"]
    if _origin_is_foreign(request):
        return _error(403, "forbidden", "cross-origin requests are refused (Origin does not match Host)")
    if cfg.allowed_hosts and (request.host or "").rsplit(":", 1)[0].strip("[]").lower() not in cfg.allowed_hosts:
        return _error(403, "forbidden", "Host is not one of --allowed-hosts")
    token: str = cfg.api_token
    supplied = request.headers.get("Authorization", "")
    if supplied.startswith("Bearer "):
        supplied = supplied[7:]
    elif request.path.startswith(QUERY_TOKEN_PREFIXES):
        supplied = request.query.get("token", "")
    elif request.path.endswith(SIGNED_LINK_SUFFIXES) and "sig" in request.query:
        if not request.app["links"].verify(request.path, request.query.get("exp", ""), request.query["sig"]):
            return _error(401, "unauthorized", "preview link expired or not valid; ask "
                          "POST /v1/streams/{id}/preview-link for a new one")
        return await handler(request)
    else:
        supplied = ""
    if not token or not hmac.compare_digest(supplied.encode(), token.encode()):
        return _error(401, "unauthorized", "missing or wrong bearer token (MEDIA_API_TOKEN)")
    if (request.method in BODY_METHODS and request.can_read_body and not request.path.startswith("/v1/hooks/")
            and request.content_type != "application/json"):
        return _error(415, "unsupported_media_type",
                      f"request bodies must be application/json, got {request.content_type or 'none'}")
    return await handler(request)


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """`{"path": "a", "path": "b"}` is ambiguous (and the classic way to smuggle a field past a
    template that pastes text into JSON): refused instead of letting the last one win."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json(loads=lambda text: json.loads(text, object_pairs_hook=_refuse_duplicate_keys))
    except web.HTTPRequestEntityTooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY_BYTES, actual_size=request.content_length or 0,
            text=json.dumps({"error": {"code": "limit_reached",
                                       "message": f"request body is larger than {MAX_BODY_BYTES} bytes"}}),
            content_type="application/json") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        detail = "" if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError) else f" ({exc})"
        raise web.HTTPBadRequest(text=json.dumps({"error": {"code": "invalid_json",
                                                            "message": f"request body is not valid JSON{detail}"}}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": {"code": "invalid_body",
                                                            "message": "request body must be a JSON object"}}),
                                 content_type="application/json")
    return body


class Api:
    def __init__(self, cfg: MediaConfig, registry: StreamRegistry, metrics: MediaMetrics, events: EventLog,
                 previews: PreviewRegistry):
        self.cfg, self.registry, self.metrics, self.events = cfg, registry, metrics, events
        self.previews = previews
        self.reconciler: Reconciler | None = None  # with --mediamtx-api

    # ---------------------------------------------------------------- basics

    async def health(self, request):
        return web.json_response({"status": "ok", "streams": len(self.registry.all())})

    async def prom(self, request):
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ---------------------------------------------------------------- streams

    async def create(self, request):
        body = await _json_body(request)
        try:
            req = StreamRequest.model_validate(body)
        except ValidationError as exc:
            return _error(400, "invalid_request", describe_validation_error(exc))
        return await self._start(req)

    async def _start(self, req: StreamRequest) -> web.Response:
        try:
            check_delay(req.output_delay_s or self.cfg.output_delay_s, min_silence_cap_ms=self.cfg.min_silence_ms)
        except DelayTooShort as exc:
            return _error(400, "invalid_request", str(exc))
        try:
            worker, created = await self.registry.start(req)
        except StreamExists as exc:
            return _error(409, "conflict", str(exc))
        except TargetRefused as exc:
            return _error(400, "invalid_request", str(exc))
        except LimitReached as exc:
            return self._refuse(exc)
        return web.json_response(self._snapshot(worker), status=201 if created else 200)

    def _refuse(self, exc: LimitReached) -> web.Response:
        self.metrics.limit_refusals.labels(exc.limit).inc()
        resp = _error(exc.status, "limit_reached", str(exc))
        if exc.status == 503:
            resp.headers["Retry-After"] = "5"
        return resp

    def _snapshot(self, worker) -> dict:
        return {**worker.snapshot(), "preview": self.previews.stats(worker.id)}

    async def list(self, request):
        return web.json_response({"streams": [self._snapshot(w) for w in self.registry.all()]})

    def _worker(self, request):
        worker = self.registry.get(request.match_info["id"])
        if worker is None:
            raise web.HTTPNotFound(text=json.dumps({"error": {"code": "not_found",
                                                              "message": f"no stream {request.match_info['id']!r}"}}),
                                   content_type="application/json")
        return worker

    async def get(self, request):
        return web.json_response(self._snapshot(self._worker(request)))

    async def patch(self, request):
        worker = self._worker(request)
        try:
            change = StreamPatch.model_validate(await _json_body(request))
        except ValidationError as exc:
            return _error(400, "invalid_request", f"{describe_validation_error(exc)} (only mix and duck_gain_db "
                                                  "can change while a stream runs)")
        if change.mix is not None:
            worker.set_mode(change.mix)
        if change.duck_gain_db is not None:
            worker.duck_gain_db = change.duck_gain_db
        return web.json_response(self._snapshot(worker))

    async def bypass(self, request):
        """Emergency switch to the original audio, effective on the next output frame."""
        worker = self._worker(request)
        worker.set_mode(Mode.PASSTHROUGH)
        return web.json_response(self._snapshot(worker))

    async def delete(self, request):
        """Stop now; with `?drain=true` first play out what is buffered (up to the output delay)."""
        worker = self._worker(request)
        if self.reconciler is not None:
            self.reconciler.operator_stopped(worker.id)  # not brought back while still published
        await self.registry.stop(worker.id, drain=request.query.get("drain", "false").lower() == "true")
        return web.json_response(self._snapshot(worker))

    async def events_handler(self, request):
        try:
            since = int(request.query.get("since", "0"))
            wait = min(30.0, float(request.query.get("wait", "0")))
        except ValueError:
            return _error(400, "invalid_request", "since must be an integer and wait a number of seconds")
        stream = request.match_info.get("id") or request.query.get("stream")
        events = await self.events.wait_since(since, stream, wait)
        return web.json_response({"events": events, "last_seq": self.events.last_seq})

    # ---------------------------------------------------------------- preview and dashboard

    async def preview(self, request):
        """MJPEG of the dubbed output (first language, or `?lang=`): one decoder however many viewers."""
        worker = self._worker(request)
        langs = list(worker.request.target_languages)
        lang = request.query.get("lang") or langs[0]
        if lang not in langs:
            return _error(404, "not_found", f"stream {worker.id!r} has no output language {lang!r}; it has {langs}")
        if self.previews.viewers(worker.id) >= self.cfg.max_preview_viewers:
            return self._refuse(LimitReached("preview_viewers", f"stream {worker.id!r} has "
                                             f"{self.cfg.max_preview_viewers} preview viewers (--max-preview-viewers)"))
        if self.previews.viewers() >= self.cfg.max_preview_viewers_total:
            return self._refuse(LimitReached("preview_viewers_total", f"{self.cfg.max_preview_viewers_total} preview "
                                             "viewers in total (--max-preview-viewers-total)"))
        try:
            bc, queue = self.previews.subscribe(worker.id, worker.request.output_for(lang))
        except BroadcasterStopped as exc:  # shutting down
            return _error(503, "unavailable", str(exc))
        resp = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame",
                                           "Cache-Control": "no-cache, no-store", "Pragma": "no-cache"})

        def alive() -> bool:  # viewer still connected and the stream still this worker
            transport = request.transport
            return (transport is not None and not transport.is_closing()
                    and self.registry.get(worker.id) is worker and not worker.done)

        try:
            await resp.prepare(request)
            async with contextlib.aclosing(bc.frames(queue, alive=alive)) as frames:
                async for jpeg in frames:
                    await resp.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n"
                                     % (len(jpeg), jpeg))
        except (ConnectionError, RuntimeError) as exc:  # the viewer went away mid-write
            log.debug("preview viewer of %s left: %s", worker.id, exc)
        finally:
            bc.unsubscribe(queue)
        return resp

    async def preview_link(self, request):
        """A signed preview URL for viewers that cannot send the token (an `<img>`), valid for minutes."""
        worker = self._worker(request)
        path = f"/v1/streams/{worker.id}/preview.mjpg"
        query, expires = request.app["links"].sign(path)
        lang = request.query.get("lang")
        if lang:
            if lang not in worker.request.target_languages:
                return _error(404, "not_found", f"stream {worker.id!r} has no output language {lang!r}")
            query += "&" + urlencode({"lang": lang})
        return web.json_response({"url": f"{path}?{query}", "expires_at": expires})

    async def dashboard(self, request):
        return web.Response(text=DASHBOARD_HTML, content_type="text/html", headers={"Cache-Control": "no-cache"})

    # ---------------------------------------------------------------- hooks

    def _hook_request(self, path: str, query: str, nginx: bool = False) -> StreamRequest | None:
        """`live/<name>/in` -> a request that dubs it to `live/<name>/out` on the same server.

        nginx-rtmp needs names with slashes addressed as `live/_definst_/<name>` (RTMP clients
        split a URL at its last slash); MediaMTX takes the plain path.
        """
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[-1] != "in":
            return None
        app, name = parts[0], "/".join(parts[1:-1])
        q = parse_qs(query or "")
        langs = [t for v in q.get("lang", []) + q.get("langs", []) for t in v.split(",") if t] \
            or list(self.cfg.default_target_languages)
        base = f"{self.cfg.rtmp_base_url.rstrip('/')}/{app}/{'_definst_/' if nginx else ''}{name}"
        output = f"{base}/out" if len(langs) == 1 else f"{base}/{{lang}}"
        return StreamRequest(id=name.replace("/", "-"), input_url=f"{base}/in", output_url=output,
                             source_language=q.get("source", [self.cfg.default_source_language])[0],
                             target_languages=langs, mix=q.get("mix", [self.cfg.default_mix])[0])

    async def _hook_start(self, path: str, query: str, nginx: bool = False) -> web.Response:
        try:
            req = self._hook_request(path, query, nginx)
        except ValidationError as exc:
            return _error(400, "invalid_request", describe_validation_error(exc))
        if req is None:
            return web.json_response({"ignored": path})  # e.g. our own outputs: never refuse a publish
        try:
            worker, created = await self.registry.start(req)
        except StreamExists as exc:
            # Never refuse the publish: the existing stream (e.g. made over REST) keeps running.
            log.warning("publish hook for %s: %s", path, exc)
            return web.json_response({"id": exc.worker.id, "created": False, "conflict": str(exc)})
        if self.reconciler is not None:
            self.reconciler.published_again(worker.id)
        self.events.publish(worker.id, "hook_publish", {"path": path, "created": created})
        return web.json_response({"id": worker.id, "created": created})

    async def _hook_stop(self, path: str) -> web.Response:
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[-1] != "in":
            return web.json_response({"ignored": path})
        stream_id = "/".join(parts[1:-1]).replace("/", "-")
        worker = self.registry.get(stream_id)
        if worker is not None:
            # The publisher may come back: the worker keeps retrying its input for a while and
            # stops by itself if it does not (see worker.INPUT_LINGER_S).
            self.events.publish(stream_id, "hook_unpublish", {"path": path})
        return web.json_response({"id": stream_id, "known": worker is not None})

    @staticmethod
    async def _mediamtx_hook_args(request) -> tuple[str, str]:
        """The path and the publisher's raw query of a MediaMTX hook.

        The shipped hook posts the raw query as the body and names the path in the URL
        (`?path=$MTX_PATH`): nothing is pasted into a JSON template, so a query holding `"` cannot
        add or replace a field. The JSON body `{"path", "query"}` of older configs is still read,
        with duplicate keys refused.
        """
        if request.content_type == "application/json":
            body = await _json_body(request)
            return str(body.get("path", "")), str(body.get("query", ""))
        return request.query.get("path", ""), await request.text()

    async def mediamtx_ready(self, request):
        return await self._hook_start(*await self._mediamtx_hook_args(request))

    async def mediamtx_not_ready(self, request):
        path, _ = await self._mediamtx_hook_args(request)
        return await self._hook_stop(path)

    NGINX_FIELDS = frozenset({"call", "app", "name", "type", "addr", "clientid", "flashver", "swfurl",
                              "tcurl", "pageurl", "epoch", "args"})

    @classmethod
    def _nginx_path(cls, form) -> tuple[str, str]:
        """nginx-rtmp posts app and name, and the publish URL's query parameters as extra fields."""
        app, name = form.get("app", ""), form.get("name", "")
        path = f"{app}/{name}".replace("/_definst_", "")
        extra = [(k, v) for k, v in form.items() if k not in cls.NGINX_FIELDS]
        return path, urlencode(extra)

    async def nginx_on_publish(self, request):
        form = await request.post()
        path, args = self._nginx_path(form)
        return await self._hook_start(path, args, nginx=True)

    async def nginx_on_publish_done(self, request):
        form = await request.post()
        path, _ = self._nginx_path(form)
        return await self._hook_stop(path)


def make_app(cfg: MediaConfig, registry: StreamRegistry, metrics: MediaMetrics, events: EventLog,
             previews: PreviewRegistry | None = None) -> web.Application:
    app = web.Application(middlewares=[auth_middleware], client_max_size=MAX_BODY_BYTES)
    app["config"] = cfg
    app["links"] = LinkSigner()
    previews = previews or PreviewRegistry()
    app["previews"] = previews
    registry.on_removed.append(previews.forget)
    api = Api(cfg, registry, metrics, events, previews)
    if cfg.mediamtx_api:
        api.reconciler = Reconciler(cfg.mediamtx_api, registry, events, lambda path: api._hook_request(path, ""),
                                    interval_s=cfg.reconcile_interval_s)
    for name, value in (("streams", cfg.max_streams), ("languages", cfg.max_languages),
                        ("preview_viewers", cfg.max_preview_viewers),
                        ("preview_viewers_total", cfg.max_preview_viewers_total), ("body_bytes", MAX_BODY_BYTES),
                        ("events_kept", events.maxlen)):
        metrics.limit.labels(name).set(value)
    r = app.router
    r.add_get("/", api.dashboard)
    r.add_get("/dashboard", api.dashboard)
    r.add_get("/health", api.health)
    r.add_get("/metrics", api.prom)
    r.add_post("/v1/streams", api.create)
    r.add_get("/v1/streams", api.list)
    r.add_get("/v1/streams/{id}", api.get)
    r.add_patch("/v1/streams/{id}", api.patch)
    r.add_delete("/v1/streams/{id}", api.delete)
    r.add_post("/v1/streams/{id}/bypass", api.bypass)
    r.add_get("/v1/streams/{id}/events", api.events_handler)
    r.add_get("/v1/streams/{id}/preview.mjpg", api.preview)
    r.add_post("/v1/streams/{id}/preview-link", api.preview_link)
    r.add_get("/v1/events", api.events_handler)
    r.add_post("/v1/hooks/mediamtx/ready", api.mediamtx_ready)
    r.add_post("/v1/hooks/mediamtx/not-ready", api.mediamtx_not_ready)
    r.add_post("/v1/hooks/nginx/on_publish", api.nginx_on_publish)
    r.add_post("/v1/hooks/nginx/on_publish_done", api.nginx_on_publish_done)

    async def _startup(app):
        if api.reconciler is not None:
            api.reconciler.start()

    async def _shutdown(app):
        if api.reconciler is not None:
            await api.reconciler.close()
        await previews.close()  # ends the open preview responses, which would otherwise hold up shutdown

    async def _cleanup(app):
        await previews.close()
        await registry.close()

    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app
