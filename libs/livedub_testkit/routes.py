"""Every route of an aiohttp app as a concrete request, for tests that call each one (token rules)."""

from __future__ import annotations

import re

# A value for each path variable of the media-service routes (no stream exists: a read that passes is a 404).
SAMPLES = {"id": "nostream", "name": "es.vtt", "lang": "es", "path": "master.m3u8"}


def every_route(app, samples: dict[str, str] = SAMPLES) -> list[tuple[str, str]]:
    """(method, path) of each route, its path variables filled from `samples`."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        template = info.get("path") or info.get("formatter")
        if template and route.method != "*":
            out.append((route.method, re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: samples[m[1]], template)))
    return out
