"""Duration fit: make a dub fit the time span of the speech it replaces.

The media timeline has exactly ``span_ms`` for the dub, so the output must never be longer than
``floor(span_ms * sr / 1000)`` samples (never longer than the span). We trim the TTS engine's leading/trailing silence, speed
speech up (pitch kept) by rubberband (Debian ``rubberband-cli``) or ffmpeg ``atempo`` if it is
missing, capped at ``max_speed`` so it stays intelligible, then cut what still overflows with a
short fade-out (no click) and pad the rest with silence. Input past what the span can use at
``max_speed`` (``input_limit_ms``) is dropped first, so an engine that returns far too much audio
costs no more than one that returns enough. Last, the dub is level-matched to the
original span's loudness when it is given (``loudness.py``).

Measured here (2 cores): 4.3 s of 22.05 kHz Piper speech sped up 1.27x in ~26 ms with rubberband's
R2 engine (temp WAVs on /dev/shm), ~52 ms with its R3 engine (``fine=True``), ~65 ms with ffmpeg atempo. Thread-safe (no shared state).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .loudness import match_loudness

log = logging.getLogger(__name__)

FADE_MS = 10.0
# Leading silence a TTS engine may put before the speech (the trim removes it): input kept beyond
# what the span uses at max speed, so the cap never cuts speech that would have been played.
LEAD_SLACK_MS = 1000.0
# Scratch files for the stretch tools live in RAM when it can: a private TemporaryDirectory (mode
# 0700, random name) under /dev/shm, so the shared location is not a predictable-name risk.
_TMP_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None  # nosec B108


class FitError(Exception):
    """A time-stretch tool failed."""


@dataclass
class FitResult:
    audio: np.ndarray  # float32 mono, exactly floor(span_ms * sample_rate / 1000) samples
    sample_rate: int
    speed_factor: float  # applied tempo, 1.0 = none
    gain_db: float = 0.0  # level-matching gain applied (loudness.py), 0 = none


def find_rubberband() -> str | None:
    """Path of the rubberband CLI, or None (kept separate so tests can pretend it is missing)."""
    return shutil.which("rubberband")


def find_ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def span_samples(span_ms: float, sample_rate: int) -> int:
    return max(0, int(math.floor(span_ms * sample_rate / 1000.0 + 1e-9)))


def input_limit_ms(span_ms: float, max_speed: float) -> float:
    """The most input `fit_to_span` uses for `span_ms`: at `max_speed` the rest is cut anyway."""
    return max(0.0, span_ms) * max_speed + LEAD_SLACK_MS


def trim_silence(
    audio: np.ndarray,
    sample_rate: int,
    *,
    threshold_db: float = -40.0,
    floor_db: float = -60.0,
    frame_ms: float = 10.0,
    keep_ms: float = 20.0,
) -> np.ndarray:
    """Drop leading/trailing frames quieter than ``threshold_db`` below the loudest frame.

    ``keep_ms`` of margin is kept on each side so soft onsets and word tails survive.
    """
    n = len(audio)
    frame = max(1, int(sample_rate * frame_ms / 1000))
    frames = n // frame
    if frames == 0:
        return audio
    rms = np.sqrt(
        np.mean(np.square(audio[: frames * frame].reshape(frames, frame), dtype=np.float64), axis=1)
    )
    peak = float(rms.max())
    thresh = max(peak * 10 ** (threshold_db / 20), 10 ** (floor_db / 20))
    loud = np.flatnonzero(rms >= thresh)
    if loud.size == 0:
        return audio[:0]
    keep = int(sample_rate * keep_ms / 1000)
    start = max(0, loud[0] * frame - keep)
    end = min(n, (loud[-1] + 1) * frame + keep)
    return audio[start:end]


def fit_to_span(
    audio: np.ndarray,
    sample_rate: int,
    span_ms: float,
    *,
    max_speed: float = 1.5,
    min_speed: float = 1.0,
    trim_silence: bool = True,
    pad: bool = True,
    fine: bool = False,
    target_lufs: float | None = None,
) -> FitResult:
    """Fit ``audio`` into ``span_ms``; with ``target_lufs`` (the original span's loudness) the
    result is level-matched to it (``loudness.match_loudness``).

    Tempo is ``len / span`` clamped to ``[min_speed, max_speed]`` (the default min 1.0 means
    short clips are never slowed down; a min below 1 lets them stretch to fill the span).
    The result is exactly the span's length (``pad=False``: at most the span's length).
    ``fine`` selects rubberband's R3 engine (smoother, ~2x slower) instead of R2.
    """
    if max_speed < 1.0 or min_speed <= 0 or min_speed > max_speed:
        raise ValueError(f"need 0 < min_speed <= max_speed and max_speed >= 1 (got {min_speed}, {max_speed})")
    if sample_rate <= 0:
        raise ValueError(f"sample rate {sample_rate} Hz: the audio cannot be placed on the span")
    target = span_samples(span_ms, sample_rate)
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)[: span_samples(input_limit_ms(span_ms, max_speed), sample_rate)]
    if trim_silence:
        audio = _trim(audio, sample_rate)
    speed = 1.0
    if len(audio) and target:
        tempo = min(max(len(audio) / target, min_speed), max_speed)
        if abs(tempo - 1.0) > 0.01:
            audio = time_stretch(audio, sample_rate, tempo, fine=fine)
            speed = tempo
    fitted = _cut_or_pad(audio, target, sample_rate, pad)
    fitted, gain_db = match_loudness(fitted, sample_rate, target_lufs)
    return FitResult(fitted, sample_rate, speed, gain_db)


_trim = trim_silence  # the keyword argument of fit_to_span shadows the function's name


def time_stretch(audio: np.ndarray, sample_rate: int, tempo: float, *, fine: bool = False) -> np.ndarray:
    """Change tempo (duration / ``tempo``), keeping pitch: rubberband, else ffmpeg atempo."""
    rubberband = find_rubberband()
    if rubberband:
        try:
            return _rubberband(rubberband, audio, sample_rate, tempo, fine)
        except FitError as exc:
            log.warning("rubberband failed, trying ffmpeg atempo: %s", exc)
    ffmpeg = find_ffmpeg()
    if ffmpeg:
        return _atempo(ffmpeg, audio, sample_rate, tempo)
    raise FitError("no time-stretch tool: install the Debian package 'rubberband-cli' (or 'ffmpeg')")


def _rubberband(binary: str, audio: np.ndarray, sample_rate: int, tempo: float, fine: bool) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="livedub-fit-", dir=_TMP_DIR) as tmp:
        src, dst = Path(tmp, "in.wav"), Path(tmp, "out.wav")
        _write_wav(src, audio, sample_rate)
        proc = subprocess.run(
            [binary, "-q", "--fine" if fine else "--fast", f"--tempo={tempo:.6f}", str(src), str(dst)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0 or not dst.exists():
            raise FitError(
                f"rubberband rc {proc.returncode}: {proc.stderr.decode('utf-8', 'replace').strip()}"
            )
        return _read_wav(dst)


def _atempo(binary: str, audio: np.ndarray, sample_rate: int, tempo: float) -> np.ndarray:
    # atempo accepts 0.5..100 in ffmpeg >= 5; chain two filters below 0.5 for older builds.
    filters = f"atempo={tempo:.6f}" if tempo >= 0.5 else f"atempo=0.5,atempo={tempo / 0.5:.6f}"
    cmd = [binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar", str(sample_rate)]
    cmd += ["-ac", "1", "-i", "pipe:0", "-filter:a", filters, "-f", "f32le", "pipe:1"]
    proc = subprocess.run(
        cmd, input=audio.astype("<f4").tobytes(), capture_output=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise FitError(
            f"ffmpeg atempo rc {proc.returncode}: {proc.stderr.decode('utf-8', 'replace').strip()}"
        )
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def _cut_or_pad(audio: np.ndarray, target: int, sample_rate: int, pad: bool) -> np.ndarray:
    if len(audio) > target:
        audio = audio[:target].copy()
        fade = min(target, int(sample_rate * FADE_MS / 1000))
        if fade:
            audio[target - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return audio
    if pad and len(audio) < target:
        return np.concatenate([audio, np.zeros(target - len(audio), dtype=np.float32)])
    return audio.astype(np.float32, copy=False)


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        ch, width, frames = w.getnchannels(), w.getsampwidth(), w.readframes(w.getnframes())
    if width != 2:
        raise FitError(f"unexpected {width * 8}-bit WAV from rubberband")
    pcm = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return pcm.reshape(-1, ch).mean(axis=1) if ch > 1 else pcm
