"""Blocking JSON-over-HTTPS helper for the cloud engines (stdlib only, never logs the key)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from .base import TranslationError


def post_json(
    url: str, body: dict[str, Any], *, headers: dict[str, str], timeout: float, engine: str, redact: str = ""
) -> dict[str, Any]:
    """POST ``body`` as JSON and return the decoded JSON answer; failures -> TranslationError.

    ``redact`` is a secret (the API key) that must never appear in an error message.
    """

    def safe(s: str) -> str:
        return s.replace(redact, "***") if redact else s

    if not url.lower().startswith(("https://", "http://")):
        raise TranslationError(f"{engine}: only http(s) URLs are used, got {url.split(':', 1)[0]!r}")
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310  # scheme checked above
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip() if exc.fp else ""
        raise TranslationError(
            safe(f"{engine}: HTTP {exc.code} {exc.reason}: {detail}".rstrip(": "))
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TranslationError(safe(f"{engine}: request failed: {reason}")) from None
    try:
        return json.loads(raw)
    except ValueError:
        raise TranslationError(f"{engine}: response is not JSON") from None
