"""Duration fit with the real rubberband CLI, and the ffmpeg atempo fallback."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sts_service import fit
from sts_service.fit import fit_to_span, span_samples

SR = 22050


def _speechlike(seconds: float) -> np.ndarray:
    """Syllable-rate amplitude-modulated harmonics, loud from start to end."""
    t = np.arange(int(seconds * SR)) / SR
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return (0.2 * voice * envelope).astype(np.float32)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


@pytest.mark.skipif(
    shutil.which("rubberband") is None, reason="rubberband missing: apt-get install rubberband-cli"
)
def test_six_seconds_into_four_with_rubberband() -> None:
    clip = _speechlike(6.0)
    res = fit_to_span(clip, SR, 4000)
    assert len(res.audio) == span_samples(4000, SR)
    assert res.speed_factor == pytest.approx(1.5)  # 6/4 = 1.5 = the cap
    assert _rms(res.audio[: 3 * SR]) > 0.5 * _rms(clip)  # it is stretched speech, not silence

    # 7 s needs 1.75x: capped at 1.5x (4.67 s), the overflow is cut with a fade-out (no click).
    res = fit_to_span(_speechlike(7.0), SR, 4000)
    assert res.speed_factor == pytest.approx(1.5)
    assert len(res.audio) == span_samples(4000, SR)
    assert abs(res.audio[-1]) < 1e-3 and _rms(res.audio[-SR // 2 : -SR // 10]) > 0.05


@pytest.mark.skipif(
    shutil.which("rubberband") is None, reason="rubberband missing: apt-get install rubberband-cli"
)
def test_speed_capped_then_cut() -> None:
    res = fit_to_span(_speechlike(6.0), SR, 3000, max_speed=1.25)
    assert res.speed_factor == pytest.approx(1.25)
    assert len(res.audio) == span_samples(3000, SR)


@pytest.mark.skipif(
    shutil.which("rubberband") is None, reason="rubberband missing: apt-get install rubberband-cli"
)
def test_uncapped_stretch_fills_span() -> None:
    """(Its speed is measured by bench/bench_engines.py, not asserted here.)"""
    clip = _speechlike(5.0)
    res = fit_to_span(clip, SR, 4000)
    assert res.speed_factor == pytest.approx(1.25)
    # The stretched audio should (nearly) fill the span on its own, before any padding.
    assert np.flatnonzero(np.abs(res.audio) > 1e-3)[-1] > 0.97 * len(res.audio)


def test_slowing_down_allowed_by_min_speed() -> None:
    res = fit_to_span(_speechlike(3.0), SR, 3300, min_speed=0.9)
    assert res.speed_factor == pytest.approx(3.0 / 3.3, rel=1e-3)
    assert len(res.audio) == span_samples(3300, SR)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg missing: apt-get install ffmpeg")
def test_atempo_fallback_when_rubberband_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit, "find_rubberband", lambda: None)
    calls: list[str] = []
    real = fit._atempo
    monkeypatch.setattr(fit, "_atempo", lambda *a: calls.append("atempo") or real(*a))
    clip = _speechlike(6.0)
    res = fit_to_span(clip, SR, 4000)
    assert calls == ["atempo"]
    assert res.speed_factor == pytest.approx(1.5)
    assert len(res.audio) == span_samples(4000, SR)
    assert _rms(res.audio[: 3 * SR]) > 0.5 * _rms(clip)
    stretched = fit.time_stretch(clip, SR, 1.5)
    assert abs(len(stretched) - 4 * SR) < 0.02 * SR


def test_no_tool_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit, "find_rubberband", lambda: None)
    monkeypatch.setattr(fit, "find_ffmpeg", lambda: None)
    with pytest.raises(fit.FitError, match="rubberband-cli"):
        fit_to_span(_speechlike(6.0), SR, 4000)
