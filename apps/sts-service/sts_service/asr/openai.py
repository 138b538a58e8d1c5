"""Speech recognition on a model server: OpenAI-compatible ``/v1/audio/transcriptions``
(faster-whisper-server/speaches, vLLM, whisper.cpp's server, LocalAI, ...), so a GPU machine can
run a large Whisper while this service runs the rest.

The same contract as ``WhisperASR`` for the scheduler (``transcribe_batch``, ``max_batch``,
``warm_up``): a batch is sent as parallel requests (one fragment each, as the API takes), each
bounded by the batch's deadline (``timeout``). The energy gate runs here, so silence never costs
a request; the server's text passes the local guards where it gives what they need
(``verbose_json`` segments with ``no_speech_prob`` / ``avg_logprob``).
"""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..openai_api import OpenAIClient
from . import ASR_RATE
from .whisper import ASRError, Transcription, energy_gate


def wav_bytes(audio: np.ndarray, rate: int = ASR_RATE) -> bytes:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


class OpenAITranscriber:
    """Transcription by a server. Thread-safe (one request per fragment, no shared state)."""

    remote = True
    beam_size = 1  # the server decides how it decodes: the scheduler has no greedy mode to switch to

    def __init__(self, base_url: str, model: str = "whisper-1", api_key: str | None = None, *,
                 timeout: float = 20.0, language: str = "en", use_prompt: bool = False, max_batch: int = 4,
                 min_rms: float = 0.003, silence_rms: float = 1e-4, no_speech_threshold: float = 0.6,
                 logprob_threshold: float = -1.0) -> None:
        self.client = OpenAIClient(base_url, api_key, timeout=timeout, engine=f"openai:{model}", error=ASRError)
        self.model, self.language, self.use_prompt = model, language, use_prompt
        self.max_batch = max(1, max_batch)
        self.min_rms, self.silence_rms = min_rms, silence_rms
        self.no_speech_threshold, self.logprob_threshold = no_speech_threshold, logprob_threshold
        self._pool = ThreadPoolExecutor(max_workers=self.max_batch, thread_name_prefix="asr-http")
        self.name = f"openai:{model}"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def warm_up(self) -> list[tuple[int, bool, int, float]]:
        """One request with a second of low noise: the cost model starts from this server's round
        trip (window 3000, beam: the keys the scheduler uses for an engine without windows). A
        server that does not answer yet is not an error here: the fragments will say so."""
        audio = (0.05 * np.random.default_rng(0).standard_normal(ASR_RATE)).astype(np.float32)
        t0 = time.perf_counter()
        try:
            self._request(audio, None, None)
        except ASRError:
            return []
        return [(3000, False, 1, time.perf_counter() - t0)]

    def _gate(self, audio: np.ndarray) -> Transcription | None:
        return energy_gate(audio, silence_rms=self.silence_rms, min_rms=self.min_rms, language=self.language)

    def _request(self, audio: np.ndarray, prompt: str | None, timeout: float | None) -> Transcription:
        fields = {"model": self.model, "language": self.language, "response_format": "verbose_json",
                  "temperature": "0"}
        if prompt and self.use_prompt:
            fields["prompt"] = prompt[-500:]
        data = self.client.post_form("audio/transcriptions", fields,
                                     {"file": ("fragment.wav", wav_bytes(audio), "audio/wav")}, timeout=timeout)
        text = data.get("text")
        if not isinstance(text, str):
            raise ASRError(f"{self.name}: unexpected response (no text)")
        for seg in data.get("segments") or []:
            if not isinstance(seg, dict):
                continue
            no_speech, logprob = seg.get("no_speech_prob"), seg.get("avg_logprob")
            if isinstance(no_speech, (int, float)) and isinstance(logprob, (int, float)) and (
                    no_speech > self.no_speech_threshold and logprob < self.logprob_threshold):
                return Transcription("", True, "no_speech_prob", self.language)
        text = text.strip()
        if not any(c.isalnum() for c in text):
            return Transcription("", True, "empty", self.language)
        return Transcription(text, False, "", self.language)

    def transcribe_batch(self, audios: Sequence[np.ndarray], prompts: Sequence[str | None] | None = None,
                         beam_size: int | None = None, *, timeout: float | None = None) -> list[Transcription]:
        audios = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
        prompts = list(prompts) if prompts is not None else [None] * len(audios)
        results: list[Transcription | None] = [self._gate(a) for a in audios]
        todo = [i for i, r in enumerate(results) if r is None]
        futures = {i: self._pool.submit(self._request, audios[i], prompts[i], timeout) for i in todo}
        for i, fut in futures.items():
            results[i] = fut.result()  # the first failure fails the batch, as a local model error would
        return results  # type: ignore[return-value]

    def transcribe(self, audio: np.ndarray, prompt: str | None = None, beam_size: int | None = None, *,
                   timeout: float | None = None) -> Transcription:
        return self.transcribe_batch([audio], [prompt], beam_size, timeout=timeout)[0]
