"""Measurement tools for outputs: flashes, beeps, A/V offset, packets, loudness, probing.

Time reference: every time returned here is an **absolute container/stream timestamp in
seconds** (``pts * time_base`` of the decoded frame, the same clock for audio and video), not
"seconds since the first frame". Use :func:`first_pts` to get the first video/audio pts when a
relative time is wanted (e.g. ``flash - first_pts(p)["video"]``). For MP4 fixtures made by
:mod:`livedub_testkit.fixtures` both start at 0, so times equal the FixtureInfo times.

Also: :func:`record_stream` / :func:`publish` / :func:`stop_process` run ffmpeg to record or
publish RTMP streams.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np

__all__ = [
    "detect_flashes",
    "detect_beeps",
    "av_offsets",
    "first_pts",
    "video_packets",
    "packet_times",
    "max_gap",
    "decode_audio",
    "audio_rms_dbfs",
    "audio_rms_series",
    "probe",
    "ebur128_lufs",
    "record_stream",
    "publish",
    "stop_process",
]

BEEP_HZ = 1000.0
BEEP_RAMP_S = 0.002  # keep in sync with fixtures.BEEP_RAMP_S


def _av():
    import av

    return av


def _key(path) -> tuple:
    p = Path(path)
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


# ------------------------------------------------------------------------------------ video
@functools.lru_cache(maxsize=8)
def _video_lumas(key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(pts seconds, mean luma 0-255) of every decoded video frame, in presentation order."""
    av = _av()
    times, lumas = [], []
    with av.open(key[0]) as c:
        if not c.streams.video:
            return np.zeros(0), np.zeros(0)
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        tb = vs.time_base
        for frame in c.decode(vs):
            if frame.pts is None:
                continue
            small = frame.reformat(width=64, height=36, format="gray")
            lumas.append(float(small.to_ndarray().mean()))
            times.append(float(frame.pts * tb))
    order = np.argsort(times, kind="stable")
    return np.asarray(times)[order], np.asarray(lumas)[order]


def detect_flashes(path, *, threshold: float = 200.0) -> list[float]:
    """Absolute pts (s) of video frames whose mean luma (0-255, full range) is >= ``threshold``.

    A run of consecutive white frames counts as one flash at its first frame.
    """
    times, lumas = _video_lumas(_key(path))
    out: list[float] = []
    prev_white = False
    for t, y in zip(times, lumas, strict=True):
        white = y >= threshold
        if white and not prev_white:
            out.append(float(t))
        prev_white = white
    return out


def first_pts(path) -> dict[str, float | None]:
    """First decoded frame pts (s) of the video and the audio stream (None if absent)."""
    times, _ = _video_lumas(_key(path))
    audio = decode_audio(path)
    return {
        "video": float(times[0]) if len(times) else None,
        "audio": audio[2] if audio is not None else None,
    }


def video_packets(path) -> list[tuple[float | None, bytes]]:
    """(pts seconds or None, payload bytes) of every non-empty video packet in file order."""
    av = _av()
    out: list[tuple[float | None, bytes]] = []
    with av.open(str(path)) as c:
        if not c.streams.video:
            return out
        vs = c.streams.video[0]
        tb = vs.time_base
        for pkt in c.demux(vs):
            if pkt.size == 0:
                continue
            out.append((float(pkt.pts * tb) if pkt.pts is not None else None, bytes(pkt)))
    return out


H264_SETUP_NALS = frozenset({6, 7, 8, 9})  # SEI, SPS, PPS, access unit delimiter


def h264_slices(payload: bytes) -> bytes:
    """An AVCC (length-prefixed) H.264 packet without its SEI, SPS, PPS and AUD units: the coded
    picture alone. MediaMTX re-packs what it relays (parameter sets put before every IDR, SEI
    dropped); comparing this part still shows that every picture went through untouched."""
    out, i = bytearray(), 0
    while i + 4 <= len(payload):
        n = int.from_bytes(payload[i:i + 4], "big")
        unit = payload[i:i + 4 + n]
        if n and (payload[i + 4] & 0x1F) not in H264_SETUP_NALS:
            out += unit
        i += 4 + n
    return bytes(out)


def packet_times(path, kind: str = "audio") -> np.ndarray:
    """pts (s) of every packet of the first ``kind`` ("audio" or "video") stream, in file order."""
    av = _av()
    with av.open(str(path)) as c:
        streams = c.streams.audio if kind == "audio" else c.streams.video
        if not streams:
            return np.zeros(0)
        return np.array([float(p.pts * p.time_base) for p in c.demux(streams[0]) if p.pts is not None and p.size])


def max_gap(path, kind: str = "audio") -> float:
    """Longest step (s) between consecutive packet timestamps of ``kind``: a hole in the output.

    For AAC at 48 kHz the step is 21.3 ms; for 30 fps video 33.3 ms. A step backwards counts as
    its size too (an overlap is as wrong as a hole).
    """
    t = packet_times(path, kind)
    if len(t) < 2:
        return float("inf")
    return float(np.abs(np.diff(t)).max())


# ------------------------------------------------------------------------------------ audio
@functools.lru_cache(maxsize=4)
def _decode_audio(key: tuple) -> tuple[np.ndarray, int, float] | None:
    av = _av()
    with av.open(key[0]) as c:
        if not c.streams.audio:
            return None
        st = c.streams.audio[0]
        sr = st.codec_context.sample_rate or st.rate
        chunks: list[np.ndarray] = []
        t0: float | None = None
        pos = 0  # samples written so far
        for frame in c.decode(st):
            arr = frame.to_ndarray()
            if frame.format.is_planar:
                arr = arr.T  # (samples, channels)
            else:
                arr = arr.reshape(-1, len(frame.layout.channels))
            arr = arr.astype(np.float32)
            if frame.format.name.startswith("s16"):
                arr = arr / 32768.0
            elif frame.format.name.startswith("s32"):
                arr = arr / 2147483648.0
            if frame.pts is not None:
                t = float(frame.pts * frame.time_base)
                if t0 is None:
                    t0 = t
                want = int(round((t - t0) * sr))
                if want > pos + int(0.001 * sr):  # gap: fill with silence
                    chunks.append(np.zeros((want - pos, arr.shape[1]), np.float32))
                    pos = want
                elif want < pos - int(0.001 * sr):  # overlap: drop the overlapping head
                    cut = min(len(arr), pos - want)
                    arr = arr[cut:]
            elif t0 is None:
                t0 = 0.0
            chunks.append(arr)
            pos += len(arr)
    if not chunks:
        return None
    data = np.concatenate(chunks)
    return data, int(sr), float(t0 or 0.0)


def decode_audio(path) -> tuple[np.ndarray, int, float] | None:
    """(samples float32 [n, channels], sample_rate, pts of sample 0 in s) or None without audio.

    Frames are placed by their pts (gaps filled with zeros), so sample ``i`` is at time
    ``t0 + i / sample_rate`` on the container clock.
    """
    return _decode_audio(_key(path))


def _mono(path) -> tuple[np.ndarray, int, float]:
    dec = decode_audio(path)
    if dec is None:
        raise ValueError(f"{path}: no audio stream")
    data, sr, t0 = dec
    return data.mean(axis=1).astype(np.float64), sr, t0


def _goertzel_ratio(x: np.ndarray, sr: int, hop: int, win: int, freq: float) -> tuple[np.ndarray, np.ndarray]:
    """Per hop: (power at ``freq`` as fraction of total power, rms) over windows of ``win``."""
    n = (len(x) - win) // hop + 1
    if n <= 0:
        return np.zeros(0), np.zeros(0)
    idx = np.arange(n)[:, None] * hop + np.arange(win)[None, :]
    frames = x[idx] * np.hanning(win)[None, :]
    tt = np.arange(win) / sr
    ref = np.exp(-2j * np.pi * freq * tt)
    tone = np.abs(frames @ ref) ** 2 * 2 / np.sum(np.hanning(win) ** 2)
    total = np.sum(frames**2, axis=1) / np.sum(np.hanning(win) ** 2) * win + 1e-12
    ratio = tone / total
    rms = np.sqrt(np.mean(x[idx] ** 2, axis=1))
    return ratio, rms


def detect_beeps(
    path,
    *,
    freq: float = BEEP_HZ,
    min_ratio: float = 0.6,
    min_dbfs: float = -30.0,
    min_duration_s: float = 0.025,
    max_duration_s: float = 0.2,
) -> list[float]:
    """Onset times (absolute pts, s) of ~50 ms tone bursts at ``freq`` (1 kHz) in the audio.

    Coarse: 10 ms Hann windows every 5 ms where the 1 kHz component carries >= ``min_ratio`` of
    the window's power and the level is >= ``min_dbfs``, for ``min_duration_s``..``max_duration_s``.
    Fine: the 1 kHz envelope (complex demodulation, 1 ms moving average, 0.25 ms steps... i.e.
    per-sample) is searched for its 50 % rise point; the fixture beep's raised-cosine ramp
    (2 ms, 50 % point 1 ms after the onset) is subtracted. Accuracy ~0.1 ms on clean input.
    """
    x, sr, t0 = _mono(path)
    hop = int(round(0.005 * sr))
    win = 2 * hop
    ratio, rms = _goertzel_ratio(x, sr, hop, win, freq)
    on = (ratio >= min_ratio) & (rms >= 10 ** (min_dbfs / 20))
    onsets: list[float] = []
    i = 0
    n = len(on)
    while i < n:
        if not on[i]:
            i += 1
            continue
        j = i
        while j < n and on[j]:
            j += 1
        run_s = (j - i) * hop / sr
        # window i covers samples [i*hop, i*hop+win): the burst spans ~ (j-i)*hop + win - overlap
        if min_duration_s - 0.006 <= run_s <= max_duration_s:
            onsets.append(_refine_onset(x, sr, i * hop, j * hop + win, freq))
        i = j
    return [float(t0 + s / sr) for s in onsets]


def _refine_onset(x: np.ndarray, sr: int, a: int, b: int, freq: float) -> float:
    """Sample position (float) of the burst onset within [a - 20 ms, b + 5 ms]."""
    lo = max(0, a - int(0.02 * sr))
    hi = min(len(x), b + int(0.005 * sr))
    seg = x[lo:hi]
    tt = (np.arange(lo, hi)) / sr
    demod = seg * np.exp(-2j * np.pi * freq * tt)
    L = int(round(sr / freq))  # one period: cancels the 2f image exactly
    kern = np.ones(L) / L
    env = 2 * np.abs(np.convolve(demod, kern, mode="same"))
    plateau = np.percentile(env, 90)
    half = 0.5 * plateau
    above = np.nonzero(env >= half)[0]
    if len(above) == 0:
        return float(a)
    k = int(above[0])
    if k > 0:  # linear interpolation between k-1 and k
        e0, e1 = env[k - 1], env[k]
        frac = (half - e0) / (e1 - e0) if e1 != e0 else 0.0
        pos = k - 1 + frac
    else:
        pos = float(k)
    # 'same' convolution with an even-length kernel is centred half a sample late
    pos -= 0.5 if L % 2 == 0 else 0.0
    return lo + pos - (BEEP_RAMP_S / 2) * sr


def av_offsets(path, *, max_pair_s: float = 0.2) -> list[tuple[float, float]]:
    """For each flash, (flash_time, beep_time - flash_time) with the nearest beep within ``max_pair_s``.

    Positive offset = audio late. Flashes without a beep nearby are left out.
    """
    flashes = detect_flashes(path)
    beeps = np.asarray(detect_beeps(path))
    out: list[tuple[float, float]] = []
    for f in flashes:
        if len(beeps) == 0:
            break
        k = int(np.argmin(np.abs(beeps - f)))
        d = float(beeps[k] - f)
        if abs(d) <= max_pair_s:
            out.append((f, d))
    return out


def _power(path) -> tuple[np.ndarray, int, float]:
    """Per-sample power averaged over channels (so dBFS = RMS over all channels' samples)."""
    dec = decode_audio(path)
    if dec is None:
        raise ValueError(f"{path}: no audio stream")
    data, sr, t0 = dec
    return np.mean(data.astype(np.float64) ** 2, axis=1), sr, t0


def audio_rms_dbfs(path, start_s: float, end_s: float) -> float:
    """RMS level (dBFS over all channels) of the audio between absolute times ``start_s``/``end_s``."""
    x, sr, t0 = _power(path)
    a = max(0, int(round((start_s - t0) * sr)))
    b = min(len(x), int(round((end_s - t0) * sr)))
    if b <= a:
        return float("-inf")
    r = float(np.sqrt(np.mean(x[a:b])))
    return 20 * np.log10(r) if r > 0 else float("-inf")


def audio_rms_series(path, hop_s: float = 0.1) -> list[tuple[float, float]]:
    """(window start time, RMS dBFS over all channels) for consecutive ``hop_s`` windows."""
    x, sr, t0 = _power(path)
    hop = max(1, int(round(hop_s * sr)))
    n = len(x) // hop
    if n == 0:
        return []
    r = np.sqrt(np.mean(x[: n * hop].reshape(n, hop), axis=1))
    db = 20 * np.log10(np.maximum(r, 1e-10))
    return [(t0 + i * hop / sr, float(db[i])) for i in range(n)]


def ebur128_lufs(source, rate: int | None = None, *, start_s: float | None = None,
                 end_s: float | None = None) -> float:
    """Integrated loudness (LUFS) by FFmpeg's own ``ebur128`` filter: an implementation independent
    of the services' to judge them with. `source` is a media file (optionally the container-time
    window ``start_s``..``end_s``) or float samples ``(n,)`` / ``(n, channels)`` at `rate`."""
    import tempfile
    import wave

    with tempfile.TemporaryDirectory(prefix="livedub-ebur128-") as tmp:
        if isinstance(source, np.ndarray):
            x = source if source.ndim == 2 else source[:, None]
            path = Path(tmp, "x.wav")
            with wave.open(str(path), "wb") as w:
                w.setnchannels(x.shape[1])
                w.setsampwidth(2)
                w.setframerate(int(rate))
                w.writeframes((np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes())
        else:
            path = Path(source)
        window = []
        if start_s is not None:
            window += ["-ss", f"{start_s:.3f}"]
        if end_s is not None:
            window += ["-to", f"{end_s:.3f}"]
        cmd = [_ffmpeg(), "-hide_banner", "-nostats", "-copyts", *window, "-i", str(path), "-vn",
               "-af", "ebur128", "-f", "null", "-"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stderr
    summary = out.rsplit("Summary:", 1)[-1]
    for line in summary.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "I:":
            return float(parts[1])
    raise ValueError(f"no integrated loudness in ffmpeg's output: {out[-400:]}")


# ------------------------------------------------------------------------------------ probe
def probe(path) -> dict:
    """ffprobe summary: ``{"format", "duration", "video": {...}|None, "audio": {...}|None, "raw"}``."""
    ffprobe = shutil.which("ffprobe")
    if not ffprobe:
        raise RuntimeError("ffprobe not found: install the Debian package 'ffmpeg'")
    res = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(f"ffprobe failed on {path}: {res.stderr.strip()}")
    raw = json.loads(res.stdout)
    fmt = raw.get("format", {})
    out: dict = {
        "format": fmt.get("format_name"),
        "duration": float(fmt["duration"]) if fmt.get("duration") not in (None, "N/A") else None,
        "video": None,
        "audio": None,
        "raw": raw,
    }
    for s in raw.get("streams", []):
        kind = s.get("codec_type")
        if kind == "video" and out["video"] is None:
            fr = s.get("avg_frame_rate") or s.get("r_frame_rate") or "0/1"
            num, _, den = fr.partition("/")
            fps = float(num) / float(den) if den and float(den) else None
            out["video"] = {
                "codec": s.get("codec_name"),
                "profile": s.get("profile"),
                "pix_fmt": s.get("pix_fmt"),
                "width": s.get("width"),
                "height": s.get("height"),
                "fps": fps,
                "duration": float(s["duration"]) if s.get("duration") else None,
                "start_time": float(s["start_time"]) if s.get("start_time") else None,
            }
        elif kind == "audio" and out["audio"] is None:
            out["audio"] = {
                "codec": s.get("codec_name"),
                "sample_rate": int(s["sample_rate"]) if s.get("sample_rate") else None,
                "channels": s.get("channels"),
                "duration": float(s["duration"]) if s.get("duration") else None,
                "start_time": float(s["start_time"]) if s.get("start_time") else None,
            }
    return out


# ------------------------------------------------------------------------------------ ffmpeg I/O
def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if not exe:
        raise RuntimeError("ffmpeg not found: install the Debian package 'ffmpeg'")
    return exe


def _spawn(cmd: list[str], log_path) -> subprocess.Popen:
    """Start an ffmpeg command with its output in `log_path` (kept on the process as `.log_path`)."""
    log = open(log_path, "wb")  # noqa: SIM115
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        log.close()
    proc.log_path = str(log_path)  # type: ignore[attr-defined]
    proc.cmd = cmd  # type: ignore[attr-defined]
    return proc


def record_stream(
    url: str,
    out_path,
    seconds: float | None = None,
    *,
    fmt: str | None = None,
    copyts: bool = True,
    log_path=None,
) -> subprocess.Popen:
    """Start ``ffmpeg -i <url> -c copy`` recording to ``out_path`` (FLV unless ``fmt``/suffix says mkv).

    Start it before the publisher: nginx-rtmp keeps the player waiting (``idle_streams``) and
    the recording then begins at the stream's first packet. Stop it with :func:`stop_process`
    (SIGINT, so ffmpeg finalises the file) or pass ``seconds``. ``copyts`` keeps the
    server's timestamps. ffmpeg's stderr goes to ``log_path`` (default ``<out_path>.log``).
    """
    out_path = Path(out_path)
    if fmt is None:
        fmt = "matroska" if out_path.suffix in (".mkv", ".mka") else "flv"
    log_path = Path(log_path) if log_path else Path(str(out_path) + ".log")
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "warning", "-y"]
    if copyts:
        cmd += ["-copyts"]
    cmd += ["-i", url, "-map", "0", "-c", "copy"]
    if seconds is not None:
        cmd += ["-t", f"{seconds:.3f}"]
    cmd += ["-f", fmt, str(out_path)]
    return _spawn(cmd, log_path)


def publish(
    path,
    url: str,
    *,
    realtime: bool = True,
    loop: bool = False,
    log_path=None,
    extra_args: list[str] | None = None,
) -> subprocess.Popen:
    """Start ``ffmpeg [-re] [-stream_loop -1] -i <path> -c copy -f flv <url>`` (a publisher).

    stderr goes to ``log_path`` (default: a temp file; ``proc.log_path``).
    """
    import tempfile

    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "warning"]
    if realtime:
        cmd += ["-re"]
    if loop:
        cmd += ["-stream_loop", "-1"]
    cmd += ["-i", str(path), "-map", "0", "-c", "copy"]
    cmd += list(extra_args or [])
    cmd += ["-f", "flv", url]
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="livedub-publish-", suffix=".log")
        os.close(fd)
        log_path = name
    return _spawn(cmd, log_path)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Stop an ffmpeg child so it still finalises its output; returns the exit code.

    One SIGINT only sets a flag that ffmpeg checks between reads, so a read blocked on a
    silent RTMP connection would never return; a second SIGINT interrupts the blocking I/O
    and ffmpeg then writes the trailer. SIGKILL after ``timeout``.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
    return proc.returncode


TIMING_FALLBACKS = frozenset({"deadline_exceeded", "timeout"})


def timing_misses(fallbacks: dict[str, int], at_most: int = 1) -> int:
    """Check a stream's fallback counters: nothing but timing misses, at most `at_most` of them.

    A fragment answered after its span had to play is the product working as specified (that
    span plays the original audio); how often it happens is latency, which the benches measure.
    On a busy machine a test can meet one; any other reason, or more, is a failure. Returns the
    count so that other counts can allow for it.
    """
    assert set(fallbacks) <= TIMING_FALLBACKS, f"fallbacks other than timing misses: {fallbacks}"
    n = sum(fallbacks.values())
    assert n <= at_most, f"{n} timing misses (at most {at_most}): {fallbacks}"
    return n
