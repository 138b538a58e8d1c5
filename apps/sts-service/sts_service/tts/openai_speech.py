"""Speech from a model server: OpenAI-compatible ``/v1/audio/speech`` (Kokoro-FastAPI, speaches,
LocalAI, openedai-speech, ...), so a GPU machine can run a heavy voice.

Asks for WAV (PCM16, mono or stereo mixed down, 8-48 kHz), or takes raw ``pcm`` (the API's 24 kHz
16-bit mono) when that is what comes back. The header is the server's word: a rate, channel count
or sample format outside that is refused (a rate of 0 or 4e9 would reach the fit's arithmetic and
allocations), and no more samples are read than the span can use (``max_seconds``). The call is
bounded by the fragment's deadline (``timeout``). Thread-safe (one request per call).
"""

from __future__ import annotations

import io
import json
import wave

import numpy as np

from ..openai_api import MAX_AUDIO_BYTES, OpenAIClient
from ..translation import languages
from .base import SynthesisError

PCM_RATE = 24000  # the API's `pcm` format
MIN_RATE_HZ, MAX_RATE_HZ = 8000, 48000


def decode_audio(raw: bytes, content_type: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """WAV (or the API's raw 24 kHz pcm) -> float32 mono, rate; at most `max_seconds` of it."""
    if raw[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(raw)) as w:
                channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
                if width != 2:
                    raise SynthesisError(f"WAV with {8 * width}-bit samples (16-bit PCM expected)")
                if channels not in (1, 2):
                    raise SynthesisError(f"WAV with {channels} channels (mono or stereo expected)")
                if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
                    raise SynthesisError(f"WAV with sample rate {rate} Hz (accepted: {MIN_RATE_HZ}-{MAX_RATE_HZ})")
                frames = w.getnframes() if max_seconds is None else min(w.getnframes(), _cap(max_seconds, rate))
                data = w.readframes(frames)
        except (wave.Error, EOFError) as exc:
            raise SynthesisError(f"unreadable WAV: {exc}") from None
        whole = len(data) // (2 * channels) * channels  # a file cut mid-frame keeps its whole frames
        pcm = np.frombuffer(data, dtype="<i2", count=whole)
        audio = pcm.astype(np.float32).reshape(-1, channels).mean(axis=1) / 32768.0
        return audio, rate
    if "pcm" in content_type or content_type.startswith("audio/l16"):
        count = len(raw) // 2 if max_seconds is None else min(len(raw) // 2, _cap(max_seconds, PCM_RATE))
        return np.frombuffer(raw, dtype="<i2", count=count).astype(np.float32) / 32768.0, PCM_RATE
    raise SynthesisError(f"answer is not WAV audio (Content-Type {content_type or 'none'!r})")


def _cap(seconds: float, rate: int) -> int:
    return max(0, int(seconds * rate))


class OpenAISpeechSynthesizer:
    remote = True

    def __init__(self, base_url: str, model: str = "tts-1", api_key: str | None = None, *,
                 voice: str = "alloy", langs: set[str] | tuple[str, ...] | None = None,
                 timeout: float = 10.0) -> None:
        self.client = OpenAIClient(base_url, api_key, timeout=timeout, engine=f"openai:{model}",
                                   error=SynthesisError)
        self.model, self.voice = model, voice
        self._langs = set(langs or languages.LANGUAGES)
        self.name = f"openai:{model}"

    def languages(self) -> set[str]:
        return set(self._langs)

    def synthesize(self, text: str, language: str, voice: str | None = None, *,
                   timeout: float | None = None, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
        """`max_seconds`: no more audio than that is decoded (the span's use for it, see fit.input_limit_ms)."""
        if language not in self._langs:
            raise SynthesisError(f"{self.name}: language {language!r} not configured (--tts-server-languages)")
        body = {"model": self.model, "input": text, "voice": voice or self.voice, "response_format": "wav"}
        raw, ctype = self.client.post("audio/speech", json.dumps(body).encode("utf-8"), "application/json",
                                      timeout=timeout, limit=MAX_AUDIO_BYTES)
        try:
            audio, rate = decode_audio(raw, ctype, max_seconds)
        except SynthesisError as exc:
            raise SynthesisError(f"{self.name}: {exc}") from None
        if not len(audio):
            raise SynthesisError(f"{self.name}: empty audio")
        return audio, rate
