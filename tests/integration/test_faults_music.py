"""Ten minutes of music: zero dubs, zero hallucinations (issue 9 #4).

A real-time 10-minute stream would cost the suite 10 minutes, so the music is fed faster than
real time through the media-service's real capture stage (`Capture`: timeline, 48 -> 16 kHz
resampling, the Silero VAD segmenter with the limits a stream at the default D has), with no
RTMP; whatever fragments it cuts go to the real sts-service over Socket.IO, as the dubbing stage
sends them. Music must never come back as a dub with words in it: every answer is `no_speech`
(or `ok` without a word), and the segmenter should find (almost) no speech at all. In case the
VAD finds none (it should not), the STS side is still tried: one window of every 30 s part, as
long as the longest fragment in force, is sent too (what a VAD fooled by music would send), and
Whisper must not make words of it either.

The music (made here, seeded): chords, drums (kick, snare, hi-hat), a bass line and a lead tune
with vibrato, its tempo, key and level changing every 30 s.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livedub_testkit.fixtures import _music_bed
from livedub_testkit.services import StsProcess
from livedub_testkit.sts_client import StsTestClient
from media_service.audio.dsp import resample
from media_service.audio.timeline import RATE, VAD_RATE
from media_service.config import MediaConfig
from media_service.events import EventLog
from media_service.stream.budget import fragment_limits
from media_service.stream.capture import Capture
from media_service.stream.counters import Counters

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MINUTES = 10
PART_S = 30
PENTATONIC = (0, 2, 4, 7, 9, 12, 14, 16)


def _note(f: float, n: int, sr: int, rng) -> np.ndarray:
    """A plucked/bowed-ish note: a few harmonics, vibrato, attack and decay."""
    t = np.arange(n) / sr
    vib = 1 + 0.006 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
    phase = 2 * np.pi * f * np.cumsum(vib) / sr
    tone = sum(np.sin(k * phase) / k ** 1.3 for k in range(1, 7))
    env = np.minimum(1, t / 0.02) * np.exp(-t * rng.uniform(1.5, 4.0))
    return tone * env


def music_part(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sr)
    out = _music_bed(n, sr, rng).astype(np.float64) * 2.0  # the chords, 6 dB above the demo's bed
    beat = 60.0 / rng.uniform(84, 140)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    t = np.arange(int(0.4 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-t * 30)) * t) * np.exp(-t * 9)
    noise = rng.standard_normal(len(t))
    snare = noise * np.exp(-t * 18) * 0.5
    hat = np.diff(noise, prepend=0)[: int(0.05 * sr)] * np.exp(-t[: int(0.05 * sr)] * 80) * 0.15
    mono = np.zeros(n)

    def add(x, at):
        a = int(at * sr)
        if a < n:
            mono[a:a + len(x)] += x[: n - a]

    k = 0
    while k * beat < seconds:
        at = k * beat
        add(kick * 0.6 if k % 2 == 0 else snare, at)
        add(hat, at + beat / 2)
        if k % 2 == 0:  # bass on every other beat
            add(0.35 * _note(root / 2 * 2 ** (PENTATONIC[rng.integers(0, 4)] / 12), int(beat * sr), sr, rng), at)
        k += 1
    at = 0.0
    while at < seconds:  # the tune: notes of a quarter to one beat
        dur = beat * rng.choice([0.5, 0.5, 1.0, 1.5])
        if rng.random() > 0.15:
            f = root * 2 * 2 ** (PENTATONIC[rng.integers(0, len(PENTATONIC))] / 12)
            add(0.25 * _note(f, int(dur * sr), sr, rng), at)
        at += dur
    out += mono[:, None]
    level = 10 ** (rng.uniform(-22, -14) / 20) / max(np.sqrt(np.mean(out ** 2)), 1e-9)
    return np.clip(out * level, -1, 1).astype(np.float32)


def cut_fragments(seconds: float, seed: int = 7):
    """Feed `seconds` of music through the real capture stage; returns its segments, its stats, the
    limits in force and one probe window (16 kHz mono, the longest fragment) of every part."""
    cfg = MediaConfig(sts_token="unused")
    segments = []
    capture = Capture("music", cfg, EventLog(), Counters(), on_segment=lambda seg, arrival: segments.append(seg))
    limits = fragment_limits(cfg.output_delay_s, None, cap_ms=cfg.max_fragment_ms, min_silence_cap_ms=cfg.min_silence_ms)
    capture.segmenter.set_limits(limits.max_fragment_ms, limits.min_silence_ms)
    rng = np.random.default_rng(seed)
    pos, probes = 0, []
    probe_n = int(limits.max_fragment_ms * RATE / 1000)
    for _ in range(int(seconds // PART_S)):
        part = music_part(PART_S, RATE, rng)
        a = int(rng.integers(0, len(part) - probe_n))
        probes.append(resample(part[a:a + probe_n].mean(axis=1), RATE, VAD_RATE))
        for i in range(0, len(part) - 1023, 1024):  # as the decoder hands it over: 1024-sample frames
            capture.on_audio(part[i:i + 1024], (pos + i) / RATE)
        pos += len(part)
        capture.store.discard_before(capture.timeline.end - RATE)  # what playout would have done
    capture.flush_segments()
    capture.close()
    return segments, capture.segmenter.stats, limits, probes


@pytest.fixture(scope="module")
def sts(tmp_path_factory):
    proc = StsProcess(log_dir=tmp_path_factory.mktemp("sts"))
    proc.start(wait=180)
    yield proc
    proc.stop()


def test_ten_minutes_of_music_give_zero_dubs_and_zero_hallucinations(sts):
    segments, stats, limits, probes = cut_fragments(MINUTES * 60)
    speech_s = sum(len(s.audio) for s in segments) / VAD_RATE
    print(f"music: {stats.windows} VAD windows, {stats.speech_windows} speech; {len(segments)} fragments "
          f"({speech_s:.1f} s), {stats.dropped_short} dropped short; limits {limits}")
    assert stats.windows >= MINUTES * 60 * VAD_RATE // 512 - 2  # all of it was analysed
    levels = [20 * np.log10(np.sqrt(np.mean(p ** 2))) for p in probes]
    assert min(levels) > -32, levels  # music, not a quiet bed
    fragments = [(seg.span.start / 16.0, seg.audio) for seg in segments]
    fragments += [(i * PART_S * 1000.0, probe) for i, probe in enumerate(probes)]

    async def ask():
        c = await StsTestClient(sts.url, sts.token).connect()
        try:
            assert (await c.init("music"))["ok"]
            ids = []
            for seq, (start_ms, audio) in enumerate(fragments):
                if seq % 4 == 0:  # four in flight at most, as the media-service keeps below max-inflight
                    await c.wait_for(ids, timeout=60)
                ack = await c.send("music", seq, audio, start_ms=start_ms)
                assert ack["accepted"], ack
                ids.append(f"music-{seq}")
            return await c.wait_for(ids, timeout=60)
        finally:
            await c.close()

    results = asyncio.run(ask())
    said = [(r.status, r.transcript, [d.text for d in r.results or []]) for r in results]
    print("sts answers:", said)
    assert len(results) == len(segments) + MINUTES * 60 // PART_S
    assert not any(r.status == "failed" for r in results), said
    worded = [x for x, r in zip(said, results) if r.status != "no_speech" and (
        (r.transcript or "").strip() or any((d.text or "").strip() for d in r.results or []))]
    assert worded == [], f"music transcribed as words: {worded}"
    # The VAD itself should find next to no speech in music: a few spans at most.
    assert speech_s <= 30, f"{speech_s:.1f} s of 'speech' cut from {MINUTES} minutes of music"
