"""Publish hooks: the RTMP server says a stream was published (start dubbing it) or went away.

nginx-rtmp posts `on_publish` / `on_publish_done` forms; MediaMTX's `runOnReady` / `runOnNotReady`
post the publisher's raw query with the path in the URL. `live/<name>/in` becomes stream `<name>`,
dubbed to `live/<name>/out` (or `/<lang>` per language) on the same server; the query chooses
languages, source and mix. A publish is never refused for a path that is not an input.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, unquote_plus, urlencode

from aiohttp import web
from livedub_protocol import describe_validation_error
from pydantic import ValidationError

from ..config import MediaConfig, StreamRequest
from ..events import EventLog
from .bodies import json_body, json_error
from .registry import StreamExists, StreamRegistry

log = logging.getLogger(__name__)


def input_path(path: str) -> tuple[str, str] | None:
    """`<app>/<name...>/in` -> (app, name); None for anything else (outputs, other paths)."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[-1] != "in":
        return None
    return parts[0], "/".join(parts[1:-1])


def stream_id_of(name: str) -> str:
    return name.replace("/", "-")


def mediamtx_query(body: str) -> str:
    """The publisher's query from what a MediaMTX hook posted as `$MTX_QUERY`.

    MediaMTX up to 1.18.0 passes the raw query (`lang=es&user=...`); from 1.18.1 on it passes it
    URL-escaped as a whole (`lang%3Des%26user%3D...`: no `=` and no `&` left), which is decoded once
    here. A raw query without `=` or `&` holds no parameter either way.
    """
    if "=" in body or "&" in body:
        return body
    return unquote_plus(body)


def with_credentials(url: str, user: str | None, password: str | None) -> str:
    """`url` with MediaMTX's `?user=...&pass=...` (how an RTMP client passes credentials to it)."""
    if user is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'user': user, 'pass': password or ''})}"


class PublishHooks:
    def __init__(self, cfg: MediaConfig, registry: StreamRegistry, events: EventLog):
        self.cfg, self.registry, self.events = cfg, registry, events
        self.reconciler = None  # with --mediamtx-api: told when a stream is published again
        self.cluster = None  # with --redis-url: cluster.node.ClusterNode
        self.place = None  # with --redis-url: request -> (status, body), started on the emptiest replica

    def request_for(self, path: str, query: str, nginx: bool = False) -> StreamRequest | None:
        """`live/<name>/in` -> a request that dubs it to `live/<name>/out` on the same server.

        nginx-rtmp needs names with slashes addressed as `live/_definst_/<name>` (RTMP clients
        split a URL at its last slash); MediaMTX takes the plain path.
        """
        parsed = input_path(path)
        if parsed is None:
            return None
        app, name = parsed
        q = parse_qs(query or "")
        langs = [t for v in q.get("lang", []) + q.get("langs", []) for t in v.split(",") if t] \
            or list(self.cfg.default_target_languages)
        base = f"{self.cfg.rtmp_base_url.rstrip('/')}/{app}/{'_definst_/' if nginx else ''}{name}"
        output = f"{base}/out" if len(langs) == 1 else f"{base}/{{lang}}"
        user, password = self.cfg.rtmp_user, self.cfg.rtmp_pass
        return StreamRequest(id=stream_id_of(name), input_url=with_credentials(f"{base}/in", user, password),
                             output_url=with_credentials(output, user, password),
                             source_language=q.get("source", [self.cfg.default_source_language])[0],
                             target_languages=langs, mix=q.get("mix", [self.cfg.default_mix])[0])

    async def _hook_start(self, path: str, query: str, nginx: bool = False) -> web.Response:
        try:
            req = self.request_for(path, query, nginx)
        except ValidationError as exc:
            return json_error(400, "invalid_request", describe_validation_error(exc))
        if req is None:
            return web.json_response({"ignored": path})  # e.g. our own outputs: never refuse a publish
        if self.place is not None:
            return await self._hook_start_cluster(path, req)
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

    async def _hook_start_cluster(self, path: str, req: StreamRequest) -> web.Response:
        """Cluster mode: the stream starts on the replica with the most headroom (or is found
        where it runs); a conflict never refuses the publish, as above."""
        status, body = await self.place(req)
        if status not in (200, 201, 409):
            return web.json_response(body, status=status)
        stream_id, created = req.stream_id(), status == 201
        if self.reconciler is not None:
            self.reconciler.published_again(stream_id)
            await self.cluster.published_again(stream_id)
        self.events.publish(stream_id, "hook_publish", {"path": path, "created": created,
                                                        "replica": body.get("replica")})
        return web.json_response({"id": stream_id, "created": created, "replica": body.get("replica")})

    async def _hook_stop(self, path: str) -> web.Response:
        parsed = input_path(path)
        if parsed is None:
            return web.json_response({"ignored": path})
        stream_id = stream_id_of(parsed[1])
        worker = self.registry.get(stream_id)
        if worker is not None:
            # The publisher may come back: the worker keeps retrying its input for a while and
            # stops by itself if it does not (see worker.INPUT_LINGER_S).
            self.events.publish(stream_id, "hook_unpublish", {"path": path})
        return web.json_response({"id": stream_id, "known": worker is not None})

    @staticmethod
    async def _mediamtx_hook_args(request) -> tuple[str, str]:
        """The path and the publisher's raw query of a MediaMTX hook.

        The shipped hook script (deploy/mediamtx/livedub-hook.sh) posts `$MTX_QUERY` as the body
        and names the path in the URL (`?path=...`): nothing is pasted into a JSON template, so a
        query holding `"` cannot add or replace a field. The JSON body `{"path", "query"}` of older
        configs is still read, with duplicate keys refused.
        """
        if request.content_type == "application/json":
            body = await json_body(request)
            return str(body.get("path", "")), str(body.get("query", ""))
        return request.query.get("path", ""), mediamtx_query(await request.text())

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
