"""Pure length/trim math of sts_service.fit on synthetic arrays (no external tools run)."""

from __future__ import annotations

import numpy as np
import pytest
from sts_service import fit
from sts_service.fit import fit_to_span, span_samples, trim_silence

SR = 16000


def _tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


@pytest.fixture(autouse=True)
def _no_stretch_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests must not spawn tools: any stretch attempt fails loudly."""

    def boom(*_a, **_k):
        raise AssertionError("time_stretch must not run in this test")

    monkeypatch.setattr(fit, "time_stretch", boom)


def test_span_samples_rounding() -> None:
    assert span_samples(1000, SR) == 16000
    assert span_samples(0.03125, SR) == 0  # 0.5 sample rounds to even
    assert span_samples(33.34, 22050) == 735
    assert span_samples(-5, SR) == 0


def test_trim_silence_keeps_a_margin() -> None:
    clip = np.concatenate([np.zeros(SR // 2), _tone(1.0), np.zeros(SR)]).astype(np.float32)
    out = trim_silence(clip, SR, keep_ms=20)
    assert SR <= len(out) <= SR + 2 * int(0.03 * SR)
    assert np.abs(out[: int(0.02 * SR)]).max() < 1e-6  # the kept margin is the original silence
    assert len(trim_silence(np.zeros(SR, np.float32), SR)) == 0
    assert len(trim_silence(np.zeros(10, np.float32), SR)) == 10  # shorter than one frame: untouched


def test_short_clip_is_padded_to_the_span() -> None:
    res = fit_to_span(_tone(1.0), SR, 2500)
    assert len(res.audio) == span_samples(2500, SR)
    assert res.speed_factor == 1.0 and res.sample_rate == SR
    assert res.audio.dtype == np.float32
    assert np.all(res.audio[SR + 100 :] == 0)


def test_no_pad_keeps_natural_length() -> None:
    res = fit_to_span(_tone(1.0), SR, 2500, pad=False)
    assert len(res.audio) <= SR


def test_exactly_fitting_clip_untouched() -> None:
    clip = _tone(2.0)
    res = fit_to_span(clip, SR, 2000, trim_silence=False)
    np.testing.assert_array_equal(res.audio, clip)
    # within 1 % of the span: no stretch, the overflow is cut
    res = fit_to_span(_tone(2.015), SR, 2000, trim_silence=False)
    assert len(res.audio) == 2 * SR and res.speed_factor == 1.0


def test_cut_has_a_fade_out() -> None:
    out = fit._cut_or_pad(_tone(3.0), 2 * SR, SR, True)
    assert len(out) == 2 * SR
    assert abs(out[-1]) < 1e-6
    fade = int(SR * fit.FADE_MS / 1000)
    assert np.abs(out[-fade // 4 :]).max() < 0.3 * 0.3


@pytest.mark.parametrize("span_ms", [0.0, 0.01, 7.3, 999.99, 1234.567])
def test_output_never_exceeds_span(span_ms: float) -> None:
    res = fit_to_span(_tone(0.004), SR, span_ms)  # shorter than 1 % overshoot: no stretch
    assert len(res.audio) == span_samples(span_ms, SR)


def test_silent_or_empty_input() -> None:
    assert len(fit_to_span(np.zeros(SR, np.float32), SR, 500).audio) == 8000
    assert len(fit_to_span(np.zeros(0, np.float32), SR, 500).audio) == 8000


def test_bad_speed_range() -> None:
    with pytest.raises(ValueError):
        fit_to_span(_tone(1.0), SR, 500, max_speed=0.9)
    with pytest.raises(ValueError):
        fit_to_span(_tone(1.0), SR, 500, min_speed=2.0, max_speed=1.5)
