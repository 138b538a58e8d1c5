"""What a TTS model server's answer may be (``tts/openai_speech.decode_audio``) and how much of
any engine's audio the duration fit takes: the WAV header is the server's word, so a sample rate,
a channel count or a length the pipeline cannot use is refused with a message naming it, and the
samples are capped by the span before anything is allocated from them."""

from __future__ import annotations

import numpy as np
import pytest
from livedub_testkit.fake_openai import raw_wav as wav
from sts_service import fit
from sts_service.fit import fit_to_span, input_limit_ms, span_samples
from sts_service.tts.base import SynthesisError
from sts_service.tts.openai_speech import decode_audio


@pytest.mark.parametrize("rate", [0, 1, 7999, 48001, 96000, 4_000_000_000])
def test_a_sample_rate_outside_8_to_48_khz_is_refused(rate):
    with pytest.raises(SynthesisError, match=f"sample rate {rate} Hz .*8000-48000"):
        decode_audio(wav(rate), "audio/wav")


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_the_usual_rates_are_taken(rate):
    audio, got = decode_audio(wav(rate), "audio/wav")
    assert got == rate and len(audio) == 1600 and audio.dtype == np.float32


@pytest.mark.parametrize("channels", [3, 6])
def test_more_than_two_channels_are_refused(channels):
    with pytest.raises(SynthesisError, match=f"{channels} channels .*mono or stereo"):
        decode_audio(wav(16000, channels=channels), "audio/wav")


@pytest.mark.parametrize(("width", "fmt", "match"), [(1, 1, "8-bit"), (3, 1, "24-bit"), (4, 3, "format")])
def test_anything_but_pcm16_is_refused(width, fmt, match):
    with pytest.raises(SynthesisError, match=match):
        decode_audio(wav(16000, width=width, fmt=fmt), "audio/wav")


def test_a_stereo_wav_cut_mid_frame_keeps_its_whole_frames():
    truncated = wav(16000, channels=2, frames=100)[:-2]  # the header says 100 frames, 99.5 came
    audio, rate = decode_audio(truncated, "audio/wav")
    assert rate == 16000 and len(audio) == 99


def test_the_samples_are_capped_by_max_seconds():
    audio, rate = decode_audio(wav(16000, frames=16000 * 30), "audio/wav", max_seconds=2.5)
    assert rate == 16000 and len(audio) == 40000
    pcm, rate = decode_audio(np.zeros(24000 * 30, "<i2").tobytes(), "audio/pcm", max_seconds=1.0)
    assert rate == 24000 and len(pcm) == 24000


def test_fit_takes_no_more_of_its_input_than_the_span_can_use(monkeypatch):
    """At `max_speed` anything past span x max_speed is cut anyway: longer input (plus slack for the
    leading silence the trim removes) is dropped before the trim and the stretch see it."""
    seen = []

    def stretch(audio, rate, tempo, fine=False):
        seen.append(len(audio))
        return audio[: int(len(audio) / tempo)]

    monkeypatch.setattr(fit, "time_stretch", stretch)
    sr = 16000
    hour = (0.3 * np.sin(2 * np.pi * 200 * np.arange(sr * 600) / sr)).astype(np.float32)  # 10 minutes
    res = fit_to_span(hour, sr, 2000, max_speed=1.5)
    assert seen == [span_samples(input_limit_ms(2000, 1.5), sr)] and seen[0] < 5 * sr
    assert len(res.audio) == span_samples(2000, sr) and res.speed_factor == 1.5


@pytest.mark.parametrize("rate", [0, -1])
def test_fit_refuses_a_sample_rate_it_cannot_place(rate):
    with pytest.raises(ValueError, match="sample rate"):
        fit_to_span(np.zeros(100, np.float32), rate, 1000)
