"""Unit tests for media_service.audio.mixer and dsp (dub placement on the 48 kHz timeline, mixing, resampling).

Speed is measured by bench/bench_media.py, not asserted here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from media_service.audio.dsp import db_to_gain, resample
from media_service.audio.mixer import DEFAULT_RAMP, DubTrack, Mode
from media_service.audio.timeline import RATE as TIMELINE_RATE

SR = TIMELINE_RATE
R = DEFAULT_RAMP  # 480 samples = 10 ms


def rms_dbfs(x: np.ndarray, floor_db: float = -120.0) -> float:
    """RMS level in dBFS (RMS 1.0 = 0 dBFS), floored at floor_db (also for empty or silent input)."""
    a = np.asarray(x, dtype=np.float64)
    ms = float(np.mean(a * a)) if a.size else 0.0
    return max(10.0 * math.log10(ms), floor_db) if ms > 0.0 else floor_db


def sine(n: int, freq: float, amp: float, channels: int = 1, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / SR
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def original(n: int, channels: int = 2) -> np.ndarray:
    """Background programme: 440 Hz sine + a little noise, stereo."""
    rng = np.random.default_rng(3)
    x = sine(n, 440.0, 0.3, channels) + (rng.standard_normal((n, channels)) * 0.01).astype(np.float32)
    return x.astype(np.float32)


def render_chunked(track: DubTrack, orig: np.ndarray, sizes, mode, gain=-14.0, start=0) -> np.ndarray:
    out = []
    pos = 0
    it = iter(sizes) if not isinstance(sizes, int) else None
    while pos < len(orig):
        n = sizes if it is None else next(it, 4096)
        n = min(n, len(orig) - pos)
        out.append(track.render(start + pos, n, orig[pos : pos + n], mode, gain))
        pos += n
    return np.concatenate(out)


@pytest.fixture()
def track() -> DubTrack:
    t = DubTrack()
    t.add(10_000, sine(20_000, 1000.0, 0.4))  # mono clip into stereo output
    t.add(30_000, sine(5_000, 700.0, 0.4, channels=2))  # touches the first clip: one region
    t.add(50_000, sine(300, 1500.0, 0.5))  # shorter than 2 ramps
    t.add(60_000, np.full(9_000, 0.5, np.float32))  # DC step: worst case for clicks
    return t


# --------------------------------------------------------------------------- basics


def test_mode_enum_values():
    assert Mode("duck") is Mode.DUCK and Mode.REPLACE.value == "replace"
    assert Mode.PASSTHROUGH == "passthrough"


def test_rms_dbfs():
    assert rms_dbfs(np.ones(100)) == pytest.approx(0.0)
    assert rms_dbfs(sine(48_000, 1000.0, 1.0)) == pytest.approx(-3.0103, abs=1e-3)
    assert rms_dbfs(np.full(10, 0.1)) == pytest.approx(-20.0)
    assert rms_dbfs(np.zeros(10)) == -120.0
    assert rms_dbfs(np.zeros(0)) == -120.0
    assert rms_dbfs(np.zeros(10), floor_db=-90.0) == -90.0
    assert db_to_gain(-20.0) == pytest.approx(0.1)


def test_passthrough_is_bit_exact(track):
    orig = original(80_000) * 1.5  # even over full scale: passthrough does not touch it
    out = track.render(0, len(orig), orig, Mode.PASSTHROUGH)
    assert np.array_equal(out, orig)
    assert out is not orig


def test_no_dub_no_change(track):
    orig = original(5000)
    out = track.render(100_000, 5000, orig, Mode.DUCK)
    assert np.array_equal(out, orig)


def test_replace_removes_original_under_dub():
    dub = sine(20_000, 1000.0, 0.4)
    t = DubTrack()
    t.add(10_000, dub)
    orig = original(40_000)
    out = t.render(0, 40_000, orig, "replace")
    inner = slice(10_000 + R, 30_000 - R)
    # interior: exactly the dub on every channel (mono clip broadcast)
    assert np.array_equal(out[inner, 0], dub[R:-R]) and np.array_equal(out[inner, 1], dub[R:-R])
    residual = out[inner] - dub[R:-R, None]
    assert rms_dbfs(residual) < -120 + 1e-9
    # outside: exactly the original
    assert np.array_equal(out[:10_000], orig[:10_000])
    assert np.array_equal(out[30_000:], orig[30_000:])


def test_duck_keeps_original_at_duck_gain():
    dub = sine(24_000, 1000.0, 0.4)
    t = DubTrack()
    t.add(12_000, dub)
    orig = original(48_000)
    for gain_db in (-14.0, -6.0, -20.0):
        out = t.render(0, 48_000, orig, Mode.DUCK, gain_db)
        inner = slice(12_000 + R, 36_000 - R)
        under = out[inner] - dub[R:-R, None]  # what is left of the original under the dub
        level = rms_dbfs(under) - rms_dbfs(orig[inner])
        assert level == pytest.approx(gain_db, abs=0.01)
        # the dub itself is at full level
        assert rms_dbfs(out[inner] - orig[inner] * db_to_gain(gain_db)) == pytest.approx(
            rms_dbfs(dub), abs=0.01
        )
        # outside the clip the original is untouched
        assert np.array_equal(out[:12_000], orig[:12_000])


def test_ramp_is_raised_cosine_10ms_at_edges_without_clicks():
    t = DubTrack()
    t.add(1000, np.full(5000, 0.5, np.float32))
    orig = np.zeros((8000, 1), np.float32)
    out = t.render(0, 8000, orig, Mode.REPLACE)[:, 0]
    assert out[999] == 0.0 and 0.0 < out[1000] < 0.001
    assert np.all(np.diff(out[1000 : 1000 + R]) > 0)  # rising over 10 ms
    assert np.array_equal(out[1000 + R : 6000 - R], np.full(5000 - 2 * R, 0.5, np.float32))
    assert np.all(np.diff(out[6000 - R : 6000]) < 0)  # falling over 10 ms
    assert out[6000] == 0.0
    # raised cosine: max step = 0.5 * pi / (2 R) ~ 0.0016
    assert np.max(np.abs(np.diff(out))) < 0.002
    # symmetric edges
    assert np.allclose(out[1000 : 1000 + R], out[6000 - R : 6000][::-1], atol=1e-7)


def test_duck_transition_has_no_click(track):
    orig = original(80_000)
    out = track.render(0, 80_000, orig, Mode.DUCK)
    # around the DC step clip (60_000..69_000): step size stays small
    d = np.abs(np.diff(out[59_000:70_000, 0]))
    assert d.max() < 0.06  # 440 Hz sine at 0.3 moves ~0.017/sample; a click would be ~0.5


def test_touching_clips_form_one_region_without_dip():
    t = DubTrack()
    t.add(0, np.full(3000, 0.25, np.float32))
    t.add(3000, np.full(3000, 0.25, np.float32))
    orig = np.full((6000, 1), 0.8, np.float32)
    out = t.render(0, 6000, orig, Mode.REPLACE)[:, 0]
    # no ramp at the boundary between the two clips
    assert np.array_equal(out[R : 6000 - R], np.full(6000 - 2 * R, 0.25, np.float32))


def test_short_clip_uses_shorter_ramp():
    t = DubTrack()
    t.add(100, np.full(300, 0.5, np.float32))
    out = t.render(0, 600, np.zeros(600, np.float32), Mode.REPLACE)
    assert out.shape == (600,)  # mono in, mono out
    assert out[99] == 0 and out[400] == 0
    assert 0.49 < out[250] <= 0.5
    assert np.max(np.abs(np.diff(out))) < 0.01


# --------------------------------------------------------------------------- chunk-size independence


@pytest.mark.parametrize("mode", [Mode.DUCK, Mode.REPLACE, Mode.PASSTHROUGH])
def test_chunked_rendering_is_bit_identical(track, mode):
    orig = original(80_000)
    ref = track.render(0, 80_000, orig, mode)
    for sizes in (1024, 4800, 777, list(np.random.default_rng(5).integers(1, 3000, 200))):
        got = render_chunked(track, orig, sizes, mode)
        assert np.array_equal(got, ref), sizes


def test_one_sample_chunks_bit_identical(track):
    # 1-sample rendering across the first clip's rising edge, the touching boundary and the end
    orig = original(80_000)
    ref = track.render(0, 80_000, orig, Mode.DUCK)
    for a, b in ((9_500, 11_000), (29_500, 30_500), (34_000, 35_600), (49_900, 50_400)):
        got = render_chunked(track, orig[a:b], 1, Mode.DUCK, start=a)
        assert np.array_equal(got, ref[a:b]), (a, b)


def test_render_start_offset_matters(track):
    orig = original(4096)
    a = track.render(9_000, 4096, orig, Mode.REPLACE)
    b = track.render(0, 4096, orig, Mode.REPLACE)
    assert not np.array_equal(a, b)  # positions are absolute, not relative to the call
    assert np.array_equal(b, orig)


# --------------------------------------------------------------------------- mode switches


def test_switch_to_passthrough_mid_clip():
    t = DubTrack()
    t.add(0, sine(48_000, 1000.0, 0.4))
    orig = original(48_000)
    frames = [orig[i : i + 1024] for i in range(0, 48_000, 1024)]
    outs = []
    for k, fr in enumerate(frames):
        mode = Mode.DUCK if k < 10 else Mode.PASSTHROUGH
        outs.append(t.render(k * 1024, len(fr), fr, mode))
    # frames before the switch: ducked dub
    assert not np.array_equal(outs[9], frames[9])
    # switch frame: a 10 ms crossfade (< one 1024-sample frame), then exactly the original
    assert np.array_equal(outs[10][R:], frames[10][R:])
    assert not np.array_equal(outs[10][:R], frames[10][:R])
    for k in range(11, len(frames)):
        assert np.array_equal(outs[k], frames[k])
    # and the crossfade has no click
    cat = np.concatenate(outs)
    assert np.max(np.abs(np.diff(cat[9 * 1024 : 11 * 1024, 0]))) < 0.2


def test_hard_switch_when_switch_ramp_disabled():
    t = DubTrack(switch_ramp=0)
    t.add(0, sine(10_000, 1000.0, 0.4))
    orig = original(4096)
    t.render(0, 2048, orig[:2048], Mode.DUCK)
    out = t.render(2048, 2048, orig[2048:], Mode.PASSTHROUGH)
    assert np.array_equal(out, orig[2048:])


def test_switch_back_and_gain_change_take_effect_next_frame():
    t = DubTrack()
    dub = sine(48_000, 1000.0, 0.4)
    t.add(0, dub)
    orig = original(48_000)
    t.render(0, 1024, orig[:1024], Mode.PASSTHROUGH)
    out = t.render(1024, 1024, orig[1024:2048], Mode.REPLACE)
    assert np.array_equal(out[R:, 0], dub[1024 + R : 2048])
    out = t.render(2048, 1024, orig[2048:3072], Mode.DUCK, -6.0)
    ref = DubTrack()
    ref.add(0, dub)
    want = ref.render(2048, 1024, orig[2048:3072], Mode.DUCK, -6.0)
    assert np.array_equal(out[R:], want[R:])


def test_non_contiguous_render_does_not_crossfade():
    t = DubTrack()
    t.add(0, sine(10_000, 1000.0, 0.4))
    orig = original(2048)
    t.render(0, 1024, orig[:1024], Mode.DUCK)
    out = t.render(5000, 1024, orig[1024:], Mode.PASSTHROUGH)  # a seek, not the next frame
    assert np.array_equal(out, orig[1024:])


# --------------------------------------------------------------------------- clips management


def test_later_clip_wins_on_overlap():
    t = DubTrack(ramp=1)  # 1-sample edge ramps: every sample but the region edges is the raw clip
    t.add(0, np.full(1000, 0.1, np.float32))
    t.add(500, np.full(1000, 0.2, np.float32))
    assert t.clips == [(0, 500), (500, 1500)]
    t.add(1000, np.full(100, 0.3, np.float32))  # splits the second clip
    assert t.clips == [(0, 500), (500, 1000), (1000, 1100), (1100, 1500)]
    out = t.render(0, 1500, np.zeros(1500, np.float32), Mode.REPLACE)
    assert out[400] == np.float32(0.1) and out[700] == np.float32(0.2)
    assert out[1050] == np.float32(0.3) and out[1200] == np.float32(0.2)
    t.add(0, np.full(2000, 0.4, np.float32))  # covers everything
    assert t.clips == [(0, 2000)]
    assert t.covered(0, 3000) == 2000


def test_prune_bounds_memory():
    t = DubTrack()
    for i in range(100):
        t.add(i * 10_000, np.zeros(5000, np.float32))
    assert len(t) == 100
    assert t.prune(500_000) == 50  # clips ending at or before 500_000
    assert t.clips[0] == (500_000, 505_000)
    assert t.prune(0) == 0


def test_hard_clip_to_full_scale():
    t = DubTrack()
    t.add(0, np.full(4000, 0.9, np.float32))
    orig = np.full((4000, 2), 0.9, np.float32)
    out = t.render(0, 4000, orig, Mode.DUCK, 0.0)  # 0.9 + 0.9 -> clipped
    assert out.max() == 1.0 and out.min() >= -1.0
    out = t.render(0, 4000, -orig, Mode.DUCK, 0.0)
    assert out.min() >= -1.0


def test_stereo_clip_into_mono_output_and_bad_shapes():
    t = DubTrack()
    st = np.stack([np.full(2000, 0.2, np.float32), np.full(2000, 0.4, np.float32)], axis=1)
    t.add(0, st)
    out = t.render(0, 2000, np.zeros((2000, 1), np.float32), Mode.REPLACE)
    assert out[1000, 0] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        t.render(0, 2000, np.zeros((2000, 3), np.float32), Mode.REPLACE)
    with pytest.raises(ValueError):
        t.render(0, 10, np.zeros((9, 2), np.float32), Mode.REPLACE)
    with pytest.raises(ValueError):
        t.render(0, 10, np.zeros((10, 2), np.float32), "loud")


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("sr", [16_000, 22_050, 24_000, 44_100])
def test_resample_alignment_length_and_quality(sr):
    x = np.zeros(sr, np.float32)
    x[sr // 2] = 1.0
    y = resample(x, sr, SR)
    assert y.dtype == np.float32 and y.shape == (48_000,)
    assert int(np.argmax(np.abs(y))) == 24_000  # no delay introduced
    t = np.arange(2 * sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y = resample(tone, sr, SR)
    ref = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / SR)
    err = y[2000:-2000] - ref[2000:-2000]
    snr = 10 * np.log10(np.mean(ref[2000:-2000] ** 2) / np.mean(err**2))
    assert snr > 60, snr


def test_resample_stereo_identity_and_empty():
    st = np.stack([sine(16_000, 300.0, 0.5), sine(16_000, 500.0, 0.5)], axis=1)
    y = resample(st, 16_000, 48_000)
    assert y.shape == (48_000, 2)
    assert rms_dbfs(y[:, 0]) == pytest.approx(rms_dbfs(st[:, 0]), abs=0.1)
    x = sine(1000, 300.0, 0.5)
    assert np.array_equal(resample(x, 48_000, SR), x)
    assert resample(np.zeros(0, np.float32), 16_000, SR).shape == (0,)
    assert resample(np.zeros((3, 2), np.float32), 48_000, 16_000).shape == (1, 2)
