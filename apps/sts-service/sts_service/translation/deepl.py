"""DeepL cloud engine (optional): enabled by ``DEEPL_API_KEY``; higher quality, needs the network.

Uses the v2 REST API with stdlib ``urllib`` (no SDK dependency). Free-tier keys end in ``:fx``
and are sent to api-free.deepl.com unless a base URL is given. Thread-safe (no shared state).
"""

from __future__ import annotations

import os

from ._http import post_json
from .base import Context, TranslationError

MAX_CONTEXT_CHARS = 1000  # of the stream's preceding speech sent as `context` (not billed, not translated)

# DeepL target codes that need a regional variant.
_TARGET_OVERRIDES = {"en": "EN-US", "pt": "PT-PT"}
LANGUAGES = {
    "ar", "bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "hu", "id", "it", "ja", "ko",
    "lt", "lv", "nb", "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sv", "tr", "uk", "zh",
}  # fmt: skip


class DeepLTranslator:
    """DeepL API v2 ``/v2/translate``; the stream's preceding speech goes in ``context``."""

    takes_context = True
    remote = True

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 5.0,
        formality: str | None = None,
    ) -> None:
        key = api_key or os.environ.get("DEEPL_API_KEY", "")
        if not key:
            raise TranslationError("DeepL engine needs an API key (set DEEPL_API_KEY)")
        self._key = key
        default = "https://api-free.deepl.com" if key.endswith(":fx") else "https://api.deepl.com"
        self.base_url = (base_url or os.environ.get("DEEPL_API_URL") or default).rstrip("/")
        self.timeout = timeout
        self.formality = formality
        self.name = "deepl"

    def pairs(self) -> set[tuple[str, str]]:
        return {(s, t) for s in LANGUAGES for t in LANGUAGES if s != t}

    def translate(self, text: str, source: str, target: str, *, context: Context | None = None,
                  timeout: float | None = None) -> str:
        if (source, target) not in self.pairs():
            raise TranslationError(f"deepl: unsupported pair {source}->{target}")
        if not text.strip():
            return ""
        body: dict[str, object] = {
            "text": [text],
            "source_lang": source.upper(),
            "target_lang": _TARGET_OVERRIDES.get(target, target.upper()),
        }
        if self.formality:
            body["formality"] = self.formality
        if context and context.source_text():
            body["context"] = context.source_text()[-MAX_CONTEXT_CHARS:]
        data = post_json(
            f"{self.base_url}/v2/translate",
            body,
            headers={"Authorization": f"DeepL-Auth-Key {self._key}"},
            timeout=self.timeout if timeout is None else max(0.05, min(self.timeout, timeout)),
            engine="deepl",
            redact=self._key,
        )
        try:
            return str(data["translations"][0]["text"])
        except (KeyError, IndexError, TypeError):
            raise TranslationError("deepl: unexpected response (no translations[0].text)") from None
