"""Checks on a transcription decoded from a shortened encoder window.

Whisper was trained on 30 s windows. Given a shorter one it can lose track of where the audio
ends and repeat itself ("and so my fellow America and so my fellow America ..."). These pure
functions say when a result is suspect, so that one fragment (and only that one) is decoded
again with the full window.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence

# A news read is ~3 words/s, ~1.3 tokens a word; 8 tokens/s leaves room for fast speakers.
TOKENS_PER_SECOND = 8.0
TOKEN_BUDGET_SLACK = 8


def token_budget(duration_s: float) -> int:
    """The most tokens a fragment of this length can honestly produce."""
    return int(math.ceil(duration_s * TOKENS_PER_SECOND)) + TOKEN_BUDGET_SLACK


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def repeated_span(tokens: Sequence[int], min_len: int = 3) -> tuple[int, int] | None:
    """(start, length) of a run of >= min_len tokens that is immediately repeated, else None.

    "A B C D A B C" -> the repeat of "A B C" at 4. Looks for the earliest such repeat so that a loop
    is caught from its first turn.
    """
    n = len(tokens)
    for length in range(min_len, n // 2 + 1):
        for start in range(0, n - 2 * length + 1):
            if tokens[start:start + length] == tokens[start + length:start + 2 * length]:
                return start, length
    # A loop cut by the token budget: the tail repeats an earlier stretch of >= 2 * min_len tokens.
    for length in range(2 * min_len, n // 2 + 1):
        tail = list(tokens[n - length:])
        for start in range(0, n - 2 * length + 1):
            if list(tokens[start:start + length]) == tail:
                return start, length
    return None


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()


def restarted(text: str) -> bool:
    """True when a later sentence begins the first one again: "Farmers in the south are worried.
    Farmers in the". tiny.en does this on a short window when it misses the end of the audio; in a
    1-4 s fragment of real speech a sentence that opens with the first one's 3 words (or is a prefix
    of it, >= 2 words) is not plausible."""
    sentences = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    if len(sentences) < 2:
        return False
    first = _words(sentences[0])
    for later in sentences[1:]:
        words = _words(later)
        if len(words) >= 2 and words == first[:len(words)]:
            return True
        if len(words) >= 3 and words[:3] == first[:3]:
            return True
    return False


def suspect_reason(tokens: Sequence[int], text: str, duration_s: float, *,
                   max_compression_ratio: float = 2.4) -> str:
    """Why a sized-window result cannot be trusted ("" when it can)."""
    if len(tokens) >= token_budget(duration_s):
        return "token_budget"
    if repeated_span(tokens) is not None:
        return "repetition"
    if restarted(text):
        return "restart"
    if compression_ratio(text) > max_compression_ratio:
        return "compression_ratio"
    return ""
