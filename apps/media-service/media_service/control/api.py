"""The control plane (aiohttp): health, metrics, the /v1/streams REST API, events, the live
preview (`/v1/streams/{id}/preview.mjpg`), live captions (`/v1/streams/{id}/captions/{lang}.vtt`
and its SSE feed `.../captions/{lang}/events`, from the stream's `captions.CaptionStore`) and the
dashboard page (`/`); `make_app` wires them with the publish hooks (`hooks.py`) behind the token
check (`auth.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter

from aiohttp import web
from livedub_protocol import describe_validation_error
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from ..cluster.forward import forwarded
from ..cluster.node import ClusterUnavailable, OwnedElsewhere, current_request
from ..config import MediaConfig, StreamPatch, StreamRequest
from ..events import EventLog
from ..media_io.captions import render_webvtt
from ..media_io.hls import read_servable, servable
from ..metrics import MediaMetrics
from ..redaction import viewer_view
from ..states import Mode
from ..stream.budget import DelayTooShort, check_delay
from ..targets import TargetRefused
from .auth import ANSWERED_HOSTS, LINK_EXPIRES, VIEWER, answered_hosts, auth_middleware
from .bodies import MAX_BODY_BYTES, json_body, json_error
from .clients import client_address
from .dashboard import DASHBOARD_HTML
from .hooks import PublishHooks
from .preview import BroadcasterStopped, PreviewRegistry
from .reconcile import Reconciler
from .registry import LimitReached, StreamExists, StreamRegistry
from .signed_links import LinkSigner, cluster_key

log = logging.getLogger(__name__)

CAPTION_CLOCK_S = 2.0  # a feed sends the output clock (and a keep-alive) at least this often
CAPTION_POLL_S = 1.0  # a feed notices a closed connection, a removed stream or shutdown within this


class FeedSlots:
    """Open caption feeds per stream, per client address and in all: one client (one viewer token
    shared by many pages, or one page opening feeds in a loop) cannot take every slot."""

    def __init__(self, cfg: MediaConfig):
        self.cfg = cfg
        self.total = 0
        self.by_stream: Counter[str] = Counter()
        self.by_client: Counter[str] = Counter()

    def refusal(self, stream_id: str, client: str) -> LimitReached | None:
        cfg = self.cfg
        if self.by_stream[stream_id] >= cfg.max_caption_feeds:
            return LimitReached("caption_feeds", f"stream {stream_id!r} has {cfg.max_caption_feeds} caption feeds "
                                                 "open (--max-caption-feeds)")
        if self.by_client[client] >= cfg.max_caption_feeds_per_client:
            return LimitReached("caption_feeds_per_client", f"{client} has {cfg.max_caption_feeds_per_client} caption "
                                                            "feeds open (--max-caption-feeds-per-client)")
        if self.total >= cfg.max_caption_feeds_total:
            return LimitReached("caption_feeds_total", f"{cfg.max_caption_feeds_total} caption feeds are open "
                                                       "(--max-caption-feeds-total)")
        return None

    @contextlib.contextmanager
    def hold(self, stream_id: str, client: str):
        self.total += 1
        self.by_stream[stream_id] += 1
        self.by_client[client] += 1
        try:
            yield
        finally:
            self.total -= 1
            for counts, key in ((self.by_stream, stream_id), (self.by_client, client)):
                counts[key] -= 1
                if counts[key] <= 0:
                    del counts[key]


class Api:
    def __init__(self, cfg: MediaConfig, registry: StreamRegistry, metrics: MediaMetrics, events: EventLog,
                 previews: PreviewRegistry):
        self.cfg, self.registry, self.metrics, self.events = cfg, registry, metrics, events
        self.previews = previews
        self.reconciler: Reconciler | None = None  # with --mediamtx-api
        self.cluster = None  # with --redis-url: cluster.node.ClusterNode
        self.placer = None  # with --redis-url: cluster.routing.Placer
        self.caption_feeds = FeedSlots(cfg)
        self.closing = False  # set on shutdown: open caption feeds end

    # ---------------------------------------------------------------- basics

    async def health(self, request):
        return web.json_response({"status": "ok", "streams": len(self.registry.all())})

    async def ready(self, request):
        """Readiness (a Kubernetes probe): 503 once shutting down, so no new stream is sent here."""
        if self.closing:
            return web.json_response({"ready": False, "draining": True}, status=503)
        return web.json_response({"ready": True})

    async def prom(self, request):
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ---------------------------------------------------------------- streams

    async def create(self, request):
        body = await json_body(request)
        try:
            req = StreamRequest.model_validate(body)
        except ValidationError as exc:
            return json_error(400, "invalid_request", describe_validation_error(exc))
        if self.placer is not None and not forwarded(request):  # cluster: the emptiest replica starts it
            status, body = await self.placer.place(req, self.start_here)
            return web.json_response(body, status=status)
        return await self._start(req)

    async def start_here(self, req: StreamRequest) -> tuple[int, dict]:
        """(status, body) of starting `req` on this replica (the placer's local start)."""
        resp = await self._start(req)
        return resp.status, json.loads(resp.text)

    async def _start(self, req: StreamRequest) -> web.Response:
        try:
            check_delay(req.output_delay_s or self.cfg.output_delay_s, min_silence_cap_ms=self.cfg.min_silence_ms)
        except DelayTooShort as exc:
            return json_error(400, "invalid_request", str(exc))
        try:
            worker, created = await self.registry.start(req)
        except (StreamExists, OwnedElsewhere) as exc:
            return json_error(409, "conflict", str(exc))
        except ClusterUnavailable as exc:
            resp = json_error(503, "unavailable", str(exc))
            resp.headers["Retry-After"] = "2"
            return resp
        except TargetRefused as exc:
            return json_error(400, "invalid_request", str(exc))
        except LimitReached as exc:
            return self._refuse(exc)
        return web.json_response(self._snapshot(worker), status=201 if created else 200)

    def _refuse(self, exc: LimitReached) -> web.Response:
        self.metrics.limit_refusals.labels(exc.limit).inc()
        resp = json_error(exc.status, "limit_reached", str(exc))
        if exc.status == 503:
            resp.headers["Retry-After"] = "5"
        return resp

    def _snapshot(self, worker, request=None) -> dict:
        snap = {**worker.snapshot(), "preview": self.previews.stats(worker.id)}
        return viewer_view(snap) if request is not None and request.get(VIEWER) else snap

    async def list(self, request):
        return web.json_response({"streams": [self._snapshot(w, request) for w in self.registry.all()]})

    def _worker(self, request):
        worker = self.registry.get(request.match_info["id"])
        if worker is None:
            raise web.HTTPNotFound(text=json.dumps({"error": {"code": "not_found",
                                                              "message": f"no stream {request.match_info['id']!r}"}}),
                                   content_type="application/json")
        return worker

    async def get(self, request):
        return web.json_response(self._snapshot(self._worker(request), request))

    async def patch(self, request):
        worker = self._worker(request)
        try:
            change = StreamPatch.model_validate(await json_body(request))
        except ValidationError as exc:
            return json_error(400, "invalid_request", f"{describe_validation_error(exc)} (only mix and duck_gain_db "
                                                  "can change while a stream runs)")
        if change.mix is not None:
            worker.set_mode(change.mix)
        if change.duck_gain_db is not None:
            worker.duck_gain_db = change.duck_gain_db
        await self._save_spec(worker)
        return web.json_response(self._snapshot(worker))

    async def _save_spec(self, worker) -> None:
        """Cluster mode: a replica that takes the stream over starts it as it runs now."""
        if self.cluster is not None:
            await self.cluster.save_spec(worker.id, current_request(worker))

    async def bypass(self, request):
        """Emergency switch to the original audio, effective on the next output frame."""
        worker = self._worker(request)
        worker.set_mode(Mode.PASSTHROUGH)
        await self._save_spec(worker)
        return web.json_response(self._snapshot(worker))

    async def delete(self, request):
        """Stop now; with `?drain=true` first play out what is buffered (up to the output delay)."""
        worker = self._worker(request)
        if self.reconciler is not None:
            self.reconciler.operator_stopped(worker.id)  # not brought back while still published
            if self.cluster is not None:
                await self.cluster.operator_stopped(worker.id)  # by any replica's reconcile
        await self.registry.stop(worker.id, drain=request.query.get("drain", "false").lower() == "true")
        return web.json_response(self._snapshot(worker))

    async def events_handler(self, request):
        try:
            since = int(request.query.get("since", "0"))
            wait = min(30.0, float(request.query.get("wait", "0")))
        except ValueError:
            return json_error(400, "invalid_request", "since must be an integer and wait a number of seconds")
        stream = request.match_info.get("id") or request.query.get("stream")
        events = await self.events.wait_since(since, stream, wait)
        if request.get(VIEWER):
            events = [{**e, "data": viewer_view(e["data"])} for e in events]
        return web.json_response({"events": events, "last_seq": self.events.last_seq})

    # ---------------------------------------------------------------- preview and dashboard

    async def preview(self, request):
        """MJPEG of the dubbed output (first language, or `?lang=`): one decoder however many viewers."""
        worker = self._worker(request)
        langs = list(worker.request.target_languages)
        lang = request.query.get("lang") or langs[0]
        if lang not in langs:
            return json_error(404, "not_found", f"stream {worker.id!r} has no output language {lang!r}; it has {langs}")
        source = worker.request.output_for(lang)
        if source is None:
            return json_error(404, "not_found", f"stream {worker.id!r} has no RTMP/FLV output of {lang!r} to preview")
        if self.previews.viewers(worker.id) >= self.cfg.max_preview_viewers:
            return self._refuse(LimitReached("preview_viewers", f"stream {worker.id!r} has "
                                             f"{self.cfg.max_preview_viewers} preview viewers (--max-preview-viewers)"))
        if self.previews.viewers() >= self.cfg.max_preview_viewers_total:
            return self._refuse(LimitReached("preview_viewers_total", f"{self.cfg.max_preview_viewers_total} preview "
                                             "viewers in total (--max-preview-viewers-total)"))
        try:
            bc, queue = self.previews.subscribe(worker.id, source)
        except BroadcasterStopped as exc:  # shutting down
            return json_error(503, "unavailable", str(exc))
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
        lang = request.query.get("lang")
        if lang and lang not in worker.request.target_languages:
            return json_error(404, "not_found", f"stream {worker.id!r} has no output language {lang!r}")
        query, expires = request.app["links"].sign(path, params={"lang": lang} if lang else None)  # lang is signed
        return web.json_response({"url": f"{path}?{query}", "expires_at": expires})

    # ---------------------------------------------------------------- captions

    def _caption_track(self, request, lang: str):
        worker = self._worker(request)
        track = worker.captions.track(lang)
        if track is None:
            raise web.HTTPNotFound(text=json.dumps({"error": {
                "code": "not_found", "message": f"stream {worker.id!r} has no caption language {lang!r}; "
                                                f"it has {worker.captions.languages}"}}),
                content_type="application/json")
        return worker, track

    async def captions_vtt(self, request):
        """The kept cues of one language as a WebVTT document (players poll it; it grows)."""
        name = request.match_info["name"]
        if not name.endswith(".vtt"):
            return json_error(404, "not_found", f"no caption resource {name!r}; ask for <lang>.vtt or <lang>/events")
        worker, track = self._caption_track(request, name[:-4])
        body = render_webvtt(track.cues())
        return web.Response(text=body, content_type="text/vtt", charset="utf-8",
                            headers={"Cache-Control": "no-cache, no-store"})

    async def captions_events(self, request):
        """Server-Sent Events: each cue of one language as it is added (`event: cue`, `id:` = its seq,
        resumable with `Last-Event-ID` or `?since=`), the output clock (`event: clock`) every few
        seconds and as soon as the output starts or stops playing, `event: end` when the stream goes,
        `event: expired` when the signed link that opened the feed expires."""
        worker, track = self._caption_track(request, request.match_info["lang"])
        try:
            seq = int(request.headers.get("Last-Event-ID") or request.query.get("since", "0"))
        except ValueError:
            return json_error(400, "invalid_request", "since / Last-Event-ID must be an integer (a cue seq)")
        client = client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                                self.cfg.trusted_proxies)
        refused = self.caption_feeds.refusal(worker.id, client)
        if refused is not None:
            return self._refuse(refused)
        expires = request.get(LINK_EXPIRES)  # opened by a signed link: the feed ends with it
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"})

        def left_s() -> float:  # until the next look at alive(): a poll, or less before the link expires
            return CAPTION_POLL_S if expires is None else min(CAPTION_POLL_S, expires - time.time())

        def alive() -> bool:
            transport = request.transport
            return (transport is not None and not transport.is_closing() and not self.closing
                    and self.registry.get(worker.id) is worker and not worker.done and left_s() > 0)

        def clock() -> bytes:
            clock_ms, sent["playing"] = worker.output_clock()
            data = {"clock_ms": round(clock_ms, 1), "playing": sent["playing"]}
            return b"event: clock\ndata: %s\n\n" % json.dumps(data).encode()

        sent = {"playing": False}

        with self.caption_feeds.hold(worker.id, client):
            try:
                await resp.prepare(request)
                await resp.write(b"retry: 3000\n\n" + clock())
                last_clock = time.monotonic()
                while alive():
                    cues = await track.wait_since(seq, left_s())
                    out = b""
                    for cue in cues:
                        seq = max(seq, cue.seq)
                        out += b"id: %d\nevent: cue\ndata: %s\n\n" % (
                            cue.seq, json.dumps(cue.as_json(track.language)).encode())
                    if time.monotonic() - last_clock >= CAPTION_CLOCK_S or worker.output_clock()[1] != sent["playing"]:
                        out += clock()
                        last_clock = time.monotonic()
                    if out:
                        await resp.write(out)
                if request.transport is not None and not request.transport.is_closing():
                    expired = expires is not None and left_s() <= 0
                    await resp.write(b"event: expired\ndata: {}\n\n" if expired else b"event: end\ndata: {}\n\n")
            except (ConnectionError, RuntimeError) as exc:  # the reader went away mid-write
                log.debug("caption feed of %s left: %r", worker.id, exc)
        return resp

    async def captions_link(self, request):
        """Signed URLs of one language's WebVTT document and SSE feed, for a `<track>` or an
        `EventSource` (they cannot send the token), valid for minutes."""
        worker, track = self._caption_track(request, request.match_info["lang"])
        base = f"/v1/streams/{worker.id}/captions/{track.language}"
        links, expires = {}, 0
        for key, path in (("vtt", f"{base}.vtt"), ("events", f"{base}/events")):
            query, expires = request.app["links"].sign(path)
            links[key] = f"{path}?{query}"
        return web.json_response({**links, "expires_at": expires})

    async def hls(self, request):
        """A file of the stream's HLS output (master, variant and subtitle playlists, segments)."""
        worker = self._worker(request)
        found = servable(worker.hls_dir, request.match_info["path"]) if worker.hls_dir else None
        if found is None:
            return json_error(404, "not_found", f"stream {worker.id!r} has no HLS file {request.match_info['path']!r}")
        path, content_type = found
        try:  # small files (playlists, 2 s segments); a segment may leave the window meanwhile
            body = await asyncio.get_running_loop().run_in_executor(None, read_servable, path)
        except FileNotFoundError:
            return json_error(404, "not_found", "that segment has left the live window")
        except OSError:  # replaced by a symlink or something other than a file since the check
            return json_error(404, "not_found", f"stream {worker.id!r} has no HLS file {request.match_info['path']!r}")
        # Segments are for the bearer of a token: a shared cache (a proxy) must not keep them.
        cache = "no-cache, no-store" if path.endswith(".m3u8") else "private, max-age=60"
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": cache})

    async def hls_js(self, request):
        """The hls.js build the dashboard's player loads (open, like the page: it is a public library)."""
        if not self.cfg.hls_js:
            return json_error(404, "not_found", "no hls.js configured (--hls-js)")
        body = await asyncio.get_running_loop().run_in_executor(None, _read_file, self.cfg.hls_js)
        return web.Response(body=body, headers={"Content-Type": "text/javascript; charset=utf-8",
                                                "Cache-Control": "max-age=3600"})

    async def dashboard(self, request):
        return web.Response(text=DASHBOARD_HTML, content_type="text/html", headers={"Cache-Control": "no-cache"})


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def make_app(cfg: MediaConfig, registry: StreamRegistry, metrics: MediaMetrics, events: EventLog,
             previews: PreviewRegistry | None = None) -> web.Application:
    node = None
    if cfg.redis_url:  # several replicas: leases, placement, forwarding, failover (cluster/)
        from ..cluster.failover import Failover
        from ..cluster.node import ClusterNode
        from ..cluster.routing import Placer, cluster_middleware
        node = ClusterNode(cfg, registry, metrics, events)
        registry.ownership = node
    middlewares = [auth_middleware] + ([cluster_middleware(node, registry)] if node else [])
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app["config"] = cfg
    app[ANSWERED_HOSTS] = answered_hosts(cfg.allowed_hosts, [node.url] if node else [])
    app["links"] = LinkSigner(cluster_key(cfg.api_token) if node else None)
    previews = previews or PreviewRegistry()
    app["previews"] = previews
    registry.on_removed.append(previews.forget)
    api = Api(cfg, registry, metrics, events, previews)
    hooks = PublishHooks(cfg, registry, events)
    if cfg.mediamtx_api:
        api.reconciler = hooks.reconciler = Reconciler(cfg.mediamtx_api, registry, events,
                                                       lambda path: hooks.request_for(path, ""),
                                                       interval_s=cfg.reconcile_interval_s,
                                                       credentials=(cfg.rtmp_user, cfg.rtmp_pass or "")
                                                       if cfg.rtmp_user else None)
    if node is not None:
        api.cluster, api.placer = node, Placer(node)
        hooks.cluster = node
        hooks.place = lambda req: api.placer.place(req, api.start_here)
        if api.reconciler is not None:
            api.reconciler.cluster, api.reconciler.place = node, hooks.place
    for name, value in (("streams", cfg.max_streams), ("languages", cfg.max_languages),
                        ("preview_viewers", cfg.max_preview_viewers),
                        ("preview_viewers_total", cfg.max_preview_viewers_total), ("body_bytes", MAX_BODY_BYTES),
                        ("caption_feeds", cfg.max_caption_feeds),
                        ("caption_feeds_per_client", cfg.max_caption_feeds_per_client),
                        ("caption_feeds_total", cfg.max_caption_feeds_total),
                        ("events_kept", events.maxlen)):
        metrics.limit.labels(name).set(value)
    r = app.router
    r.add_get("/", api.dashboard)
    r.add_get("/dashboard", api.dashboard)
    r.add_get("/assets/hls.min.js", api.hls_js)
    r.add_get("/health", api.health)
    r.add_get("/ready", api.ready)
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
    r.add_get("/v1/streams/{id}/captions/{name}", api.captions_vtt)  # {lang}.vtt
    r.add_get("/v1/streams/{id}/captions/{lang}/events", api.captions_events)
    r.add_post("/v1/streams/{id}/captions/{lang}/link", api.captions_link)
    r.add_get("/v1/streams/{id}/hls/{path:.+}", api.hls)
    r.add_get("/v1/events", api.events_handler)
    r.add_post("/v1/hooks/mediamtx/ready", hooks.mediamtx_ready)
    r.add_post("/v1/hooks/mediamtx/not-ready", hooks.mediamtx_not_ready)
    r.add_post("/v1/hooks/nginx/on_publish", hooks.nginx_on_publish)
    r.add_post("/v1/hooks/nginx/on_publish_done", hooks.nginx_on_publish_done)

    async def _startup(app):
        if node is not None:
            await node.start(Failover(node))
        if api.reconciler is not None:
            api.reconciler.start()

    async def _shutdown(app):
        if node is not None:
            node.drain()  # no new streams or takeovers here from now on
        api.closing = True  # open caption feeds end within CAPTION_POLL_S
        if api.reconciler is not None:
            await api.reconciler.close()
        await previews.close()  # ends the open preview responses, which would otherwise hold up shutdown

    async def _cleanup(app):
        await previews.close()
        await registry.close()  # cluster mode: hands every stream over (the leases are renewed until then)
        if node is not None:
            await node.close()

    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app
