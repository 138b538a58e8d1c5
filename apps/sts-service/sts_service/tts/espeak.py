"""espeak-ng TTS: the default engine because it is a Debian package that speaks every target language.

Each call runs ``espeak-ng -v <voice> --stdout`` and parses the WAV it writes; a subprocess per call
keeps the engine trivially thread-safe and costs ~20 ms for 10 s of speech on this machine.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import wave

import numpy as np

from .base import SynthesisError

# Default espeak-ng voice per ISO 639-1 code (espeak-ng voice names).
DEFAULT_VOICES: dict[str, str] = {
    "en": "en-us",
    "es": "es",
    "ca": "ca",
    "fr": "fr-fr",
    "de": "de",
    "it": "it",
    "pt": "pt",
    "nl": "nl",
    "pl": "pl",
    "ru": "ru",
    "sv": "sv",
    "da": "da",
    "fi": "fi",
    "nb": "nb",
    "cs": "cs",
    "ro": "ro",
    "el": "el",
    "tr": "tr",
    "hu": "hu",
    "eu": "eu",
    "ja": "ja",
    "zh": "cmn",
    "ar": "ar",
    "hi": "hi",
}


def pcm_wav_to_float(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a 16-bit PCM WAV (possibly with a bogus streaming length header) to float32 mono."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            sr, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise SynthesisError(f"invalid WAV from TTS engine: {exc}") from exc
    if width != 2:
        raise SynthesisError(f"unsupported WAV sample width {width}")
    pcm = np.frombuffer(frames[: len(frames) - len(frames) % (2 * ch)], dtype="<i2")
    if ch > 1:
        pcm = pcm.reshape(-1, ch).mean(axis=1)
    return (pcm.astype(np.float32) / 32768.0), sr


@functools.lru_cache(maxsize=4)
def installed_voices(binary: str = "espeak-ng") -> frozenset[str]:
    """Every name ``-v`` accepts (language codes, voice names, voice files), lower-cased.

    espeak-ng silently falls back to its default voice for an unknown name, so we check first.
    """
    out = subprocess.run([binary, "--voices"], capture_output=True, text=True, timeout=10, check=False)
    names: set[str] = set()
    for line in out.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 5:
            continue
        lang, voice_name, file = cols[1], cols[3], cols[4]
        names.update({lang, voice_name, file, file.rsplit("/", 1)[-1]})
        names.update(re.findall(r"\(([^ )]+) \d+\)", line))  # other languages, e.g. "(en 3)"
    return frozenset(n.lower() for n in names)


class EspeakSynthesizer:
    """espeak-ng via subprocess. Thread-safe (no shared state)."""

    def __init__(
        self,
        *,
        rate: int = 175,
        voices: dict[str, str] | None = None,
        binary: str = "espeak-ng",
        timeout: float = 20.0,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise SynthesisError(f"{binary} not found: install the Debian package 'espeak-ng'")
        self._binary = path
        self.rate = int(rate)
        self.voices = {**DEFAULT_VOICES, **(voices or {})}
        self.timeout = timeout
        self.name = "espeak-ng"

    def languages(self) -> set[str]:
        installed = installed_voices(self._binary)
        return {lang for lang, v in self.voices.items() if v.split("+", 1)[0].lower() in installed}

    def synthesize(self, text: str, language: str, voice: str | None = None) -> tuple[np.ndarray, int]:
        voice = voice or self.voices.get(language)
        if voice is None:
            raise SynthesisError(f"espeak-ng: no voice configured for language {language!r}")
        if voice.split("+", 1)[0].lower() not in installed_voices(self._binary):
            raise SynthesisError(f"espeak-ng has no voice {voice!r} (see espeak-ng --voices)")
        text = text.replace("\0", " ").strip()
        cmd = [self._binary, "-v", voice, "-s", str(self.rate), "--stdout", "-b", "1"]
        try:
            proc = subprocess.run(
                cmd, input=text.encode("utf-8"), capture_output=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise SynthesisError(f"espeak-ng timed out after {self.timeout}s") from exc
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise SynthesisError(f"espeak-ng failed (voice {voice!r}, rc {proc.returncode}): {err}")
        return pcm_wav_to_float(proc.stdout)
