"""The control plane (aiohttp): health, metrics, the /v1/streams REST API, events and publish hooks.

Where the API token is checked: `auth_middleware`. With MEDIA_API_TOKEN set, every /v1 request
needs `Authorization: Bearer <token>` (hooks may pass `?token=` since nginx-rtmp cannot send
headers); without it the API answers loopback clients only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from urllib.parse import parse_qs, urlencode

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from .config import MediaConfig, StreamRequest
from .events import EventLog
from .metrics import MediaMetrics
from .registry import StreamExists, StreamRegistry

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health", "/metrics")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


@web.middleware
async def auth_middleware(request: web.Request, handler):
    if request.path in OPEN_PATHS or not request.path.startswith("/v1/"):
        return await handler(request)
    token: str | None = request.app["config"].api_token
    if token:
        supplied = request.headers.get("Authorization", "")
        supplied = supplied[7:] if supplied.startswith("Bearer ") else request.query.get("token", "")
        if not hmac.compare_digest(supplied.encode(), token.encode()):
            return _error(401, "unauthorized", "missing or wrong bearer token (MEDIA_API_TOKEN)")
    else:
        remote = request.remote or ""
        try:
            local = ipaddress.ip_address(remote.split("%")[0]).is_loopback
        except ValueError:
            local = remote in ("", "localhost")
        if not local:
            return _error(403, "forbidden", "MEDIA_API_TOKEN is not set: the API answers loopback clients only")
    return await handler(request)


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": {"code": "invalid_json",
                                                            "message": "request body is not valid JSON"}}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": {"code": "invalid_body",
                                                            "message": "request body must be a JSON object"}}),
                                 content_type="application/json")
    return body


class Api:
    def __init__(self, cfg: MediaConfig, registry: StreamRegistry, metrics: MediaMetrics, events: EventLog):
        self.cfg, self.registry, self.metrics, self.events = cfg, registry, metrics, events

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
            return _error(400, "invalid_request", _describe(exc))
        return await self._start(req)

    async def _start(self, req: StreamRequest) -> web.Response:
        try:
            worker, created = await self.registry.start(req)
        except StreamExists as exc:
            return _error(409, "conflict", str(exc))
        return web.json_response(worker.snapshot(), status=201 if created else 200)

    async def list(self, request):
        return web.json_response({"streams": [w.snapshot() for w in self.registry.all()]})

    def _worker(self, request):
        worker = self.registry.get(request.match_info["id"])
        if worker is None:
            raise web.HTTPNotFound(text=json.dumps({"error": {"code": "not_found",
                                                              "message": f"no stream {request.match_info['id']!r}"}}),
                                   content_type="application/json")
        return worker

    async def get(self, request):
        return web.json_response(self._worker(request).snapshot())

    async def patch(self, request):
        worker = self._worker(request)
        body = await _json_body(request)
        unknown = set(body) - {"mix", "duck_gain_db"}
        if unknown:
            return _error(400, "invalid_request", f"cannot change {sorted(unknown)}; only mix and duck_gain_db")
        if "mix" in body:
            if body["mix"] not in ("duck", "replace", "passthrough"):
                return _error(400, "invalid_request", "mix: must be duck, replace or passthrough")
            worker.set_mode(body["mix"])
        if "duck_gain_db" in body:
            gain = body["duck_gain_db"]
            if not isinstance(gain, (int, float)) or not -60 <= gain <= 0:
                return _error(400, "invalid_request", "duck_gain_db: must be a number within -60..0")
            worker.duck_gain_db = float(gain)
        return web.json_response(worker.snapshot())

    async def bypass(self, request):
        """Emergency switch to the original audio, effective on the next output frame."""
        worker = self._worker(request)
        worker.set_mode("passthrough")
        return web.json_response(worker.snapshot())

    async def delete(self, request):
        """Stop now; with `?drain=true` first play out what is buffered (up to the output delay)."""
        worker = self._worker(request)
        await self.registry.stop(worker.id, drain=request.query.get("drain", "false").lower() == "true")
        return web.json_response(worker.snapshot())

    async def events_handler(self, request):
        try:
            since = int(request.query.get("since", "0"))
            wait = min(30.0, float(request.query.get("wait", "0")))
        except ValueError:
            return _error(400, "invalid_request", "since must be an integer and wait a number of seconds")
        stream = request.match_info.get("id") or request.query.get("stream")
        events = await self.events.wait_since(since, stream, wait)
        return web.json_response({"events": events, "last_seq": self.events.last_seq})

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
            return _error(400, "invalid_request", _describe(exc))
        if req is None:
            return web.json_response({"ignored": path})  # e.g. our own outputs: never refuse a publish
        try:
            worker, created = await self.registry.start(req)
        except StreamExists as exc:
            # Never refuse the publish: the existing stream (e.g. made over REST) keeps running.
            log.warning("publish hook for %s: %s", path, exc)
            return web.json_response({"id": exc.worker.id, "created": False, "conflict": str(exc)})
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

    async def mediamtx_ready(self, request):
        body = await _json_body(request)
        return await self._hook_start(str(body.get("path", "")), str(body.get("query", "")))

    async def mediamtx_not_ready(self, request):
        body = await _json_body(request)
        return await self._hook_stop(str(body.get("path", "")))

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


def make_app(cfg: MediaConfig, registry: StreamRegistry, metrics: MediaMetrics, events: EventLog) -> web.Application:
    app = web.Application(middlewares=[auth_middleware], client_max_size=1024 * 1024)
    app["config"] = cfg
    api = Api(cfg, registry, metrics, events)
    r = app.router
    r.add_get("/health", api.health)
    r.add_get("/metrics", api.prom)
    r.add_post("/v1/streams", api.create)
    r.add_get("/v1/streams", api.list)
    r.add_get("/v1/streams/{id}", api.get)
    r.add_patch("/v1/streams/{id}", api.patch)
    r.add_delete("/v1/streams/{id}", api.delete)
    r.add_post("/v1/streams/{id}/bypass", api.bypass)
    r.add_get("/v1/streams/{id}/events", api.events_handler)
    r.add_get("/v1/events", api.events_handler)
    r.add_post("/v1/hooks/mediamtx/ready", api.mediamtx_ready)
    r.add_post("/v1/hooks/mediamtx/not-ready", api.mediamtx_not_ready)
    r.add_post("/v1/hooks/nginx/on_publish", api.nginx_on_publish)
    r.add_post("/v1/hooks/nginx/on_publish_done", api.nginx_on_publish_done)

    async def _cleanup(app):
        await registry.close()

    app.on_cleanup.append(_cleanup)
    return app
