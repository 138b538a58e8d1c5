"""Speech from a model server: OpenAI-compatible ``/v1/audio/speech`` (Kokoro-FastAPI, speaches,
LocalAI, openedai-speech, ...), so a GPU machine can run a heavy voice.

Asks for WAV (any rate; PCM16 mono or stereo, mixed down), or takes raw ``pcm`` (the API's 24 kHz
16-bit mono) when that is what comes back. The call is bounded by the fragment's deadline
(``timeout``). Thread-safe (one request per call).
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


def decode_audio(raw: bytes, content_type: str) -> tuple[np.ndarray, int]:
    """WAV (or the API's raw 24 kHz pcm) -> float32 mono, rate."""
    if raw[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(raw)) as w:
                if w.getsampwidth() != 2:
                    raise SynthesisError(f"WAV with {8 * w.getsampwidth()}-bit samples (16-bit expected)")
                channels, rate = w.getnchannels(), w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        except (wave.Error, EOFError) as exc:
            raise SynthesisError(f"unreadable WAV: {exc}") from None
        audio = pcm.astype(np.float32).reshape(-1, channels).mean(axis=1) / 32768.0
        return audio, rate
    if "pcm" in content_type or content_type.startswith("audio/l16"):
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0, PCM_RATE
    raise SynthesisError(f"answer is not WAV audio (Content-Type {content_type or 'none'!r})")


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
                   timeout: float | None = None) -> tuple[np.ndarray, int]:
        if language not in self._langs:
            raise SynthesisError(f"{self.name}: language {language!r} not configured (--tts-server-languages)")
        body = {"model": self.model, "input": text, "voice": voice or self.voice, "response_format": "wav"}
        raw, ctype = self.client.post("audio/speech", json.dumps(body).encode("utf-8"), "application/json",
                                      timeout=timeout, limit=MAX_AUDIO_BYTES)
        try:
            audio, rate = decode_audio(raw, ctype)
        except SynthesisError as exc:
            raise SynthesisError(f"{self.name}: {exc}") from None
        if not len(audio):
            raise SynthesisError(f"{self.name}: empty audio")
        return audio, rate
