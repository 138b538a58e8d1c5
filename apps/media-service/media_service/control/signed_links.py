"""Short-lived signed links for routes that cannot send a header (the dashboard's preview `<img>`).

Why: a URL with the API token in it ends up in proxy logs and browser history, where it keeps
working for ever. A signed link names one path, expires after `LINK_TTL_S`, is made with a key that
exists only in this process (a restart voids every link) and cannot be turned into the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

LINK_TTL_S = 300.0


class LinkSigner:
    def __init__(self, key: bytes | None = None, ttl_s: float = LINK_TTL_S):
        self._key = key or secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _mac(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, now: float | None = None) -> tuple[str, int]:
        """The query string (`exp=...&sig=...`) that opens `path` until the returned expiry (unix s)."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        return f"exp={expires}&sig={self._mac(path, expires)}", expires

    def verify(self, path: str, exp: str, sig: str, now: float | None = None) -> bool:
        try:
            expires = int(exp)
        except ValueError:
            return False
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(sig.encode(), self._mac(path, expires).encode())
