"""Requests that another replica must answer: forwarded over HTTP with the caller's own
credentials, marked so that the receiver answers itself instead of forwarding again."""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

FORWARDED = "X-Livedub-Forwarded"  # set on a forwarded request: the receiver acts on it locally
TIMEOUT = aiohttp.ClientTimeout(total=10)


def forwarded(request: web.Request) -> bool:
    return request.headers.get(FORWARDED) == "1"


async def call(session: aiohttp.ClientSession, method: str, url: str, *, authorization: str | None,
               body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) of one forwarded request; raises aiohttp.ClientError / OSError."""
    headers = {FORWARDED: "1"}
    if authorization:
        headers["Authorization"] = authorization
    if content_type:
        headers["Content-Type"] = content_type
    async with session.request(method, url, data=body, headers=headers, timeout=TIMEOUT,
                               allow_redirects=False) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "application/json")


async def relay(session: aiohttp.ClientSession, request: web.Request, base_url: str) -> web.Response:
    """The request (method, path, query, body) as answered by the replica at `base_url`."""
    body = await request.read() if request.can_read_body else None
    status, data, ctype = await call(session, request.method, base_url.rstrip("/") + request.path_qs,
                                     authorization=request.headers.get("Authorization"), body=body,
                                     content_type=request.headers.get("Content-Type"))
    return web.Response(status=status, body=data, headers={"Content-Type": ctype})


def json_of(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
