"""Where the API token is checked: `auth_middleware`, in front of every route.

Every /v1 request needs `Authorization: Bearer <token>` (MEDIA_API_TOKEN, or the one generated at
start). Two kinds of caller cannot send a header: the publish hooks (nginx-rtmp, MediaMTX) pass
`?token=`, and the dashboard's `<img>` preview and caption `EventSource` (or a `<track>`) use a
short-lived signed link from `POST /v1/streams/{id}/preview-link` or
`POST /v1/streams/{id}/captions/{lang}/link` (`signed_links.py`), so the token itself never sits in
a URL that a browser keeps; a caption feed opened by a link ends when the link expires. When
`--allowed-hosts` is set, other Host names are refused on every route (DNS rebinding), except
this replica's own advertised host (`answered_hosts`: what its peers forward to); browser
requests from another site (a foreign `Origin`) are refused before the token is looked at.
/health, /ready, /metrics and the dashboard page (which holds no data) need no token.

A hook-only token (MEDIA_HOOK_TOKEN) is what the RTMP server holds: its hook processes (and anyone
who can read their environment or command line) see it, so it may start and stop dubbing through
`/v1/hooks/*` and nothing else (403 `forbidden` anywhere else).

A second, read-only token (MEDIA_VIEWER_TOKEN) is for people who watch (a player, a monitoring
page, the dashboard of someone who must not change a stream): `viewer_may` says what it may do,
which is reading and asking for signed read links; anything else is 403 `forbidden` (not 401:
the token is valid, the request is not one it allows). What it reads has every URL reduced to
`scheme://host` (`redaction.viewer_view`): no stream keys, passphrases or paths.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

from .bodies import json_error

OPEN_PATHS = ("/health", "/ready", "/metrics")
VIEWER = web.RequestKey("viewer", bool)  # set on a request made with the viewer token
LINK_EXPIRES = web.RequestKey("link_expires", int)  # unix s: set on a request opened by a signed link
ANSWERED_HOSTS = web.AppKey("answered_hosts", frozenset)  # Host names answered; empty = any (no guard)


# RTMP servers' hooks cannot send a header and may carry the token in the query string; <img>
# previews open with a signed link instead (`signed_links.py`); every other /v1 route takes the
# token only as a bearer header.
HOOK_PREFIX = "/v1/hooks/"  # form or raw-query bodies from RTMP servers; the token may be in the URL
# The routes a signed link may open: the preview and a caption document or feed (a `<track>`, an
# `EventSource`); each link names its own path (signed_links.py).
SIGNED_LINK_PATH = re.compile(r"^/v1/streams/[^/]+/(preview\.mjpg|captions/[^/]+\.vtt|captions/[^/]+/events)$")
BODY_METHODS = ("POST", "PUT", "PATCH")
READ_METHODS = ("GET", "HEAD")
# POSTs that change nothing: each mints a signed link to something the caller may already read.
LINK_PATH = re.compile(r"^/v1/streams/[^/]+/(preview-link|captions/[^/]+/link)$")


def viewer_may(method: str, path: str) -> bool:
    """What the viewer token allows: every read of /v1 (no route changes state on GET) and the
    signed-link POSTs, never a hook (hooks start and stop streams)."""
    if path.startswith(HOOK_PREFIX):
        return False
    return method in READ_METHODS or (method == "POST" and LINK_PATH.match(path) is not None)


def answered_hosts(allowed: Iterable[str], own_urls: Iterable[str] = ()) -> frozenset[str]:
    """The Host names the service answers to: `--allowed-hosts` and the host of each URL its
    peers reach it at (a cluster replica's advertised URL, by default its container address), so
    that a request another replica forwards is never refused. Empty when `allowed` is: no guard."""
    hosts = {h.lower() for h in allowed}
    if not hosts:
        return frozenset()
    hosts |= {(urlsplit(url).hostname or "").lower() for url in own_urls} - {""}
    return frozenset(hosts)


def _matches(supplied: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(supplied.encode(), token.encode())


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
    cfg = request.app["config"]
    # Every route, the open ones too: a page whose name was rebound to this address sends that
    # name as Host, and /metrics is worth reading.
    hosts = request.app[ANSWERED_HOSTS]
    if hosts and (request.host or "").rsplit(":", 1)[0].strip("[]").lower() not in hosts:
        return json_error(403, "forbidden", "Host is not one of --allowed-hosts")
    if request.path in OPEN_PATHS or not request.path.startswith("/v1/"):
        return await handler(request)
    if _origin_is_foreign(request):
        return json_error(403, "forbidden", "cross-origin requests are refused (Origin does not match Host)")
    token: str = cfg.api_token
    supplied = request.headers.get("Authorization", "")
    if supplied.startswith("Bearer "):
        supplied = supplied[7:]
    elif request.path.startswith(HOOK_PREFIX):
        supplied = request.query.get("token", "")
    elif SIGNED_LINK_PATH.match(request.path) and "sig" in request.query:
        if not request.app["links"].verify(request.path, request.query.get("exp", ""), request.query["sig"],
                                           params=request.query.items()):
            return json_error(401, "unauthorized", "link expired or not valid; ask POST "
                              "/v1/streams/{id}/preview-link (or .../captions/{lang}/link) for a new one")
        request[LINK_EXPIRES] = int(request.query["exp"])  # a caption feed ends then
        return await handler(request)
    else:
        supplied = ""
    if _matches(supplied, token):
        pass
    elif _matches(supplied, cfg.hook_token):
        if not request.path.startswith(HOOK_PREFIX):
            return json_error(403, "forbidden", f"the hook token (MEDIA_HOOK_TOKEN) is good for {HOOK_PREFIX}* "
                              f"only: {request.method} {request.path} needs the API token (MEDIA_API_TOKEN)")
    elif not _matches(supplied, cfg.viewer_token):
        return json_error(401, "unauthorized", "missing or wrong bearer token (MEDIA_API_TOKEN)")
    elif not viewer_may(request.method, request.path):
        return json_error(403, "forbidden", f"the viewer token (MEDIA_VIEWER_TOKEN) is read-only: "
                          f"{request.method} {request.path} needs the API token (MEDIA_API_TOKEN)")
    else:
        request[VIEWER] = True  # answers show it URLs as scheme://host only (redaction.viewer_view)
    if (request.method in BODY_METHODS and request.can_read_body and not request.path.startswith(HOOK_PREFIX)
            and request.content_type != "application/json"):
        return json_error(415, "unsupported_media_type",
                          f"request bodies must be application/json, got {request.content_type or 'none'}")
    return await handler(request)
