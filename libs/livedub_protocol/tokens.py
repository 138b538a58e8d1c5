"""Shared-secret checks both services apply at start: a copied example file must not run.

The deploy example (`deploy/.env.example`) ships `change-me-...` placeholders; they satisfy
"is set" checks, so every service also refuses them, and anything shorter than 16 characters.
"""

from __future__ import annotations

MIN_TOKEN_CHARS = 16
_PLACEHOLDERS = ("change-me", "changeme", "replace-me", "your-token", "example", "placeholder", "secret")


def weak_token_reason(token: str) -> str | None:
    """Why `token` must not be used as a shared secret, or None if it may."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"shorter than {MIN_TOKEN_CHARS} characters"
    lowered = token.lower()
    for word in _PLACEHOLDERS:
        if word in lowered:
            return f"contains the placeholder {word!r} (generate one, e.g. `openssl rand -hex 24`)"
    if len(set(token)) < 6:
        return "too few distinct characters"
    return None
