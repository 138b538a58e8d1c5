"""Where the STS token is checked: constant-time comparison of the client's `auth.token`."""

from __future__ import annotations

import hmac
from typing import Any


def token_ok(expected: str | None, auth: Any) -> bool:
    """True when no token is required, or the client's auth payload carries the right one."""
    if expected is None:
        return True
    supplied = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(supplied, str):
        return False
    return hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8"))
