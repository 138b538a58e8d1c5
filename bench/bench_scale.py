"""Scale-out benchmark (issue 23 #8): one media-service process against several, and how long a
SIGKILLed replica's streams take to write dubbed output again on the others.

Throughput (`--throughput 8,12,16`, `--configs 1,3`): for each k and each number of replicas, a
fresh `LocalCluster` (`--sts` sts-services), k streams of the dense fixture (`--seconds`, 60) published
in the same second through the hooks (placed by load), D = 3.5 s: fallbacks by reason, the worst
input lag per stream (how far the reading fell behind the live input), CPU per media-service
process (100 % = one core), of each sts-service and of the whole machine (100 % = every core); `rest` is the machine's busy
time not in the services (publishers, RTMP server, Redis, the bench), in % of one core. Glass-to-glass delay is not measured here
(bench_load.py measures it for one process).

Takeover (`--kills`, 10):
a `LocalCluster` (redis-server, nginx-rtmp with hooks through one entry point, `--sts` sts-services,
`--replicas` media-services with `--redis-url`, default lease TTL and D) and `--streams` looped
publishers of the cached 20 s 640x360 demo fixture. Then `--kills` times: wait until every stream
writes, exactly once in the cluster; SIGKILL the replica with the most streams; for each of its
streams measure, from the kill, when another replica took it over (its `taken_over` event) and
when its output was written again (snapshot: output `writing`, audio frames out); start the
killed replica again (a fresh id). Prints a table per kill and the distribution, then one JSON
line. Never asserts. Progress on stderr.

Run: .venv/bin/python bench/bench_scale.py [--throughput 8,12,16] [--configs 1,3] [--seconds 60]
[--kills 10] [--lease-ttl 3] [--streams 6] [--replicas 3] [--sts 1]  (`--kills 0` or `--throughput ""` skips a part)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ProcSampler, fmt, log, machine_ticks, pct  # noqa: E402
from livedub_testkit.analysis import publish, stop_process  # noqa: E402
from livedub_testkit.cluster import LocalCluster, writing  # noqa: E402
from livedub_testkit.dense import cached_dense_media  # noqa: E402
from livedub_testkit.fixtures import cached_demo_media, default_cache_dir  # noqa: E402
from media_service.config import MediaConfig  # noqa: E402

DEFAULT_D = MediaConfig.model_fields["output_delay_s"].default  # what the takeover part's replicas run at


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


def fault_cluster(replicas: int, sts: int, lease_ttl: float) -> LocalCluster:
    """The cluster the fault benchmarks kill replicas of: no drain (SIGKILL is the fault), the
    given lease TTL, the default D."""
    return LocalCluster(replicas=replicas, sts=sts, media_env={"MEDIA_SHUTDOWN_DRAIN": ""},
                        media_args=("--lease-ttl", f"{lease_ttl:g}"))


def start_looped(cluster: LocalCluster, path, names: list[str], publishers: list) -> None:
    """Start the cluster, then one looped publisher of `path` per name, appended to `publishers`
    as each starts (the caller stops them, even after a failure half-way)."""
    log(f"starting redis, nginx-rtmp, {len(cluster.sts)} sts-service, {len(cluster.media)} media-service "
        f"in {cluster.workdir}")
    cluster.start()
    for n in names:
        publishers.append(publish(path, cluster.rtmp.url(f"{n}/in"), loop=True,
                                  log_path=cluster.workdir / f"publish-{n}.log"))


def stop_all(cluster: LocalCluster, publishers: list) -> None:
    for p in publishers:
        stop_process(p, timeout=3)
    cluster.stop()


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


def throughput(k: int, replicas: int, seconds: float, sts: int = 1) -> dict:
    """One (k, replicas) run on a fresh cluster; see the module docstring."""
    fx = cached_dense_media(default_cache_dir(), seconds=seconds)
    names = [f"d{i}" for i in range(k)]
    cluster = LocalCluster(replicas=replicas, sts=sts, media_args=("--output-delay", "3.5"))
    res: dict = {"k": k, "replicas": replicas, "sts": sts}
    publishers, sampler = [], None
    lag = {n: 0.0 for n in names}
    snaps: dict[str, dict] = {}
    try:
        log(f"[k={k} replicas={replicas}] starting in {cluster.workdir}")
        cluster.start()
        targets = {f"media{i}": (lambda m=m: m.proc.pid if m.proc and m.proc.poll() is None else None)
                   for i, m in enumerate(cluster.media)}
        targets.update({f"sts{i}": (lambda s=s: s.proc.pid if s.proc and s.proc.poll() is None else None)
                        for i, s in enumerate(cluster.sts)})
        sampler = ProcSampler(targets).start()
        t0, m0 = time.monotonic(), machine_ticks()
        for n in names:
            publishers.append(publish(fx.path, cluster.rtmp.url(f"{n}/in"), log_path=cluster.workdir / f"pub-{n}.log"))
        while any(p.poll() is None for p in publishers) and time.monotonic() - t0 < seconds + 60:
            time.sleep(1.0)
            for r in cluster.alive():
                for n, snap in cluster.local_streams(r).items():
                    snaps[n] = snap
                    lag[n] = max(lag[n], (snap.get("input") or {}).get("lag_s") or 0.0)
        m1 = machine_ticks()
        res["machine_busy_pct"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100
        time.sleep(3.5 + 3.0)  # the last fragments' results or deadlines
        for r in cluster.alive():
            snaps.update(cluster.local_streams(r))
        res["resources"] = sampler.stop()
        sampler = None
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"[:500]
        log(f"[k={k} replicas={replicas}] FAILED: {res['error']}")
    finally:
        if sampler is not None:
            sampler.stop()
        stop_all(cluster, publishers)
    sent = sum(s["counters"]["fragments_sent"] for s in snaps.values())
    fallbacks: dict[str, int] = {}
    for s in snaps.values():
        for reason, n in s["counters"]["fallbacks"].items():
            fallbacks[reason] = fallbacks.get(reason, 0) + n
    res.update({"streams_seen": len(snaps), "fragments_sent": sent, "fallbacks": fallbacks,
                "fallback_pct": 100.0 * sum(fallbacks.values()) / sent if sent else None,
                "input_lag_max_s": max(lag.values(), default=None),
                "input_lag_p50_of_max_s": pct(list(lag.values()), 50)})
    return res


def print_throughput(results: list[dict]) -> None:
    print(f"\nDense speech, D = 3.5 s, streams started together, {os.cpu_count()} CPUs; CPU % of one core, "
          "machine % of all cores")
    print(f"{'k':>3} {'replicas':>8} {'sts':>3} {'fallbacks %':>11} {'by reason':<36} {'input lag max s':>15} "
          f"{'median of max':>13} {'CPU % per media process (avg)':<30} {'sts CPU %':>9} {'machine %':>9} {'rest %':>6}")
    for r in results:
        if "error" in r:
            print(f"{r['k']:>3} {r['replicas']:>8} {r['sts']:>3} {r['error']}")
            continue
        cpu = r.get("resources", {})
        media_cpu = " ".join(fmt(v.get("cpu_avg"), ".0f") for n, v in sorted(cpu.items()) if n.startswith("media"))
        sts_cpu = " ".join(fmt(v.get("cpu_avg"), ".0f") for n, v in sorted(cpu.items()) if n.startswith("sts"))
        busy = r.get("machine_busy_pct")
        ours = sum(v.get("cpu_avg") or 0.0 for v in cpu.values())
        rest = busy * (os.cpu_count() or 1) - ours if busy is not None else None
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["fallbacks"].items())) or "-"
        print(f"{r['k']:>3} {r['replicas']:>8} {r['sts']:>3} {fmt(r['fallback_pct']):>11} {reasons:<36} "
              f"{fmt(r['input_lag_max_s'], '.2f'):>15} {fmt(r['input_lag_p50_of_max_s'], '.2f'):>13} "
              f"{media_cpu:<30} {sts_cpu:>9} {fmt(busy, '.0f'):>9} {fmt(rest, '.0f'):>6}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--throughput", default="8,12,16", help="comma-separated k; empty: skip")
    ap.add_argument("--configs", default="1,3", help="comma-separated numbers of media-service replicas")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease-ttl", type=float, default=3.0, help="the replicas' --lease-ttl in the takeover part")
    ap.add_argument("--streams", type=int, default=6)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--sts", type=int, default=1, help="sts-service processes, in both parts")
    args = ap.parse_args()
    tput = [throughput(k, n, args.seconds, args.sts) for k in (int(x) for x in args.throughput.split(",") if x)
            for n in (int(x) for x in args.configs.split(",") if x)]
    if tput:
        print_throughput(tput)
    if args.kills <= 0:
        print(json.dumps({"throughput": tput}))
        return 0
    fx = cached_demo_media(default_cache_dir(), seconds=20, width=640, height=360)
    names = [f"k{i}" for i in range(args.streams)]
    cluster = fault_cluster(args.replicas, args.sts, args.lease_ttl)
    publishers: list = []
    runs = []
    try:
        start_looped(cluster, fx.path, names, publishers)
        for i in range(1, args.kills + 1):
            runs.append(one_kill(cluster, names, i))
    finally:
        stop_all(cluster, publishers)
    writing_s = [t for r in runs for t in r.get("writing_s", {}).values()]
    taken_s = [t for r in runs for t in r.get("taken_over_s", {}).values()]
    print(f"\nTakeover after SIGKILL: {args.replicas} media-service replicas, {args.sts} sts-service, {args.streams} "
          f"looped streams, lease TTL {args.lease_ttl:g} s, D {DEFAULT_D:g} s (the default), {os.cpu_count()} CPUs, load average "
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
    print(json.dumps({"throughput": tput, "kills": runs, "writing_again_s": {"p50": pct(writing_s, 50), "p95": pct(writing_s, 95),
                                                        "max": max(writing_s, default=None)},
                      "taken_over_s": {"p50": pct(taken_s, 50), "max": max(taken_s, default=None)}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
