"""Demo/test media generated with ffmpeg and the Piper English voice.

``make_demo_media(path, seconds=60, ...)`` writes an MP4 (H.264 yuv420p, fixed 2 s GOP, no
B-frames; AAC 48 kHz stereo) with:

* natural English speech (Piper ``joe`` voice, sentences from ``SENTENCES`` cycled),
* a quiet synthesised music bed (soft chord progression, about -26 dBFS RMS) under everything,
* sync markers in the pauses between sentences: one fully white video frame (the rest of the
  video is a darkened ``testsrc2`` pattern) and, starting at exactly that frame's time, a 50 ms
  1 kHz beep. Markers sit on exact frame times (``k / fps``) at the middle of each pause.

A :class:`FixtureInfo` is returned and written as a JSON sidecar (``<path>.json``). If the file and
a sidecar with the same parameters exist, they are reused (generation is skipped). Concurrent
generators of the same path are serialised with a lock file.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import speech

__all__ = [
    "FixtureInfo",
    "SENTENCES",
    "make_demo_media",
    "make_no_audio_video",
    "cached_demo_media",
    "default_cache_dir",
    "FIXTURE_VERSION",
    "BEEP_HZ",
    "BEEP_S",
    "BEEP_RAMP_S",
]

FIXTURE_VERSION = 3
SAMPLE_RATE = 48000
BEEP_HZ = 1000.0
BEEP_S = 0.050
BEEP_RAMP_S = 0.002  # raised-cosine fade in/out of the beep (analysis.detect_beeps compensates it)
BEEP_AMPLITUDE = 0.5
SPEECH_GAIN = 0.85  # Piper output peaks at 1.0; speech RMS ends up around -20 dBFS
MUSIC_DBFS = -26.0

SENTENCES = [
    "Good evening, and welcome to the program. We have a lot to talk about tonight.",
    "The weather today is calm and bright across the whole valley.",
    "Our team has been working on this project for almost six months now.",
    "Please remember to bring your notebook and a pen to the meeting tomorrow.",
    "The first train to the city leaves the station at seven o'clock.",
    "She opened the kitchen window and listened to the rain for a while.",
    "We will need a little more time to finish the annual report.",
    "The history museum is free for children and students on Sundays.",
    "He went to the market and bought fresh bread, cheese and a bottle of milk.",
    "Thank you all for joining us here this afternoon, it means a lot.",
    "The river is much higher this year than it was last spring.",
    "Excuse me, can you tell me where the nearest bus station is?",
    "Our guests from the north will arrive a little after noon.",
    "The small cafe on the corner of the square makes excellent coffee.",
    "That concludes our news for this hour. Thank you for listening.",
]


@dataclass
class FixtureInfo:
    path: str
    duration: float
    fps: float
    sample_rate: int
    width: int
    height: int
    speech_spans: list[tuple[float, float, str]] = field(default_factory=list)
    markers: list[float] = field(default_factory=list)  # exact frame times k/fps, seconds
    marker_frames: list[int] = field(default_factory=list)
    has_audio: bool = True
    params: dict = field(default_factory=dict)
    generation_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> FixtureInfo:
        d = dict(d)
        d["speech_spans"] = [tuple(s) for s in d.get("speech_spans", [])]
        return cls(**d)

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".json")


def _log(msg: str) -> None:
    print(f"[livedub fixtures] {msg}", file=sys.stderr, flush=True)


def _need(exe: str) -> str:
    found = shutil.which(exe)
    if not found:
        raise RuntimeError(f"{exe} not found: install the Debian package 'ffmpeg'")
    return found


# ---------------------------------------------------------------------------------------- speech
def _trim(x: np.ndarray, sr: int, thresh_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence (10 ms frames below peak + thresh_db), keep 20 ms margins."""
    hop = sr // 100
    n = len(x) // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    lim = rms.max() * 10 ** (thresh_db / 20)
    idx = np.nonzero(rms > lim)[0]
    if len(idx) == 0:
        return x
    a = max(0, idx[0] * hop - 2 * hop)
    b = min(len(x), (idx[-1] + 1) * hop + 2 * hop)
    return x[a:b]


def _synth(text: str) -> np.ndarray:
    """Piper speech for ``text`` at 48 kHz, trimmed, float32 mono."""
    return _trim(speech.speak(text, SAMPLE_RATE), SAMPLE_RATE)


# ----------------------------------------------------------------------------------------- music
def _music_bed(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Soft stereo chord progression (all partials < 800 Hz, far from the 1 kHz beep), -26 dBFS RMS."""
    t = np.arange(n) / sr
    # C - Am - F - G (C major), each chord 2 s, notes in octaves 2-4
    chords = [
        [130.81, 164.81, 196.00, 261.63],
        [110.00, 164.81, 220.00, 261.63],
        [87.31, 174.61, 220.00, 261.63],
        [98.00, 196.00, 246.94, 293.66],
    ]
    chord_s = 2.0
    out = np.zeros((n, 2), dtype=np.float64)
    detune = rng.uniform(0.2, 0.6)
    n_chords = int(np.ceil(n / sr / chord_s)) + 1
    for ci in range(n_chords):
        start = ci * chord_s
        a = int(max(0, (start - 0.3) * sr))
        b = int(min(n, (start + chord_s + 0.3) * sr))
        if a >= b:
            continue
        tt = t[a:b] - start
        # smooth envelope: 0.3 s fade in/out overlapping the neighbours (cross-fade)
        env = np.clip((tt + 0.3) / 0.6, 0, 1) * np.clip((chord_s + 0.3 - tt) / 0.6, 0, 1)
        env = np.sin(env * np.pi / 2) ** 2
        if ci == 0:  # the bed is at full level from t=0
            env = np.where(tt < 0.3, 1.0, env)
        for k, f in enumerate(chords[ci % len(chords)]):
            amp = 1.0 / (1 + 0.5 * k)
            for ch, df in ((0, -detune), (1, detune)):
                ph = 2 * np.pi * (f + df) * tt
                tone = np.sin(ph) + 0.25 * np.sin(2 * ph)
                if 2 * f > 800:
                    tone = np.sin(ph)
                out[a:b, ch] += amp * env * tone
    rms = np.sqrt(np.mean(out**2))
    out *= 10 ** (MUSIC_DBFS / 20) / max(rms, 1e-9)
    return out.astype(np.float32)


def _beep(sr: int) -> np.ndarray:
    n = int(round(BEEP_S * sr))
    t = np.arange(n) / sr
    x = BEEP_AMPLITUDE * np.sin(2 * np.pi * BEEP_HZ * t)
    r = int(round(BEEP_RAMP_S * sr))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
    x[:r] *= ramp
    x[-r:] *= ramp[::-1]
    return x.astype(np.float32)


# ----------------------------------------------------------------------------------------- video
def _video_filter(width: int, height: int, fps: float, seconds: float, marker_frames: list[int]) -> str:
    src = f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"
    # darken: luma scaled towards black (mean luma ~ 40 of 255), chroma desaturated
    dark = "format=yuv420p,lutyuv=y=16+(val-16)*0.30:u=128+(val-128)*0.5:v=128+(val-128)*0.5"
    chain = f"{src},{dark}"
    if marker_frames:
        expr = "+".join(f"eq(n\\,{k})" for k in marker_frames)
        chain += f",drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='{expr}'"
    return chain + ",format=yuv420p"


def _encode(
    out_tmp: Path,
    *,
    width: int,
    height: int,
    fps: float,
    seconds: float,
    marker_frames: list[int],
    audio_raw: Path | None,
) -> None:
    ffmpeg = _need("ffmpeg")
    gop = int(round(2 * fps))
    vf = _video_filter(width, height, fps, seconds, marker_frames)
    script = out_tmp.with_suffix(".filter")
    script.write_text(f"{vf}[v]")
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-filter_complex_script", str(script)]
    if audio_raw is not None:
        cmd += ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "2", "-i", str(audio_raw)]
    cmd += ["-map", "[v]"]
    if audio_raw is not None:
        cmd += ["-map", "0:a"]
    cmd += [
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-profile:v", "high",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
        "-r", str(fps),
    ]
    if audio_raw is not None:
        cmd += ["-c:a", "aac", "-b:a", "160k", "-ar", str(SAMPLE_RATE), "-ac", "2"]
    cmd += ["-t", f"{seconds:.6f}", "-movflags", "+faststart", "-f", "mp4", str(out_tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    script.unlink(missing_ok=True)
    if res.returncode != 0:
        raise RuntimeError(f"ffmpeg failed making {out_tmp} (rc {res.returncode}):\n{res.stderr[-3000:]}")


# ----------------------------------------------------------------------------------------- cache
class _Lock:
    def __init__(self, path: Path):
        self.path = Path(str(path) + ".lock")
        self.fh = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")  # noqa: SIM115
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _cached(path: Path, params: dict, cls: type[FixtureInfo] = FixtureInfo) -> FixtureInfo | None:
    side = sidecar_path(path)
    if not (path.exists() and side.exists()):
        return None
    try:
        d = json.loads(side.read_text())
        info = cls.from_dict(d)
    except (ValueError, TypeError):
        return None
    if info.params != params:
        return None
    info.path = str(path)
    return info


def _write_sidecar(info: FixtureInfo) -> None:
    side = info.sidecar
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(info.to_json())
    os.replace(tmp, side)


# ------------------------------------------------------------------------------------ public API
def make_demo_media(
    path: str | os.PathLike,
    *,
    seconds: float = 60.0,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seed: int = 1234,
    pause_range: tuple[float, float] = (1.0, 1.5),
    force: bool = False,
) -> FixtureInfo:
    """Generate (or reuse) the demo MP4 at ``path``; see the module docstring."""
    path = Path(path)
    params = {
        "kind": "demo",
        "version": FIXTURE_VERSION,
        "seconds": float(seconds),
        "width": int(width),
        "height": int(height),
        "fps": fps,
        "seed": int(seed),
        "pause_range": [float(pause_range[0]), float(pause_range[1])],
    }
    with _Lock(path):
        if not force:
            hit = _cached(path, params)
            if hit is not None:
                return hit
        t_start = time.monotonic()
        _log(f"generating {path} ({seconds:g} s, {width}x{height}@{fps}) ...")
        rng = np.random.default_rng(seed)
        sr = SAMPLE_RATE
        n = int(round(seconds * sr))
        speech = np.zeros(n, dtype=np.float32)
        beep = _beep(sr)
        order = list(range(len(SENTENCES)))
        offset = int(rng.integers(len(SENTENCES)))
        order = order[offset:] + order[:offset]
        clips: dict[int, np.ndarray] = {}
        spans: list[tuple[float, float, str]] = []
        marker_frames: list[int] = []
        last_frame = int(np.floor(seconds * fps)) - 1

        def add_marker(pause_start: float, pause_end: float) -> None:
            k = int(round((pause_start + pause_end) / 2 * fps))
            if 1 <= k <= last_frame - 2 and k / fps + BEEP_S < seconds - 0.1:
                marker_frames.append(k)

        cursor = 0.0
        i = 0
        while True:
            pause = float(rng.uniform(*pause_range))
            idx = order[i % len(order)]
            if idx not in clips:
                t0 = time.monotonic()
                clips[idx] = _synth(SENTENCES[idx])
                _log(f"  tts {len(clips)}/{len(SENTENCES)}: {len(clips[idx]) / sr:.2f} s "
                     f"in {time.monotonic() - t0:.2f} s")
            clip = clips[idx]
            start = cursor + pause
            end = start + len(clip) / sr
            if end > seconds - 0.3:
                # tail: remaining time is a pause; put a marker in it if it is long enough
                if seconds - cursor >= 0.8:
                    add_marker(cursor, seconds - 0.2)
                break
            add_marker(cursor, start)
            a = int(round(start * sr))
            speech[a : a + len(clip)] += SPEECH_GAIN * clip
            spans.append((round(a / sr, 6), round((a + len(clip)) / sr, 6), SENTENCES[idx]))
            cursor = end
            i += 1
        music = _music_bed(n, sr, rng)
        audio = music + speech[:, None]
        markers = [k / fps for k in marker_frames]
        for k in marker_frames:
            a = int(round(k * sr / fps))
            seg = audio[a : a + len(beep)]
            seg += beep[: len(seg), None]
        peak = float(np.abs(audio).max())
        if peak > 0.99:
            audio *= 0.99 / peak
        _log(f"  audio ready: {len(spans)} sentences, {len(markers)} markers "
             f"({time.monotonic() - t_start:.1f} s); encoding ...")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="livedub-fx-", dir=path.parent) as td:
            raw = Path(td) / "audio.f32"
            np.ascontiguousarray(audio, dtype="<f4").tofile(raw)
            out_tmp = Path(td) / "out.mp4"
            t0 = time.monotonic()
            _encode(out_tmp, width=width, height=height, fps=fps, seconds=seconds,
                    marker_frames=marker_frames, audio_raw=raw)
            _log(f"  encoded in {time.monotonic() - t0:.1f} s")
            os.replace(out_tmp, path)
        info = FixtureInfo(
            path=str(path),
            duration=float(seconds),
            fps=float(fps),
            sample_rate=sr,
            width=width,
            height=height,
            speech_spans=spans,
            markers=markers,
            marker_frames=marker_frames,
            has_audio=True,
            params=params,
            generation_seconds=round(time.monotonic() - t_start, 2),
        )
        _write_sidecar(info)
        _log(f"done: {path} in {info.generation_seconds:.1f} s")
        return info


def make_no_audio_video(
    path: str | os.PathLike,
    seconds: float = 10.0,
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    marker_every_s: float = 4.0,
    force: bool = False,
) -> FixtureInfo:
    """A video-only MP4 (same dark pattern, a white marker frame every ``marker_every_s``)."""
    path = Path(path)
    params = {
        "kind": "no_audio",
        "version": FIXTURE_VERSION,
        "seconds": float(seconds),
        "width": int(width),
        "height": int(height),
        "fps": fps,
        "marker_every_s": float(marker_every_s),
    }
    with _Lock(path):
        if not force:
            hit = _cached(path, params)
            if hit is not None:
                return hit
        t_start = time.monotonic()
        _log(f"generating {path} (video only, {seconds:g} s) ...")
        step = int(round(marker_every_s * fps))
        last = int(np.floor(seconds * fps)) - 2
        marker_frames = list(range(step // 2, last, step))
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="livedub-fx-", dir=path.parent) as td:
            out_tmp = Path(td) / "out.mp4"
            _encode(out_tmp, width=width, height=height, fps=fps, seconds=seconds,
                    marker_frames=marker_frames, audio_raw=None)
            os.replace(out_tmp, path)
        info = FixtureInfo(
            path=str(path), duration=float(seconds), fps=float(fps), sample_rate=0,
            width=width, height=height, markers=[k / fps for k in marker_frames],
            marker_frames=marker_frames, has_audio=False, params=params,
            generation_seconds=round(time.monotonic() - t_start, 2),
        )
        _write_sidecar(info)
        _log(f"done: {path} in {info.generation_seconds:.1f} s")
        return info


def default_cache_dir() -> Path:
    """``$LIVEDUB_CACHE`` or ``~/.cache/livedub`` (created)."""
    d = Path(os.environ.get("LIVEDUB_CACHE") or Path.home() / ".cache" / "livedub")
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_demo_media(
    cache_dir: str | os.PathLike | None = None,
    *,
    seconds: float = 60,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seed: int = 1234,
) -> FixtureInfo:
    """The demo fixture at a parameter-named path in the cache dir (generated once, then reused).

    ``<cache>/demo-<seconds>s-<w>x<h>-<fps>fps-s<seed>-v<FIXTURE_VERSION>.mp4``; cache dir default:
    :func:`default_cache_dir`.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    name = f"demo-{seconds:g}s-{width}x{height}-{fps}fps-s{seed}-v{FIXTURE_VERSION}.mp4"
    return make_demo_media(cache / name, seconds=seconds, width=width, height=height, fps=fps, seed=seed)
