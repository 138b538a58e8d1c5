"""URLs and messages without secrets: every copy of a URL that leaves the process goes through here.

Userinfo (`rtmp://user:pass@host`) and query values (MediaMTX `?user=&pass=`, srt `passphrase=`)
become `***` in snapshots, events, logs, ffmpeg error texts and relay stderr.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`url` without secrets: userinfo replaced by `***`, every query value replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        query = "&".join(f"{kv.split('=', 1)[0]}=***" if "=" in kv else kv for kv in re.split(r"[&;]", query))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """`text` with every URL in it passed through `redact_url` (for ffmpeg messages and labels)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
