"""Short-lived signed links for routes that cannot send a header (the dashboard's preview `<img>`,
a caption `<track>` or `EventSource`).

Why: a URL with the API token in it ends up in proxy logs and browser history, where it keeps
working for ever. A signed link names one path and the query parameters that choose what it
shows (`SIGNED_PARAMS`: the preview's `lang`), expires after `LINK_TTL_S` and cannot be turned into
the token. Alone, a replica signs with a key that exists only in this process (a restart voids every
link); in a cluster every replica derives the same key from the API token they share
(`cluster_key`), because a link made by one replica is opened through whichever replica the
entry point picks, and still has to open after its stream moved to another replica.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from urllib.parse import urlencode

LINK_TTL_S = 300.0
# Query parameters a link fixes: adding, removing or changing one voids its signature (other
# parameters, such as a caption feed's `since`, stay free).
SIGNED_PARAMS = ("lang",)


def signed_params(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of a query that the signature covers, in a canonical order (duplicates kept)."""
    return sorted((k, v) for k, v in items if k in SIGNED_PARAMS)


def cluster_key(api_token: str) -> bytes:
    """The link key of every replica that shares `api_token`; one-way, so a link does not reveal
    the token, and changing the token voids every link."""
    return hmac.new(api_token.encode(), b"livedub signed links v1", hashlib.sha256).digest()


class LinkSigner:
    def __init__(self, key: bytes | None = None, ttl_s: float = LINK_TTL_S):
        self._key = key or secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _mac(self, path: str, expires: int, params: list[tuple[str, str]]) -> str:
        message = "\n".join([path, str(expires), *(f"{k}={v}" for k, v in params)])
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, now: float | None = None, params: dict[str, str] | None = None) -> tuple[str, int]:
        """The query string (`exp=...&sig=...`, then `params`) that opens `path` with those
        parameters until the returned expiry (unix s)."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        pairs = signed_params((params or {}).items())
        if len(pairs) != len(params or {}):
            raise ValueError(f"only {SIGNED_PARAMS} can be part of a link")
        query = f"exp={expires}&sig={self._mac(path, expires, pairs)}"
        return (f"{query}&{urlencode(pairs)}" if pairs else query), expires

    def verify(self, path: str, exp: str, sig: str, now: float | None = None,
               params: Iterable[tuple[str, str]] = ()) -> bool:
        """Whether `sig` opens `path` with these query pairs (every pair of the request's query:
        the signed ones are picked here) at `now`."""
        try:
            expires = int(exp)
        except ValueError:
            return False
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(sig.encode(), self._mac(path, expires, signed_params(params)).encode())
