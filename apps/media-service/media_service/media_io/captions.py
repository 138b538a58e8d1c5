"""Live captions: each stream's transcript and translations as timed cues on the output timeline.

One `CaptionStore` per stream holds a `CaptionTrack` per language (the source language: the STS
transcript; each target: its translation). Every span the STS answered `ok` adds its text, split
into cues of at most `MAX_LINES` lines of at most `MAX_LINE_CHARS` characters (the common broadcast
subtitle limit; split at word boundaries, the span's time shared out by character count).

Cue times are on the output timeline: the span's position on the stream's media timeline
(`timeline.py`, ms from the first input sample) + D, i.e. when the span plays in the delayed output.
`Cue.span_start_ms` keeps the position without D for writers that mux cues into the output itself.

Tracks are bounded (the last `MAX_CUES` cues, and none ending more than `WINDOW_MS` before the
newest), thread-safe (written by the dubbing stage, read by the API and, later, by other outputs),
and let asyncio readers wait for new cues (the SSE feed). Rendering (`render_webvtt`) escapes the
text for WebVTT; cue text is stored unescaped (JSON consumers show it as text).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

from ..waiters import Waiters

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUES = 300  # cues kept per language
WINDOW_MS = 600_000.0  # and none that ended more than 10 minutes (output time) before the newest one


@dataclass(frozen=True)
class Cue:
    seq: int  # per language, in the order cues were added (SSE ids, WebVTT cue identifiers)
    start_ms: float  # output timeline (span position + D)
    end_ms: float
    lines: tuple[str, ...]  # unescaped text, 1..MAX_LINES lines of <= MAX_LINE_CHARS characters
    span_start_ms: float = 0.0  # the span's position on the media timeline (no D)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def as_json(self, language: str) -> dict:
        return {"seq": self.seq, "language": language, "start_ms": round(self.start_ms, 1),
                "end_ms": round(self.end_ms, 1), "lines": list(self.lines)}


# ---------------------------------------------------------------- splitting


def wrap_lines(text: str, width: int = MAX_LINE_CHARS) -> list[str]:
    """Words of `text` (any whitespace) filled greedily into lines of at most `width` characters;
    a word longer than `width` is broken into pieces of `width`."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while len(word) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        if not word:
            continue
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def split_cue(text: str, start_ms: float, end_ms: float, *, width: int = MAX_LINE_CHARS,
              max_lines: int = MAX_LINES) -> list[tuple[float, float, tuple[str, ...]]]:
    """`text` spoken over [start_ms, end_ms) as consecutive cues of <= `max_lines` lines of
    <= `width` characters: (start, end, lines) each, the time shared out by character count (the
    characters of a cue's lines, plus one for each break between its lines and to the next cue).
    Empty text gives no cue."""
    lines = wrap_lines(text, width)
    if not lines:
        return []
    groups = [tuple(lines[i:i + max_lines]) for i in range(0, len(lines), max_lines)]
    weights = [sum(len(line) for line in g) + len(g) for g in groups]  # +1 per line: the spaces it replaced
    total = float(sum(weights))
    duration = max(0.0, end_ms - start_ms)
    out = []
    done = 0
    for g, w in zip(groups, weights):
        a = start_ms + duration * done / total
        done += w
        b = end_ms if done == total else start_ms + duration * done / total
        out.append((a, b, g))
    return out


# ---------------------------------------------------------------- WebVTT


def escape_vtt(text: str) -> str:
    """Cue text as WebVTT cue payload: `&`, `<`, `>` as character references (so no markup, and no
    `-->`, can come from the transcript)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_timestamp(ms: float) -> str:
    """`hh:mm:ss.ttt` (hours always present; WebVTT allows more than two hour digits)."""
    total = max(0, int(round(ms)))
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def render_webvtt(cues, *, header: str = "") -> str:
    """A WebVTT document: the `WEBVTT` line (with `header` after a space, if given), a blank line,
    then each cue as identifier (its seq), timing line and escaped text lines, blank-line separated."""
    parts = ["WEBVTT" + (" " + header.replace("\n", " ").replace("-->", "->") if header else ""), ""]
    for cue in cues:
        end = max(cue.end_ms, cue.start_ms + 1)  # a cue's end must come after its start
        parts.append(str(cue.seq))
        parts.append(f"{vtt_timestamp(cue.start_ms)} --> {vtt_timestamp(end)}")
        parts.extend(escape_vtt(line) for line in cue.lines)
        parts.append("")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- the store


class CaptionTrack:
    """One language's cues, ordered by start time; bounded; safe to use from any thread."""

    def __init__(self, language: str, *, max_cues: int = MAX_CUES, window_ms: float = WINDOW_MS):
        self.language = language
        self.max_cues, self.window_ms = max_cues, window_ms
        self._cues: list[Cue] = []  # by start_ms (STS answers can come back out of order)
        self._lock = threading.Lock()
        self._seq = 0
        self.added = 0  # cues ever added (the kept ones are the last of them)
        self._waiters = Waiters()

    @property
    def last_seq(self) -> int:
        return self._seq

    def add(self, text: str, start_ms: float, end_ms: float, span_start_ms: float | None = None) -> list[Cue]:
        """Split `text` over [start_ms, end_ms) (output timeline) into cues and keep them."""
        pieces = split_cue(text, start_ms, end_ms)
        if not pieces:
            return []
        span = start_ms if span_start_ms is None else span_start_ms
        with self._lock:
            new = []
            for a, b, lines in pieces:
                self._seq += 1
                cue = Cue(self._seq, a, b, lines, span)
                bisect.insort(self._cues, cue, key=lambda c: (c.start_ms, c.seq))
                new.append(cue)
            self.added += len(new)
            self._trim()
        self._waiters.wake()
        return new

    def _trim(self) -> None:
        if len(self._cues) > self.max_cues:
            del self._cues[:len(self._cues) - self.max_cues]
        newest_end = max(c.end_ms for c in self._cues)
        keep_from = next((i for i, c in enumerate(self._cues) if c.end_ms >= newest_end - self.window_ms), 0)
        if keep_from:
            del self._cues[:keep_from]

    def cues(self) -> list[Cue]:
        """The kept cues, by start time."""
        with self._lock:
            return list(self._cues)

    def since(self, seq: int) -> list[Cue]:
        """Kept cues added after `seq`, in the order they were added."""
        with self._lock:
            return sorted((c for c in self._cues if c.seq > seq), key=lambda c: c.seq)

    def __len__(self) -> int:
        return len(self._cues)

    async def wait_since(self, seq: int, timeout: float) -> list[Cue]:
        """Cues added after `seq`, waiting up to `timeout` s for the first one ([] if none came)."""
        return await self._waiters.wait_for(lambda: self.since(seq), timeout)


@dataclass
class CaptionStore:
    """A stream's caption tracks: the source language first, then each target language."""

    source_language: str
    target_languages: list[str]
    delay_ms: float
    tracks: dict[str, CaptionTrack] = field(init=False)

    def __post_init__(self) -> None:
        langs = [self.source_language] + [lang for lang in self.target_languages if lang != self.source_language]
        self.tracks = {lang: CaptionTrack(lang) for lang in langs}

    @property
    def languages(self) -> list[str]:
        return list(self.tracks)

    def track(self, language: str) -> CaptionTrack | None:
        return self.tracks.get(language)

    def add_span(self, span_start_ms: float, duration_ms: float, transcript: str,
                 translations: dict[str, str]) -> dict[str, list[Cue]]:
        """What the STS returned for the span at `span_start_ms` (media timeline) lasting
        `duration_ms`: the transcript on the source track, each translation on its language's
        track (a target equal to the source language shares the transcript's track); times on the
        output timeline (+ D)."""
        start, end = span_start_ms + self.delay_ms, span_start_ms + duration_ms + self.delay_ms
        added = {}
        texts = {self.source_language: transcript}
        texts.update({lang: text for lang, text in translations.items() if lang != self.source_language})
        for lang, text in texts.items():
            track = self.tracks.get(lang)
            if track is not None and (cues := track.add(text, start, end, span_start_ms)):
                added[lang] = cues
        return added

    def snapshot(self) -> dict:
        """Per language: cues kept now and ever added."""
        return {lang: {"cues": len(t), "added": t.added} for lang, t in self.tracks.items()}
