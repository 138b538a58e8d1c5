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
With ``--profile``, py-spy (the dev extra installs it) samples the service over the same window and
the on-CPU samples are charged to the innermost media-service function on their stack (library
and C code below it included), printed per function as % of one core: where the time goes.

Run: .venv/bin/python bench/bench_media_cpu.py [--streams 1,4] [--seconds 30] [--delay 3.5] [--profile]
Prints one table per k (% of one core; per stream = total / k) and one JSON line. Never asserts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CLK_TCK, create_streams, fmt, log, machine_ticks, quietly
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


PROFILE_RATE = 100  # py-spy samples per second


def _start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """py-spy sampling `pid` for `seconds` (on-CPU samples only, every thread, not pausing the service)."""
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: make setup installs it into .venv (the dev extra)")
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(round(seconds))),
                             "--rate", str(PROFILE_RATE), "--format", "raw", "--nonblocking", "--threads",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_FRAME = re.compile(r"^(?P<func>.+) \((?P<file>[^:()]+)(?::\d+)?\)$")


def profile_by_function(raw: str, seconds: float, k: int) -> list[tuple[str, float]]:
    """(`module.function`, % of one core per stream) of the innermost media-service frame of each
    sample, largest first; samples with none (thread start-up, libraries' own threads) are `other`."""
    cost: dict[str, float] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        where = "other"
        for frame in stack.split(";")[1:]:
            m = _FRAME.match(frame)
            if m and "media_service/" in m["file"]:
                where = f"{Path(m['file']).stem}.{m['func']}"
        cost[where] += int(count) / PROFILE_RATE / seconds * 100 / k
    return sorted(cost.items(), key=lambda kv: -kv[1])


def run(k: int, seconds: float, warmup: float, delay: float, fixture, workdir: Path,
        profile: bool = False) -> dict:
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
        spy_out = workdir / f"k{k}-profile.txt"
        spy = _start_profile(pid, seconds, spy_out) if profile else None
        t0, c0, m0, w0 = _threads(pid), _children(pid), machine_ticks(), time.monotonic()
        time.sleep(seconds)
        t1, c1, m1, wall = _threads(pid), _children(pid), machine_ticks(), time.monotonic() - w0
        res["machine_busy_pct"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100
        if spy is not None:
            _, err = spy.communicate(timeout=60)
            if spy.returncode or not spy_out.exists():
                res["profile_error"] = err.decode(errors="replace").strip()[-300:] or f"py-spy exited {spy.returncode}"
            else:
                res["profile"] = profile_by_function(spy_out.read_text(), wall, k)
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
    ap.add_argument("--profile", action="store_true", help="also sample the service with py-spy (per function)")
    args = ap.parse_args()
    fixture = cached_dense_media()
    workdir = Path(tempfile.mkdtemp(prefix="livedub-bench-cpu-"))
    results = [run(int(k), args.seconds, args.warmup, args.delay, fixture, workdir, args.profile)
               for k in args.streams.split(",")]
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
        print(f"machine: {r['machine_busy_pct']:.0f} % of all {os.cpu_count()} cores busy (every process: "
              f"sts-service, nginx, the bench's publishers and recorders)")
        if "profile_error" in r:
            print(f"profile: {r['profile_error']}")
        if "profile" in r:
            print("\nwhere it goes (py-spy, innermost media-service function, % of one core per stream; "
                  "the ffmpeg relays are not Python and are not here)")
            for where, v in r["profile"][:20]:
                print(f"  {where:50s} {v:6.2f}")
    print(json.dumps({"bench": "media_cpu", "delay_s": args.delay, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
