"""What a stream said just before a fragment, so a fragment cut by the client's fragment limit is
not heard cold (protocol.md, Left context).

The media-service cuts a sentence longer than its fragment limit where it is quietest, often
inside a clause or a word. Heard alone, the second piece starts cold and its first word is
misheard ("She opened" as "Gee open"). Here each fragment that says it `continues` keeps its
audio and, once ASR has it, its committed transcript; the next fragment, if it starts where that
one ends, is decoded with that audio in front of it and that transcript as the words already said.

The word that touches the cut belongs to one fragment only: the earlier fragment leaves its last
word to the next one (which re-decodes it from the whole of its sound), unless the next one has
already gone ahead without the context. One per stream session; used from the event loop only.
Bounded: the last ``MAX_ENTRIES`` fragments, each at most ``max_seconds`` of audio.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from . import ASR_RATE

MAX_ENTRIES = 4
CONTIGUOUS_MS = 50.0  # a fragment that starts this close to where the previous one ended continues it
PAUSE_TAIL_S = 0.2  # a cut fragment whose last 200 ms are
PAUSE_RATIO = 0.05  # this far below its RMS (-26 dB) ended in a pause: it keeps its last word


@dataclass
class Heard:
    """One fragment as the next one may need it."""

    seq: int
    start_ms: float
    end_ms: float
    audio: np.ndarray | None  # float32 16 kHz; None when it does not continue or is too long
    continues: bool
    # Its committed transcript once ASR is done ("" = nothing to go on: failed, no speech).
    text: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    successor_cold: bool = False  # the next fragment went ahead without it: keep every word

    def commit(self, text: str) -> None:
        if not self.text.done():
            self.text.set_result(text)


def ends_in_pause(audio: np.ndarray) -> bool:
    """True when the fragment's last ``PAUSE_TAIL_S`` are far quieter than the fragment: the cut fell
    after the speech had stopped, so its last word is whole and, if the rest of the span holds no
    speech, the client drops it (nobody would say the word again)."""
    tail = audio[-int(PAUSE_TAIL_S * ASR_RATE):]
    if len(audio) <= len(tail) or not len(tail):
        return False
    whole = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    end = float(np.sqrt(np.mean(np.square(tail, dtype=np.float64))))
    return end < PAUSE_RATIO * whole


def hand_over(transcript: str, hand: bool) -> tuple[str, str]:
    """(words this fragment keeps, the word it leaves to the next fragment).

    A fragment that ends at a forced cut may have heard its last word in part; the next one hears
    it whole. A lone word stays: a fragment is never emptied by the hand-over."""
    words = transcript.split()
    if hand and len(words) > 1:
        return " ".join(words[:-1]), words[-1]
    return transcript.strip(), ""


class LeftContext:
    """Per-session memory of the last fragments' audio and committed words."""

    def __init__(self, max_seconds: float) -> None:
        self.max_samples = int(max_seconds * ASR_RATE)
        self._entries: dict[int, Heard] = {}

    @property
    def enabled(self) -> bool:
        return self.max_samples > 0

    def add(self, seq: int, start_ms: float, duration_ms: float, audio: np.ndarray,
            continues: bool) -> Heard:
        """Remember a fragment as it arrives; its words come later (``Heard.commit``)."""
        keep = continues and self.enabled and len(audio) <= self.max_samples
        entry = Heard(seq, start_ms, start_ms + duration_ms, audio if keep else None, keep)
        self._entries[seq] = entry
        for old in sorted(self._entries)[:-MAX_ENTRIES]:
            self._entries[old].commit("")  # nobody waits for it any more
            del self._entries[old]
        return entry

    def before(self, seq: int, start_ms: float) -> Heard | None:
        """The fragment this one continues: the previous one, kept, ending where this one starts."""
        prev = self._entries.get(seq - 1)
        if prev is None or not prev.continues or abs(start_ms - prev.end_ms) > CONTIGUOUS_MS:
            return None
        return prev

    def close(self) -> None:
        for entry in self._entries.values():
            entry.commit("")
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
