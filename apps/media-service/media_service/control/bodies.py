"""JSON request bodies and error answers of the REST API: size limit, strict parsing, one error shape."""

from __future__ import annotations

import json

from aiohttp import web

MAX_BODY_BYTES = 64 * 1024  # the largest legal StreamRequest is under 10 KiB


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """`{"path": "a", "path": "b"}` is ambiguous (and the classic way to smuggle a field past a
    template that pastes text into JSON): refused instead of letting the last one win."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


async def json_body(request: web.Request) -> dict:
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


def json_error(status: int, code: str, message: str) -> web.Response:
    """The API's error body: `{"error": {"code", "message"}}`."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
