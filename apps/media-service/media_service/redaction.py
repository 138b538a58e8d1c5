"""URLs and messages without secrets: every copy of a URL that leaves the process goes through here.

`redact_url` (every caller: snapshots, events, logs, ffmpeg error texts, relay stderr): userinfo
(`rtmp://user:pass@host`), every query value (MediaMTX `?user=&pass=`, srt `passphrase=`), the
path after its first segment (`rtmp://host/live2/<stream key>`: the RTMP stream name after the
application is the key at most services) and the fragment become `***`.

`viewer_view` (what the read-only viewer token is shown): every URL reduced to `scheme://host`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
HIDDEN = "***"
# Fields of snapshots and events that hold a URL (or a map of them) rather than free text.
_URL_KEYS = ("url", "input_url")
_URL_MAP_KEYS = ("outputs",)


def redact_url(url: str) -> str:
    """`url` without secrets: userinfo, query values, the path after its first segment and the
    fragment replaced by `***` (a local path is kept: it holds no credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc, path = parts.netloc, parts.path
    if "@" in netloc:
        netloc = f"{HIDDEN}@" + netloc.rsplit("@", 1)[1]
    if netloc:
        first, sep, tail = path.lstrip("/").partition("/")
        if tail:
            path = f"/{first}{sep}{HIDDEN}"
    query = parts.query
    if query:
        query = "&".join(f"{kv.split('=', 1)[0]}={HIDDEN}" if "=" in kv else kv for kv in re.split(r"[&;]", query))
    fragment = HIDDEN if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact(text: str) -> str:
    """`text` with every URL in it passed through `redact_url` (for ffmpeg messages and labels)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of `url`, nothing else (`file://` for a local path)."""
    if url.startswith("/"):
        return "file://"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


def viewer_view(value, key: str = ""):
    """A copy of a snapshot or an event's data for the viewer token: URL fields (`url`,
    `input_url`, the `outputs` map) become `scheme://host`, and so does every URL inside text
    (an error message, a reason)."""
    if isinstance(value, dict):
        if key in _URL_MAP_KEYS:
            return {k: url_origin(v) if isinstance(v, str) else viewer_view(v, k) for k, v in value.items()}
        return {k: viewer_view(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [viewer_view(v) for v in value]
    if isinstance(value, str):
        if key in _URL_KEYS:
            return url_origin(value)
        return _URL_IN_TEXT.sub(lambda m: url_origin(m.group(0)), value)
    return value
