"""A monologue without a pause: speech that never stops long enough to close a fragment.

``make_monologue_media(path, seconds=60, ...)`` writes an MP4 in the demo fixture's format (H.264
yuv420p, 2 s GOP, no B-frames; AAC 48 kHz stereo, the same quiet music bed) whose audio is the
Piper voice reading :data:`dense.SENTENCES` back to back with every silence inside and between
them squeezed to at most ``MAX_PAUSE_S`` (40 ms): far below the shortest pause that ends a speech
fragment (150 ms), so the segmenter only ever cuts it at its maximum fragment length. No sync
markers (a beep would have to sit in speech). The sidecar (:class:`MonologueInfo`) records the
longest non-speech stretch the pipeline's VAD finds in the mix (``longest_pause_s``).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import speech
from .dense import SENTENCES, vad_activity
from .fixtures import (
    SAMPLE_RATE,
    SPEECH_GAIN,
    FixtureInfo,
    _cached,
    _encode,
    _Lock,
    _log,
    _music_bed,
    _write_sidecar,
    default_cache_dir,
)

__all__ = ["MAX_PAUSE_S", "MonologueInfo", "make_monologue_media", "cached_monologue_media", "squeeze_pauses"]

MONOLOGUE_VERSION = 1
MAX_PAUSE_S = 0.040
_FRAME_S = 0.010


@dataclass
class MonologueInfo(FixtureInfo):
    longest_pause_s: float = 0.0
    speech_share_measured: float = 0.0
    text: str = ""


def squeeze_pauses(x: np.ndarray, sr: int, max_pause_s: float = MAX_PAUSE_S, floor_db: float = -35.0) -> np.ndarray:
    """`x` with every run of quiet 10 ms frames (below peak + `floor_db`) cut to `max_pause_s`."""
    hop = int(sr * _FRAME_S)
    n = len(x) // hop
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    quiet = rms < rms.max() * 10 ** (floor_db / 20)
    keep = int(round(max_pause_s / _FRAME_S))
    parts, i = [], 0
    while i < n:
        j = i
        while j < n and quiet[j] == quiet[i]:
            j += 1
        a, b = i * hop, j * hop
        if quiet[i] and j - i > keep:
            b = a + keep * hop
        parts.append(x[a:b])
        i = j
    return np.concatenate(parts + [x[n * hop:]]).astype(np.float32)


def make_monologue_media(path: str | os.PathLike, *, seconds: float = 60, width: int = 320, height: int = 180,
                         fps: int = 30, seed: int = 1234) -> MonologueInfo:
    path = Path(path)
    params = {"version": MONOLOGUE_VERSION, "seconds": seconds, "width": width, "height": height, "fps": fps,
              "seed": seed, "max_pause_s": MAX_PAUSE_S}
    with _Lock(path):
        hit = _cached(path, params, MonologueInfo)
        if hit is not None:
            return hit
        t_start = time.monotonic()
        sr, n = SAMPLE_RATE, int(round(seconds * SAMPLE_RATE))
        _log(f"making monologue media {path} ({seconds:g} s, no pause) ...")
        voice, said, k = [], [], 0
        while sum(len(c) for c in voice) < n:
            text = SENTENCES[k % len(SENTENCES)]
            voice.append(squeeze_pauses(speech.speak(text, sr), sr))
            said.append(text)
            k += 1
        track = np.concatenate(voice)[:n]
        audio = _music_bed(n, sr, np.random.default_rng(seed)) + SPEECH_GAIN * track[:, None]
        peak = float(np.abs(audio).max())
        if peak > 0.99:
            audio *= 0.99 / peak
        active = vad_activity(audio.mean(axis=1), sr)
        idx = np.nonzero(active)[0]
        gaps = np.diff(idx) - 1 if len(idx) > 1 else np.zeros(1)
        longest = float(gaps.max()) * 512 / 16000
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="livedub-fx-", dir=path.parent) as td:
            raw = Path(td) / "audio.f32"
            np.ascontiguousarray(audio, dtype="<f4").tofile(raw)
            out_tmp = Path(td) / "out.mp4"
            _encode(out_tmp, width=width, height=height, fps=fps, seconds=seconds, marker_frames=[], audio_raw=raw)
            os.replace(out_tmp, path)
        info = MonologueInfo(path=str(path), duration=float(seconds), fps=float(fps), sample_rate=sr, width=width,
                             height=height, speech_spans=[(0.0, float(seconds), " ".join(said))], has_audio=True,
                             params=params, generation_seconds=round(time.monotonic() - t_start, 2),
                             longest_pause_s=round(longest, 3), speech_share_measured=round(float(active.mean()), 4),
                             text=" ".join(said))
        _write_sidecar(info)
        _log(f"done: {path} in {info.generation_seconds:.1f} s (longest pause {longest * 1000:.0f} ms)")
        return info


def cached_monologue_media(cache_dir: str | os.PathLike | None = None, *, seconds: float = 60) -> MonologueInfo:
    """The monologue at ``<cache>/monologue-<seconds>s-v<MONOLOGUE_VERSION>.mp4``."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return make_monologue_media(cache / f"monologue-{seconds:g}s-v{MONOLOGUE_VERSION}.mp4", seconds=seconds)
