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
Each sample also keeps its time, the main process's open file descriptors (``/proc/<pid>/fd``)
and threads (``Threads:`` in ``/proc/<pid>/status``) and the number of descendants (for leaks).

Also shared by the load and soak benchmarks: stream creation, the round-trip histogram of
media-service's ``/metrics`` (quantiles, also of the difference of two scrapes), sts-service's own
accounting, and the A/V check of a recording at the fixture's markers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livedub_testkit import analysis
from prometheus_client.parser import text_string_to_metric_families

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


def machine_info() -> dict:
    """Which machine the numbers are from: CPU model, cores, memory (/proc)."""
    model = mem_kb = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            mem_kb = next((int(line.split()[1]) for line in f if line.startswith("MemTotal:")), None)
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "mem_gb": mem_kb / 1024 ** 2 if mem_kb else None}


# ------------------------------------------------------------------------------- /proc sampling
def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot (/proc/stat), to tell whether the host is saturated."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()  # fields after "(comm)": state is rest[0] = field 3
    return int(rest[1]), int(rest[11]) + int(rest[12])


def _read_status(pid: int) -> tuple[int, int]:
    """(VmRSS kB, threads) of one process; zeros if it is gone."""
    rss = threads = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def _count_fds(pid: int) -> int | None:
    """Open file descriptors of one process, or None if unreadable."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


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
    t: list[float] = field(default_factory=list)  # time.monotonic() of each sample
    fds: list[int | None] = field(default_factory=list)  # open fds of the main process
    threads: list[int] = field(default_factory=list)  # threads of the main process
    children: list[int] = field(default_factory=list)  # live descendants (all generations)

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

    def snapshot(self) -> dict[str, Series]:
        """A copy of the series collected so far (safe to read while sampling goes on)."""
        with self._lock:
            return {n: Series(**{k: list(v) for k, v in vars(s).items()}) for n, s in self.series.items()}

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
            rss_tree = rss_main = pss_tree = threads_main = 0
            for p in pids:
                st = _read_stat(p)
                if st is None:
                    continue
                ticks_now[p] = st[1]
                rss, threads = _read_status(p)
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
                    rss_main, threads_main = rss, threads
            rows[name] = (cpu_main, cpu_tree, rss_main / 1024.0, rss_tree / 1024.0, pss_tree / 1024.0,
                          _count_fds(root), threads_main, len(pids) - 1)
        if self._prev_t is not None:
            with self._lock:
                for name, (cm, ct, rm, rt, pt, nfd, nth, nch) in rows.items():
                    s = self.series[name]
                    s.cpu_main.append(cm)
                    s.cpu_tree.append(ct)
                    s.rss_main_mb.append(rm)
                    s.rss_tree_mb.append(rt)
                    s.pss_tree_mb.append(pt)
                    s.t.append(now)
                    s.fds.append(nfd)
                    s.threads.append(nth)
                    s.children.append(nch)
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


# ------------------------------------------------------------------------------- streams, metrics, A/V
def create_streams(stack, names: list[str], delay: float) -> str | None:
    """``POST /v1/streams`` for each name (``live/<name>/in`` -> ``live/<name>/out``, ``output_delay_s``
    = ``delay``) before anything is published; None, or the error of the first refusal."""
    for n in names:
        status, body = stack.media.api("POST", "/v1/streams", {
            "id": n, "input_url": stack.url(f"{n}/in"), "output_url": stack.url(f"{n}/out"),
            "output_delay_s": delay})
        if status not in (200, 201):
            return f"POST /v1/streams with output_delay_s={delay:g} answered {status}: {body}"
    return None


def quietly(fn, *args) -> None:
    """Call ``fn(*args)``, logging instead of raising (for teardown)."""
    try:
        fn(*args)
    except Exception as exc:
        log(f"while stopping: {exc}")


_BUCKET = re.compile(r'^media_fragment_roundtrip_seconds_bucket\{([^}]*)\}\s+([0-9.eE+-]+)')


def roundtrip_buckets(metrics_text: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound s -> count) of the round-trip histogram, summed over streams."""
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        m = _BUCKET.match(line)
        if not m:
            continue
        le = re.search(r'le="([^"]+)"', m.group(1))
        if le:
            bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
            buckets[bound] = buckets.get(bound, 0.0) + float(m.group(2))
    return buckets


def bucket_quantiles(buckets: dict[float, float], qs=(50, 95, 99)) -> dict:
    """Quantiles (ms) of cumulative histogram buckets, interpolated within a bucket like PromQL."""
    bounds = sorted(buckets)
    total = buckets.get(float("inf"), 0.0)
    out: dict = {"count": int(total)}
    for q in qs:
        out[f"p{q}_ms"] = None
        if not total:
            continue
        rank = q / 100 * total
        lo_bound, lo_count = 0.0, 0.0
        for b in bounds:
            c = buckets[b]
            if c >= rank:
                if b == float("inf"):  # beyond the largest finite bucket: report that bound
                    out[f"p{q}_ms"] = lo_bound * 1000
                else:
                    frac = (rank - lo_count) / (c - lo_count) if c > lo_count else 1.0
                    out[f"p{q}_ms"] = (lo_bound + (b - lo_bound) * frac) * 1000
                break
            lo_bound, lo_count = b, c
    return out


def roundtrip_quantiles(metrics_text: str, qs=(50, 95, 99)) -> dict:
    """Quantiles (ms) of the round-trip histogram summed over all streams, interpolated like PromQL."""
    return bucket_quantiles(roundtrip_buckets(metrics_text), qs)


def sts_accounting(text: str) -> dict:
    """What sts-service says of its own work: work started on expired fragments (must be 0),
    deadline refusals by stage, ASR calls by decoding, mean batch size, full-window re-runs by guard,
    mean time per fragment of each pipeline stage (ms)."""
    values: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = next(iter(s.labels.values()), "")
            values.setdefault(s.name, {})[key] = values.get(s.name, {}).get(key, 0.0) + s.value
    total = lambda name: sum(values.get(name, {}).values())  # noqa: E731
    batches, items = total("sts_asr_batch_size_count"), total("sts_asr_batch_size_sum")
    return {"work_on_expired": total("sts_work_on_expired_total"),
            "deadline_exceeded_by_stage": values.get("sts_deadline_exceeded_total", {}),
            "asr_calls_by_decoding": values.get("sts_asr_calls_total", {}),
            "asr_mean_batch": items / batches if batches else None,
            "asr_reruns_by_guard": values.get("sts_asr_full_window_reruns_total", {}),
            "stage_mean_ms": {stage: round(1000 * v / values["sts_stage_duration_seconds_count"][stage], 1)
                              for stage, v in values.get("sts_stage_duration_seconds_sum", {}).items()
                              if values.get("sts_stage_duration_seconds_count", {}).get(stage)}}


def av_check(path: Path, markers: list[float], loop_s: float | None = None) -> dict:
    """Markers (white frame + beep) found in a recording, the ones it should have, the A/V offsets.

    Recordings keep the publisher's timestamps (fixture time plus a few ms), and a hook-started
    stream joins at a keyframe, so the markers expected are those inside the recorded video; with
    ``loop_s`` (a publisher looping the fixture) they repeat every ``loop_s`` seconds (ffmpeg
    offsets each loop by the longest stream's duration, so this count is approximate at the
    window's edges). ``offsets_ms``: audio - video at each marker found (positive = audio late).
    """
    try:
        pairs = analysis.av_offsets(path)
        flashes = analysis.detect_flashes(path)
        first = analysis.first_pts(path)["video"]
        duration = analysis.probe(path)["duration"]
    except Exception as exc:
        return {"error": str(exc)[:300]}
    expected = None
    if first is not None and duration is not None:
        lo, hi = first - 0.1, first + duration - 0.1
        if loop_s:
            reps = range(int(lo // loop_s) - 1, int(hi // loop_s) + 2)
            expected = sum(1 for k in reps for m in markers if lo <= m + k * loop_s <= hi)
        else:
            expected = sum(1 for m in markers if lo <= m <= hi)
    offs = [abs(d) * 1000 for _, d in pairs]
    return {"flashes": len(flashes), "matched": len(pairs), "expected": expected,
            "max_abs_ms": max(offs) if offs else None, "offsets_ms": [round(d * 1000, 3) for _, d in pairs],
            "first_pts_s": first, "duration_s": duration}
