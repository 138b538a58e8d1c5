"""BS.1770 loudness: the media-service's streaming programme meter and the sts-service's level match."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from media_service.audio.loudness import FLOOR_LUFS, ProgrammeLoudness
from sts_service.loudness import integrated_lufs, match_loudness, soft_limit

RATE = 48000


def tone(freq: float, amplitude: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Syllable-rate bursts of harmonic sound with pauses: a loudness-gating workout."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t) + rng.normal(0, 0.05, len(t)), 0, None)
    envelope *= (np.sin(2 * np.pi * 0.25 * t) > -0.3)  # a pause every 4 s
    return (0.2 * voice * envelope).astype(np.float32)


def feed(meter: ProgrammeLoudness, x: np.ndarray, frame: int = 1024) -> None:
    for i in range(0, len(x), frame):
        meter.add(x[i : i + frame])


def test_a_1khz_tone_at_minus_20_dbfs_in_both_channels_reads_minus_20_lufs():
    # BS.1770: a 997 Hz full-scale sine in one channel is -3.01 LKFS; in two channels 0.
    x = tone(997.0, 0.1, 5.0)
    meter = ProgrammeLoudness()
    feed(meter, np.stack([x, x], axis=1))
    for value in meter.readings().values():
        assert value == pytest.approx(-20.0, abs=0.1)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_streaming_meter_agrees_with_pyloudnorm(seed):
    x = speechlike(12.0, seed=seed)
    stereo = np.stack([x, 0.6 * x], axis=1)
    quiet = 0.003 * np.random.default_rng(seed).normal(size=(RATE * 4, 2)).astype(np.float32)
    programme = np.concatenate([stereo, quiet, 0.3 * stereo])
    meter = ProgrammeLoudness()
    feed(meter, programme)
    reference = pyloudnorm.Meter(RATE).integrated_loudness(programme.astype(np.float64))
    assert meter.integrated() == pytest.approx(reference, abs=0.1)


def test_readings_do_not_depend_on_how_frames_are_cut():
    x = speechlike(7.0)
    a, b = ProgrammeLoudness(), ProgrammeLoudness()
    feed(a, np.stack([x, x], 1), 1024)
    feed(b, np.stack([x, x], 1), 333)
    for window in ("momentary", "short_term", "integrated"):
        assert a.readings()[window] == pytest.approx(b.readings()[window], abs=1e-6)


def test_silence_floors_the_windows_and_leaves_integrated_unknown():
    meter = ProgrammeLoudness()
    assert meter.readings() == {"momentary": None, "short_term": None, "integrated": None}
    feed(meter, np.zeros((RATE * 4, 2), np.float32))
    assert meter.momentary() == meter.short_term() == FLOOR_LUFS and meter.integrated() is None


def test_relative_gate_leaves_the_quiet_part_out():
    loud, quiet = tone(1000.0, 0.1, 10.0), tone(1000.0, 0.001, 10.0)  # -20 and -60 LUFS (mono sums)
    meter = ProgrammeLoudness()
    feed(meter, np.concatenate([loud, quiet])[:, None])
    assert meter.integrated() == pytest.approx(-23.0, abs=0.15)  # mono: -3 dB from the two-channel case
    assert meter.momentary() == pytest.approx(-63.0, abs=0.2)


def test_gated_measure_of_a_span_ignores_padding():
    x = speechlike(3.0, rate=16000)
    padded = np.concatenate([np.zeros(8000, np.float32), x, np.zeros(16000, np.float32)])
    assert integrated_lufs(padded, 16000) == pytest.approx(integrated_lufs(x, 16000), abs=0.5)
    assert integrated_lufs(np.zeros(16000, np.float32), 16000) is None
    assert integrated_lufs(x[:800], 16000) is None  # 50 ms: too short to tell
    assert integrated_lufs(x[:4800], 16000) is not None  # 300 ms: a shorter block


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100])
def test_every_length_under_one_block_is_measured(rate):
    """pyloudnorm refuses a block one rounding error longer than the audio: no length may fail."""
    x = speechlike(0.5, rate=rate)
    for n in range(int(0.1 * rate), int(0.41 * rate), 7):
        assert integrated_lufs(x[:n], rate) is not None, n


@pytest.mark.parametrize("target", [-40.0, -23.0, -16.0, -12.0])
def test_a_dub_is_brought_to_the_original_loudness(target):
    dub = speechlike(3.0, rate=22050, seed=3)
    out, gain_db = match_loudness(dub, 22050, target)
    assert integrated_lufs(out, 22050) == pytest.approx(target, abs=0.5)
    assert np.abs(out).max() < 1.0
    assert gain_db == pytest.approx(target - integrated_lufs(dub, 22050), abs=1.0)


def test_nothing_to_match_leaves_the_dub_alone():
    dub = speechlike(2.0, rate=22050)
    assert match_loudness(dub, 22050, None)[1] == 0.0
    silent = np.zeros(22050, np.float32)
    out, gain = match_loudness(silent, 22050, -23.0)
    assert gain == 0.0 and not out.any()


def test_soft_limit_keeps_small_samples_and_bends_big_ones_under_full_scale():
    x = np.array([0.0, 0.5, -0.89, 0.95, -1.5, 4.0], np.float32)
    y = soft_limit(x)
    assert np.array_equal(y[:3], x[:3])
    assert np.all(np.abs(y) < 1.0) and np.all(np.sign(y) == np.sign(x))
    assert 0.9 < y[3] < 0.95 and y[5] >= abs(y[4]) > y[3]
    assert np.all(np.abs(y) <= 32767 / 32768)
