"""Google Cloud Translation v2 engine (optional): enabled by ``GOOGLE_TRANSLATE_API_KEY``.

Uses the REST API with stdlib ``urllib`` (no SDK dependency); the key goes in the query string as
the v2 API requires, and is redacted from every error message. Thread-safe (no shared state).
"""

from __future__ import annotations

import html
import os
import urllib.parse

from ._http import post_json
from .base import TranslationError

LANGUAGES = {
    "af", "ar", "bg", "bn", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "eu", "fa", "fi",
    "fr", "ga", "gl", "he", "hi", "hr", "hu", "id", "is", "it", "ja", "ko", "lt", "lv", "nl", "no",
    "pl", "pt", "ro", "ru", "sk", "sl", "sr", "sv", "sw", "ta", "th", "tr", "uk", "ur", "vi", "zh",
}  # fmt: skip


class GoogleTranslator:
    """Google Translate v2 ``/language/translate/v2``."""

    remote = True

    def __init__(
        self, api_key: str | None = None, *, base_url: str | None = None, timeout: float = 5.0
    ) -> None:
        key = api_key or os.environ.get("GOOGLE_TRANSLATE_API_KEY", "")
        if not key:
            raise TranslationError("Google engine needs an API key (set GOOGLE_TRANSLATE_API_KEY)")
        self._key = key
        self.base_url = (
            base_url or os.environ.get("GOOGLE_TRANSLATE_API_URL") or "https://translation.googleapis.com"
        ).rstrip("/")
        self.timeout = timeout
        self.name = "google"

    def pairs(self) -> set[tuple[str, str]]:
        return {(s, t) for s in LANGUAGES for t in LANGUAGES if s != t}

    def translate(self, text: str, source: str, target: str, *, timeout: float | None = None) -> str:
        if (source, target) not in self.pairs():
            raise TranslationError(f"google: unsupported pair {source}->{target}")
        if not text.strip():
            return ""
        url = f"{self.base_url}/language/translate/v2?" + urllib.parse.urlencode({"key": self._key})
        data = post_json(
            url,
            {"q": text, "source": source, "target": target, "format": "text"},
            headers={},
            timeout=self.timeout if timeout is None else max(0.05, min(self.timeout, timeout)),
            engine="google",
            redact=self._key,
        )
        try:
            out = str(data["data"]["translations"][0]["translatedText"])
        except (KeyError, IndexError, TypeError):
            raise TranslationError(
                "google: unexpected response (no data.translations[0].translatedText)"
            ) from None
        return html.unescape(out)  # harmless for format=text; undoes entities if a proxy sends html
