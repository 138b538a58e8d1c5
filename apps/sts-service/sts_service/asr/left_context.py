"""What a stream said just before a fragment, so a fragment that goes on from the one before it is
not heard cold (protocol.md, Left context).

The media-service cuts a sentence longer than its fragment limit, often inside a clause or a word,
and cuts at every pause its VAD hears, also a speaker's pause inside a sentence. Heard alone, the
piece after either cut starts cold: its first word is misheard ("She opened" as "Gee open"), a
few words said after a pause lose the sentence they belong to. Here each fragment's audio is kept
and, once ASR has it, its committed transcript; the next fragment, if it starts where that one
ends (a cut) or at most ``pause_s`` after it (a pause), is decoded with that audio (and the pause,
as silence) in front of it and that transcript as the words already said.

The word that touches a cut belongs to one fragment only: a fragment that ends at a cut
(`continues`) leaves its last word to the next one (which re-decodes it from the whole of its
sound), unless the next one has already gone ahead without the context. A fragment that ends in a
pause keeps all its words. One per stream session; used from the event loop only. Bounded: the
last ``MAX_ENTRIES`` fragments, each at most ``max_seconds`` of audio.
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
    audio: np.ndarray | None  # float32 16 kHz; None when context is off or it is too long
    continues: bool  # it ends at a cut (the client's `continues`): its last word goes to the next one
    # Its committed transcript once ASR is done ("" = nothing to go on: failed, no speech).
    text: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    successor_cold: bool = False  # the next fragment went ahead without it: keep every word

    def lead_in(self, start_ms: float) -> np.ndarray:
        """What is heard in front of the next fragment, which starts at `start_ms`: this fragment's
        audio and, after a pause, the pause as silence (Whisper hears the gap as it was)."""
        pause = 0 if self.continues else max(0, round((start_ms - self.end_ms) * ASR_RATE / 1000))
        return np.concatenate([self.audio, np.zeros(pause, np.float32)]) if pause else self.audio

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
    """Per-session memory of the last fragments' audio and committed words. `max_seconds` of a
    fragment's audio are kept at most (0: off); a fragment after a pause of up to `pause_s` is heard
    behind the one before (0: only after a cut)."""

    def __init__(self, max_seconds: float, pause_s: float = 0.0) -> None:
        self.max_samples = int(max_seconds * ASR_RATE)
        self.pause_ms = pause_s * 1000.0
        self._entries: dict[int, Heard] = {}

    @property
    def enabled(self) -> bool:
        return self.max_samples > 0

    def add(self, seq: int, start_ms: float, duration_ms: float, audio: np.ndarray,
            continues: bool) -> Heard:
        """Remember a fragment as it arrives; its words come later (``Heard.commit``)."""
        keep = (continues or self.pause_ms > 0) and self.enabled and len(audio) <= self.max_samples
        entry = Heard(seq, start_ms, start_ms + duration_ms, audio if keep else None, continues and keep)
        self._entries[seq] = entry
        for old in sorted(self._entries)[:-MAX_ENTRIES]:
            self._entries[old].commit("")  # nobody waits for it any more
            del self._entries[old]
        return entry

    def before(self, seq: int, start_ms: float) -> Heard | None:
        """The fragment this one goes on from: the previous one, kept, ending where this one starts
        (a cut; a cut fragment is continued only there) or at most ``pause_s`` before it."""
        prev = self._entries.get(seq - 1)
        if prev is None or prev.audio is None:
            return None
        gap = start_ms - prev.end_ms
        if prev.continues:
            return prev if abs(gap) <= CONTIGUOUS_MS else None
        return prev if -CONTIGUOUS_MS <= gap <= self.pause_ms else None

    def close(self) -> None:
        for entry in self._entries.values():
            entry.commit("")
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
