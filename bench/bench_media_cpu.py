"""Where media-service's CPU goes: per thread kind, for k live 720p30 dense-speech streams.

Why: the target is <= 10 % of a core per stream (issue 7), and the cost of the same work depends
on how it is scheduled (cold caches after every wake-up on a VM), so it is measured on the live
service, not on a loop over a file. For each k in ``--streams``: a fresh LocalStack (nginx-rtmp,
the real sts-service, media-service with its defaults), k streams of the dense fixture
(``livedub_testkit.dense``, 1280x720 30 fps) created with ``POST /v1/streams`` at D = ``--delay``
and published together; after ``--warmup`` seconds, the CPU time of every media-service thread
(``/proc/<pid>/task/<tid>/stat``, grouped by the kernel name the service gives its threads:
``ingest:<id>``, ``output:<id>``, ``relay-feed``, ``relay-err``, the rest as ``main/other``) and
of its children (the ffmpeg relays) over ``--seconds``, and the context switches per second.

Run: .venv/bin/python bench/bench_media_cpu.py [--streams 1,4] [--seconds 30] [--delay 3.5]
Prints one table per k (% of one core; per stream = total / k) and one JSON line. Never asserts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import CLK_TCK, create_streams, fmt, log, quietly
from livedub_testkit import analysis
from livedub_testkit.dense import cached_dense_media
from livedub_testkit.stack import LocalStack


def _threads(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (kernel name, utime + stime ticks, context switches) of every thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat") as f:
                stat = f.read()
            with open(f"{base}/status") as f:
                switches = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out[int(tid)] = (stat[stat.find("(") + 1:stat.rfind(")")], int(fields[11]) + int(fields[12]), switches)
    return out


def _children(pid: int) -> dict[int, int]:
    """pid -> CPU ticks of each direct child of `pid` (the ffmpeg relays)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out[int(entry)] = int(fields[11]) + int(fields[12])
    return out


def _kind(name: str) -> str:
    for prefix in ("ingest", "output", "relay-feed", "relay-err"):
        if name.startswith(prefix):
            return prefix
    return "main/other"


def run(k: int, seconds: float, warmup: float, delay: float, fixture, workdir: Path) -> dict:
    names = [f"cpu{i}" for i in range(k)]
    res: dict = {"streams": k}
    stack = LocalStack(workdir=workdir / f"k{k}")
    pubs, recs = [], []
    try:
        log(f"[k={k}] starting nginx-rtmp + sts-service + media-service ...")
        stack.start()
        error = create_streams(stack, names, delay)
        if error:
            res["error"] = error
            return res
        recs = [analysis.record_stream(stack.url(f"{n}/out"), workdir / f"k{k}-{n}.flv") for n in names]
        pubs = [analysis.publish(fixture.path, stack.url(f"{n}/in"), loop=True) for n in names]
        log(f"[k={k}] {k} publishers started; warming up {warmup:g} s")
        time.sleep(warmup)
        pid = stack.media.proc.pid
        t0, c0, w0 = _threads(pid), _children(pid), time.monotonic()
        time.sleep(seconds)
        t1, c1, wall = _threads(pid), _children(pid), time.monotonic() - w0
        cpu: dict[str, float] = collections.Counter()
        switches: dict[str, float] = collections.Counter()
        for tid, (name, ticks, sw) in t1.items():
            _, ticks0, sw0 = t0.get(tid, (name, 0, 0))
            cpu[_kind(name)] += (ticks - ticks0) / CLK_TCK * 100 / wall
            switches[_kind(name)] += (sw - sw0) / wall
        cpu["ffmpeg relays (children)"] = sum((t - c0.get(p, 0)) for p, t in c1.items()) / CLK_TCK * 100 / wall
        total = sum(cpu.values())
        res.update(cpu_pct=dict(cpu), switches_per_s=dict(switches), total_pct=total, per_stream_pct=total / k,
                   seconds=wall)
        log(f"[k={k}] media-service {total:.1f} % of a core, {total / k:.1f} % per stream")
        return res
    finally:
        for p in pubs + recs:
            quietly(analysis.stop_process, p)
        quietly(stack.stop)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="1,4", help="comma-separated stream counts (default 1,4)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window (default 30)")
    ap.add_argument("--warmup", type=float, default=12.0, help="seconds after publishing before measuring")
    ap.add_argument("--delay", type=float, default=3.5, help="output delay D of the streams (default 3.5)")
    args = ap.parse_args()
    fixture = cached_dense_media()
    workdir = Path(tempfile.mkdtemp(prefix="livedub-bench-cpu-"))
    results = [run(int(k), args.seconds, args.warmup, args.delay, fixture, workdir) for k in args.streams.split(",")]
    for r in results:
        if "error" in r:
            print(f"k = {r['streams']}: {r['error']}")
            continue
        print(f"\nk = {r['streams']} dense 720p30 streams, D = {args.delay:g} s, {r['seconds']:.0f} s measured "
              f"(% of one core)")
        print(f"{'thread kind':28s} {'total':>7s} {'/stream':>8s} {'switches/s':>11s}")
        for kind, v in sorted(r["cpu_pct"].items(), key=lambda kv: -kv[1]):
            sw = r["switches_per_s"].get(kind)
            print(f"{kind:28s} {v:7.1f} {v / r['streams']:8.1f} {fmt(sw, '11.0f')}")
        print(f"{'media-service (tree)':28s} {r['total_pct']:7.1f} {r['per_stream_pct']:8.1f}")
    print(json.dumps({"bench": "media_cpu", "delay_s": args.delay, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
