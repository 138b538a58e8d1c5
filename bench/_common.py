"""Shared helpers for the benchmark scripts: progress logging, percentiles, /proc sampling.

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
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

_T0 = time.monotonic()
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
