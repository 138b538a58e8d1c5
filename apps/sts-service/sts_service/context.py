"""A stream's recent speech, for the engines that translate better knowing it (LLM, DeepL, CTranslate2).

The media-service cuts fragments on pauses, and on a forced cut in the middle of a sentence:
"We have a lot to talk" | "about tonight." translated one by one reads as two broken sentences.
Each fragment's transcript is kept here as soon as ASR has it (fragments overlap: the next one is
often in ASR while this one is in TTS), and its translation per target once known; a fragment
is translated knowing the fragments before it by sequence number, never the ones after.
Bounded: the last ``MAX_ENTRIES`` fragments, at most ``MAX_CHARS`` of source text handed on.
One per stream session (sessions.py); used from the event loop only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .translation.base import Context

MAX_ENTRIES = 8  # fragments remembered
MAX_TURNS = 3  # fragments handed on as context
MAX_CHARS = 600  # of source text handed on


@dataclass
class StreamContext:
    _entries: dict[int, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def heard(self, seq: int, transcript: str) -> None:
        self._entries[seq] = (transcript.strip(), {})
        for old in sorted(self._entries)[:-MAX_ENTRIES]:
            del self._entries[old]

    def translated(self, seq: int, target: str, text: str) -> None:
        if seq in self._entries:
            self._entries[seq][1][target] = text.strip()

    def before(self, seq: int, target: str) -> Context:
        """What the stream said before fragment `seq`, with its `target` translations ("" if not
        back yet), oldest first, bounded."""
        turns: list[tuple[str, str]] = []
        chars = 0
        for s in sorted((s for s in self._entries if s < seq), reverse=True)[:MAX_TURNS]:
            text, translations = self._entries[s]
            if not text or chars + len(text) > MAX_CHARS:
                break
            chars += len(text)
            turns.insert(0, (text, translations.get(target, "")))
        return Context(tuple(turns))

    def __len__(self) -> int:
        return len(self._entries)
