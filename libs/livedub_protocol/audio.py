"""PCM16 on the wire: the one place samples become bytes and back."""

from __future__ import annotations

import numpy as np

# What `stream:init`'s `audio.sample_rate_hz` may say, and what a client that leaves it out sends.
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000
DEFAULT_SAMPLE_RATE_HZ = 16000


def float_to_pcm16(x: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> pcm_s16le bytes (clipped)."""
    return (np.clip(np.asarray(x, np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def pcm16_to_float(audio: bytes) -> np.ndarray:
    """pcm_s16le bytes -> float32 in [-1, 1)."""
    return np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0


def pcm16_duration_ms(audio: bytes, sample_rate_hz: int) -> float:
    return (len(audio) // 2) * 1000.0 / sample_rate_hz
