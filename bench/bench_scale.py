"""Scale-out benchmark (issue 23 #8, the takeover part): how long a SIGKILLed media-service
replica's streams take to write dubbed output again on the others.

A `LocalCluster` (redis-server, nginx-rtmp with hooks through one entry point, `--sts` sts-services,
`--replicas` media-services with `--redis-url`, default lease TTL and D) and `--streams` looped
publishers of the cached 20 s 640x360 demo fixture. Then `--kills` times: wait until every stream
writes, exactly once in the cluster; SIGKILL the replica with the most streams; for each of its
streams measure, from the kill, when another replica took it over (its `taken_over` event) and
when its output was written again (snapshot: output `writing`, audio frames out); start the
killed replica again (a fresh id). Prints a table per kill and the distribution, then one JSON
line. Never asserts. Progress on stderr.

Not measured here (issue 23 #8, first half): one media-service process against three at the same
total of dense streams (k = 8, 12, 16): fallbacks, input lag, glass-to-glass, CPU per process.

Run: .venv/bin/python bench/bench_scale.py [--kills 10] [--streams 6] [--replicas 3] [--sts 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, log, pct  # noqa: E402
from livedub_testkit.analysis import publish, stop_process  # noqa: E402
from livedub_testkit.cluster import LocalCluster, writing  # noqa: E402
from livedub_testkit.fixtures import cached_demo_media, default_cache_dir  # noqa: E402


def settled(cluster: LocalCluster, names: list[str]) -> bool:
    try:
        where = cluster.owners()
        snaps = {k: v for r in cluster.alive() for k, v in cluster.local_streams(r).items()}
    except OSError:
        return False
    return (sorted(where) == sorted(names) and all(len(v) == 1 for v in where.values())
            and all(writing(snaps[n]) for n in names))


def wait(predicate, timeout: float, poll: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def one_kill(cluster: LocalCluster, names: list[str], i: int) -> dict:
    if not wait(lambda: settled(cluster, names), 120):
        return {"kill": i, "error": "streams did not settle (each once, writing) within 120 s"}
    victim, lost = cluster.busiest()
    survivors = [r for r in cluster.alive() if r is not victim]
    seqs = {r.port: r.api("GET", "/v1/events?since=0")[1]["last_seq"] for r in survivors}
    killed_wall, killed_at = time.time(), time.monotonic()
    victim.kill()
    back: dict[str, float] = {}

    def all_back() -> bool:
        for r in survivors:
            for stream_id, snap in cluster.local_streams(r).items():
                if stream_id in lost and stream_id not in back and writing(snap):
                    back[stream_id] = time.monotonic() - killed_at
        return len(back) == len(lost)

    ok = wait(all_back, 60, poll=0.1)
    taken = {}
    for r in survivors:
        for e in r.api("GET", f"/v1/events?since={seqs[r.port]}")[1]["events"]:
            if e["type"] == "taken_over" and e["stream"] in lost:
                taken[e["stream"]] = e["time"] - killed_wall
    twice = [s for s, v in cluster.owners(survivors).items() if len(v) > 1]
    log(f"kill {i}: {len(lost)} streams; writing again after "
        + ", ".join(f"{s} {back.get(s, float('nan')):.1f} s" for s in lost))
    victim.start(wait=60)
    return {"kill": i, "streams": lost, "writing_s": back, "taken_over_s": taken, "all_back": ok, "twice": twice}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--streams", type=int, default=6)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--sts", type=int, default=1)
    args = ap.parse_args()
    fx = cached_demo_media(default_cache_dir(), seconds=20, width=640, height=360)
    names = [f"k{i}" for i in range(args.streams)]
    cluster = LocalCluster(replicas=args.replicas, sts=args.sts, media_env={"MEDIA_SHUTDOWN_DRAIN": ""})
    publishers = []
    runs = []
    try:
        log(f"starting redis, nginx-rtmp, {args.sts} sts-service, {args.replicas} media-service in {cluster.workdir}")
        cluster.start()
        for n in names:
            publishers.append(publish(fx.path, cluster.rtmp.url(f"{n}/in"), loop=True,
                                      log_path=cluster.workdir / f"publish-{n}.log"))
        for i in range(1, args.kills + 1):
            runs.append(one_kill(cluster, names, i))
    finally:
        for p in publishers:
            stop_process(p, timeout=3)
        cluster.stop()
    writing_s = [t for r in runs for t in r.get("writing_s", {}).values()]
    taken_s = [t for r in runs for t in r.get("taken_over_s", {}).values()]
    print(f"\nTakeover after SIGKILL: {args.replicas} media-service replicas, {args.sts} sts-service, {args.streams} "
          f"looped streams, lease TTL 3 s, D 3.5 s, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'kill':>4} {'streams':>7} {'taken over s (max)':>19} {'writing again s: min':>21} {'max':>5} "
          f"{'twice':>5}")
    for r in runs:
        if "error" in r:
            print(f"{r['kill']:>4} {r['error']}")
            continue
        w = list(r["writing_s"].values())
        print(f"{r['kill']:>4} {len(r['streams']):>7} {fmt(max(r['taken_over_s'].values(), default=None)):>19} "
              f"{fmt(min(w, default=None)):>21} {fmt(max(w, default=None)):>5} {len(r['twice']):>5}")
    print(f"writing again after the kill over {len(writing_s)} streams: p50 {fmt(pct(writing_s, 50))} s, "
          f"p95 {fmt(pct(writing_s, 95))} s, max {fmt(max(writing_s, default=None))} s; taken over: p50 "
          f"{fmt(pct(taken_s, 50))} s, max {fmt(max(taken_s, default=None))} s")
    print(json.dumps({"kills": runs, "writing_again_s": {"p50": pct(writing_s, 50), "p95": pct(writing_s, 95),
                                                        "max": max(writing_s, default=None)},
                      "taken_over_s": {"p50": pct(taken_s, 50), "max": max(taken_s, default=None)}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
