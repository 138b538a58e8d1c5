"""Shared helpers for the benchmark scripts: progress logging, percentiles, /proc sampling,
media-service snapshots, and the viewers that measure the glass-to-glass added delay.

CPU and memory come straight from /proc (no psutil): ``/proc/<pid>/stat`` fields 14/15
(utime/stime, clock ticks) and ``/proc/<pid>/status`` VmRSS. A *tree* is a process and all
its live descendants (media-service's ffmpeg output relays, sts-service's Apertium/espeak
children, nginx's worker), found by scanning the ppid of every process in /proc at each sample.
CPU% is per core: 100 % = one core fully busy (the machine has ``os.cpu_count()`` cores).
Memory: VmRSS of the main process, and of the tree both the sum of VmRSS (overcounts pages
shared between e.g. sts-service's ~30 Apertium pipeline processes) and the sum of Pss from
``/proc/<pid>/smaps_rollup`` (shared pages divided among their users: the real footprint).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livedub_testkit import analysis

_T0 = time.monotonic()
CLK_TCK = os.sysconf("SC_CLK_TCK")
RATE = 48000
AAC_FRAME = 1024
PROBE_SKIP_S = 3.0  # viewer packets ignored after each viewer's first one (ffmpeg's probing burst)


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def pct(values, q: float) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.percentile(vals, q)) if vals else None


def fmt(v, spec: str = ".1f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


# ------------------------------------------------------------------------------- /proc sampling
def _read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()  # fields after "(comm)": state is rest[0] = field 3
    return int(rest[1]), int(rest[11]) + int(rest[12])


def _read_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _read_pss_kb(pid: int) -> int | None:
    """Proportional set size (shared pages divided among their users), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _all_ppids() -> dict[int, int]:
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read_stat(int(name))
            if st is not None:
                out[int(name)] = st[0]
    return out


def _tree(root: int, ppids: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in ppids or p == root:
            out.append(p)
            todo.extend(children.get(p, []))
    return out


@dataclass
class Series:
    cpu_main: list[float] = field(default_factory=list)  # % of one core, main process only
    cpu_tree: list[float] = field(default_factory=list)  # % of one core, process + descendants
    rss_main_mb: list[float] = field(default_factory=list)
    rss_tree_mb: list[float] = field(default_factory=list)  # sum of VmRSS (shared pages counted repeatedly)
    pss_tree_mb: list[float] = field(default_factory=list)  # sum of Pss: the tree's real memory footprint

    def summary(self) -> dict:
        def avg(x):
            return float(np.mean(x)) if x else None

        def mx(x):
            return float(np.max(x)) if x else None

        return {"cpu_avg": avg(self.cpu_tree), "cpu_max": mx(self.cpu_tree),
                "cpu_main_avg": avg(self.cpu_main), "cpu_main_max": mx(self.cpu_main),
                "rss_max_mb": mx(self.rss_tree_mb), "rss_main_max_mb": mx(self.rss_main_mb),
                "pss_max_mb": mx(self.pss_tree_mb),
                "samples": len(self.cpu_tree)}


class ProcSampler:
    """Samples CPU% and RSS of named process trees every ``interval`` s in a background thread.

    ``targets`` maps a name to a callable returning the root pid (or None when not running);
    the callable is re-evaluated each sample, so restarted processes are followed.
    """

    def __init__(self, targets: dict[str, Callable[[], int | None]], interval: float = 0.5):
        self.targets = targets
        self.interval = interval
        self.series: dict[str, Series] = {n: Series() for n in targets}
        self._prev: dict[int, int] = {}  # pid -> ticks at the previous sample
        self._prev_t: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> ProcSampler:
        self._sample()  # baseline
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, dict]:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        return self.summary()

    def reset(self) -> None:
        """Forget the collected samples (keep sampling): start a new measurement phase."""
        with self._lock:
            self.series = {n: Series() for n in self.targets}

    def summary(self) -> dict[str, dict]:
        with self._lock:
            return {n: s.summary() for n, s in self.series.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except Exception as exc:  # sampling must never break a benchmark
                log(f"proc sampler: {exc}")

    def _sample(self) -> None:
        now = time.monotonic()
        ppids = _all_ppids()
        ticks_now: dict[int, int] = {}
        rows = {}
        for name, get_pid in self.targets.items():
            root = get_pid()
            if root is None or root not in ppids:
                continue
            pids = _tree(root, ppids)
            cpu_tree = cpu_main = 0.0
            rss_tree = rss_main = pss_tree = 0
            for p in pids:
                st = _read_stat(p)
                if st is None:
                    continue
                ticks_now[p] = st[1]
                rss = _read_rss_kb(p)
                rss_tree += rss
                pss = _read_pss_kb(p)
                pss_tree += rss if pss is None else pss
                if self._prev_t is not None:
                    # A process born since the last sample counts from 0 ticks.
                    d = max(0, st[1] - self._prev.get(p, 0)) / CLK_TCK / (now - self._prev_t) * 100.0
                    cpu_tree += d
                    if p == root:
                        cpu_main = d
                if p == root:
                    rss_main = rss
            rows[name] = (cpu_main, cpu_tree, rss_main / 1024.0, rss_tree / 1024.0, pss_tree / 1024.0)
        if self._prev_t is not None:
            with self._lock:
                for name, (cm, ct, rm, rt, pt) in rows.items():
                    s = self.series[name]
                    s.cpu_main.append(cm)
                    s.cpu_tree.append(ct)
                    s.rss_main_mb.append(rm)
                    s.rss_tree_mb.append(rt)
                    s.pss_tree_mb.append(pt)
        self._prev, self._prev_t = ticks_now, now


def stack_targets(stack) -> dict[str, Callable[[], int | None]]:
    """Sampler targets for a LocalStack: media-service, sts-service, nginx (each with children)."""

    def pid_of(part):
        return lambda: part.proc.pid if part.proc is not None and part.proc.poll() is None else None

    return {"media": pid_of(stack.media), "sts": pid_of(stack.sts), "nginx": pid_of(stack.rtmp)}


# ------------------------------------------------------------------------------- media-service snapshots
def fallback_stats(snap: dict) -> dict:
    """Counts from GET /v1/streams/<id>: sent, processed by status, fallbacks by reason, rate.

    ``fallback_rate`` = fallbacks / fragments_sent (the brief's definition). Fragments that were
    never sent because sts-service was unreachable are fallbacks too, so ``fallback_rate_segments``
    divides by (sent + sts_unavailable) as well: the share of speech segments left undubbed.
    """
    c = snap.get("counters", {})
    sent = int(c.get("fragments_sent", 0))
    fb = dict(c.get("fallbacks", {}))
    n_fb = sum(fb.values())
    unsent = fb.get("sts_unavailable", 0)
    lat = snap.get("latency_ms") or {}
    return {
        "fragments_sent": sent,
        "processed": dict(c.get("fragments_processed", {})),
        "fallbacks": fb,
        "fallbacks_total": n_fb,
        "fallback_rate": n_fb / sent if sent else (None if not n_fb else float("inf")),
        "fallback_rate_segments": n_fb / (sent + unsent) if sent + unsent else None,
        "dubs_placed": c.get("dubs_placed"),
        "rtt_p50_ms": lat.get("p50"),
        "rtt_p95_ms": lat.get("p95"),
        "audio_frames_out": c.get("audio_frames_out"),
        "video_packets_in": c.get("video_packets_in"),
        "video_packets_out": c.get("video_packets_out"),
        "output_delay_s": snap.get("output_delay_s"),
        "output_delay_measured_s": snap.get("output_delay_measured_s"),
        "av_offset_ms": snap.get("av_offset_ms"),
        "state": snap.get("state"),
        "sts_state": (snap.get("sts") or {}).get("state"),
    }


# ------------------------------------------------------------------------------- viewers (glass to glass)
class Viewer:
    """ffmpeg playing an RTMP URL: records it and reports (arrival time, md5) of every video packet.

    Start one on ``<name>/in`` and one on ``<name>/out`` before the publisher: media-service
    passes video through byte for byte, so :func:`added_delay` matches the same packet on both
    sides by its MD5 and the difference of the arrival times is what a viewer of the dubbed
    stream waits extra (both viewers are identical ffmpeg processes, so their buffering cancels).
    """

    def __init__(self, url: str, record_path: Path):
        self.url, self.record_path = url, record_path
        self.arrivals: list[tuple[float, str]] = []
        cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-y", "-copyts", "-i", url,
               "-map", "0", "-c", "copy", "-f", "flv", str(record_path),
               "-map", "0:v", "-c", "copy", "-f", "framemd5", "-flush_packets", "1", "pipe:1"]
        self._errlog = open(str(record_path) + ".log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._errlog,
                                     bufsize=0)
        self._thread = threading.Thread(target=self._read, name=f"viewer:{url}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            t = time.monotonic()
            if raw.startswith(b"#"):
                continue
            parts = raw.decode("ascii", "replace").strip().split(",")
            if len(parts) >= 6:
                self.arrivals.append((t, parts[5].strip()))

    def stop(self) -> None:
        analysis.stop_process(self.proc)
        self._thread.join(5)
        self._errlog.close()


def added_delay(v_in: Viewer, v_out: Viewer) -> dict:
    """Arrival(out) - arrival(in) of the video packets seen once on each side (median, p5, p95, ...)."""
    def unique(arr):
        if not arr:
            return {}
        t_first = arr[0][0]
        counts: dict[str, int] = {}
        for _, h in arr:
            counts[h] = counts.get(h, 0) + 1
        return {h: t for t, h in arr if counts[h] == 1 and t - t_first >= PROBE_SKIP_S}

    a, b = unique(v_in.arrivals), unique(v_out.arrivals)
    deltas = np.array([b[h] - a[h] for h in b if h in a])
    res = {"packets_in": len(v_in.arrivals), "packets_out": len(v_out.arrivals), "matched": int(len(deltas))}
    if len(deltas):
        res.update({"median_s": float(np.median(deltas)), "p5_s": pct(deltas, 5), "p95_s": pct(deltas, 95),
                    "min_s": float(deltas.min()), "max_s": float(deltas.max()), "mean_s": float(deltas.mean())})
    return res


def recorded_audio_s(path: Path) -> float | None:
    """Seconds of AAC in a recording (packets x 1024 / sample rate), without decoding."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return 0.0
            st = c.streams.audio[0]
            sr = st.codec_context.sample_rate or RATE
            return sum(1 for p in c.demux(st) if p.size) * AAC_FRAME / sr
    except Exception as exc:
        log(f"cannot read {path}: {exc}")
        return None


def wait_played_out(stack, names: list[str], timeout: float,
                    on_snapshot: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Poll the streams until every output went idle/closed after writing; the last snapshots.

    ``on_snapshot(name, snapshot)`` sees every snapshot polled on the way (e.g. to follow the
    measured output delay while the tail plays out).
    """
    deadline = time.monotonic() + timeout
    snaps: dict[str, dict] = {}
    while time.monotonic() < deadline:
        for n in names:
            status, snap = stack.media.api("GET", f"/v1/streams/{n}")
            if status == 200:
                snaps[n] = snap
                if on_snapshot is not None:
                    on_snapshot(n, snap)
        if len(snaps) == len(names) and all(s["output"]["state"] in ("idle", "closed")
                                            and s["counters"]["audio_frames_out"] > 0 for s in snaps.values()):
            break
        time.sleep(0.5)
    else:
        log(f"not every output went idle within {timeout:.0f} s")
    return snaps
