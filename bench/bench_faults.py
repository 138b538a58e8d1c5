"""Faults under load: a cluster carrying k dense-speech streams has Redis restarted empty, then
loses its busiest replica (SIGKILL), `--rounds` times each.

A `LocalCluster` (redis-server, nginx-rtmp with hooks through one entry point, `--sts`
sts-services, `--replicas` media-services with `--redis-url`, lease TTL `--lease-ttl`, the
default D) and k looped publishers of the 60 s dense fixture, started in the same second. A
watcher polls every replica's streams every 0.25 s and keeps, per stream, when its output last
advanced (`audio_frames_out` grew) and on how many replicas it runs.

- Redis restarted empty (down `--redis-down` s): how long until every lease and spec is back in
  Redis, the longest output stall of any stream around the restart (a stall is time without a
  new audio frame out; 0.25 s is the watcher's resolution), takeovers (there should be none),
  streams seen on two replicas, fallbacks / fragments sent in the 10 s before the fault and in the
  20 s after it (the load's own shedding, and what the fault adds).
- SIGKILL of the replica with the most streams: per lost stream, when its output was written
  again on another replica; the longest stall of the streams that were not on it; streams seen
  twice; fallbacks before and after, as above. The killed replica is started again (a fresh id).

Prints a table per round, then one JSON line. Never asserts. Progress on stderr.

Run: .venv/bin/python bench/bench_faults.py [-k 8] [--rounds 2] [--replicas 3] [--sts 1]
[--lease-ttl 3] [--redis-down 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis  # noqa: E402
from _common import fmt, log, machine_info, pct  # noqa: E402
from bench_scale import DEFAULT_D, fault_cluster, settled, start_looped, stop_all, wait  # noqa: E402
from livedub_testkit.cluster import LocalCluster  # noqa: E402
from livedub_testkit.dense import cached_dense_media  # noqa: E402
from livedub_testkit.fixtures import default_cache_dir  # noqa: E402

POLL_S = 0.25
SETTLE_S = 10.0  # after every stream writes, before a fault: load at its steady level
AFTER_S = 20.0  # how long a round watches after the fault


class Watcher:
    """Polls every live replica's streams; per stream: frames out, when they last grew, the
    longest time they did not (since `mark()`), and the replicas it was seen on at once."""

    def __init__(self, cluster: LocalCluster, names: list[str]):
        self.cluster, self.names = cluster, names
        self._lock = threading.Lock()
        self._frames: dict[str, int] = {}
        self._advanced: dict[str, float] = {}
        self._stall: dict[str, float] = {}
        self._twice: set[str] = set()
        self._fallbacks: dict[str, tuple[int, int]] = {}  # "<stream>@<replica pid>" -> (fallbacks, sent) there
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def mark(self) -> None:
        """Start a new round: stalls and the twice-seen set restart from now."""
        now = time.monotonic()
        with self._lock:
            self._advanced = {n: now for n in self._advanced}
            self._stall = {n: 0.0 for n in self.names}
            self._twice = set()

    def round(self) -> dict:
        now = time.monotonic()
        with self._lock:
            stall = {n: max(self._stall.get(n, 0.0), now - self._advanced.get(n, now)) for n in self.names}
            return {"stall_s": stall, "twice": sorted(self._twice)}

    def fallbacks(self, streams: set[str] | None = None) -> tuple[int, int]:
        """(fallbacks, fragments sent) so far, over `streams` (default all) on every replica each
        ran on."""
        with self._lock:
            kept = [v for k, v in self._fallbacks.items() if streams is None or k.split("@")[0] in streams]
        return sum(f for f, _ in kept), sum(n for _, n in kept)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            seen: dict[str, list[tuple[int, dict]]] = {}
            for r in self.cluster.alive():
                try:
                    for stream_id, snap in self.cluster.local_streams(r).items():
                        seen.setdefault(stream_id, []).append((r.proc.pid, snap))
                except (OSError, AttributeError):  # a replica being killed or started
                    continue
            now = time.monotonic()
            with self._lock:
                for stream_id, snaps in seen.items():
                    if len(snaps) > 1:
                        self._twice.add(stream_id)
                    for pid, snap in snaps:
                        key = f"{stream_id}@{pid}"  # a replica started again has a new pid and new counters
                        frames = snap["counters"]["audio_frames_out"]
                        if frames > self._frames.get(key, 0):
                            self._stall[stream_id] = max(self._stall.get(stream_id, 0.0),
                                                         now - self._advanced.get(stream_id, now))
                            self._advanced[stream_id] = now
                        self._frames[key] = frames
                        self._fallbacks[key] = (sum(snap["counters"]["fallbacks"].values()),
                                                snap["counters"]["fragments_sent"])


def fallbacks_since(watcher: Watcher, before: tuple[int, int], until: tuple[int, int] | None = None) -> dict:
    now = until if until is not None else watcher.fallbacks()
    return {"fallbacks": now[0] - before[0], "sent": now[1] - before[1]}


def leases_back(client: redis.Redis, names: list[str]) -> bool:
    try:
        return (all(client.exists(f"livedub:lease:{n}") for n in names)
                and sorted(client.hkeys("livedub:specs")) == sorted(names))
    except redis.RedisError:
        return False


def redis_round(cluster: LocalCluster, watcher: Watcher, names: list[str], i: int, down_s: float) -> dict:
    if not wait(lambda: settled(cluster, names), 120):
        return {"round": i, "fault": "redis", "error": "streams did not settle (each once, writing) within 120 s"}
    f_pre = watcher.fallbacks()
    time.sleep(SETTLE_S)
    seqs = {r.port: r.api("GET", "/v1/events?since=0")[1]["last_seq"] for r in cluster.alive()}
    f0 = watcher.fallbacks()
    watcher.mark()
    t0 = time.monotonic()
    cluster.redis.restart(down_s=down_s)
    client = redis.Redis.from_url(cluster.redis.url, decode_responses=True)
    back = wait(lambda: leases_back(client, names), 60, poll=0.1)
    back_s = time.monotonic() - t0 if back else None
    client.close()
    time.sleep(max(0.0, AFTER_S - (time.monotonic() - t0)))
    seen = watcher.round()
    takeovers = sum(1 for r in cluster.alive() for e in r.api("GET", f"/v1/events?since={seqs.get(r.port, 0)}")[1]["events"]
                    if e["type"] == "taken_over")
    stalls = list(seen["stall_s"].values())
    log(f"redis round {i}: leases back after {fmt(back_s)} s; longest stall {fmt(max(stalls), '.2f')} s; "
        f"takeovers {takeovers}; twice {seen['twice']}")
    return {"round": i, "fault": "redis", "leases_back_s": back_s, "stall_max_s": max(stalls),
            "stall_p50_s": pct(stalls, 50), "takeovers": takeovers, "twice": seen["twice"],
            "fallbacks_before": fallbacks_since(watcher, f_pre, f0), "fallbacks": fallbacks_since(watcher, f0)}


def kill_round(cluster: LocalCluster, watcher: Watcher, names: list[str], i: int) -> dict:
    if not wait(lambda: settled(cluster, names), 120):
        return {"round": i, "fault": "kill", "error": "streams did not settle (each once, writing) within 120 s"}
    f_pre = watcher.fallbacks()
    time.sleep(SETTLE_S)
    victim, lost = cluster.busiest()
    f0 = watcher.fallbacks()
    others = set(names) - set(lost)
    f0_lost, f0_others = watcher.fallbacks(set(lost)), watcher.fallbacks(others)
    watcher.mark()
    t0 = time.monotonic()
    victim.kill()
    time.sleep(AFTER_S)
    seen = watcher.round()
    # A lost stream's stall ends when its output was written again elsewhere.
    lost_s = [seen["stall_s"][n] for n in lost]
    kept = [v for n, v in seen["stall_s"].items() if n not in lost]
    log(f"kill round {i}: {len(lost)} streams lost; written again after max {fmt(max(lost_s, default=None))} s; "
        f"the others' longest stall {fmt(max(kept, default=None), '.2f')} s; twice {seen['twice']}")
    victim.start(wait=60)
    return {"round": i, "fault": "kill", "streams": lost, "writing_again_s": dict(zip(lost, lost_s, strict=True)),
            "others_stall_max_s": max(kept, default=None), "twice": seen["twice"],
            "fallbacks_before": fallbacks_since(watcher, f_pre, f0), "fallbacks": fallbacks_since(watcher, f0),
            "fallbacks_lost": fallbacks_since(watcher, f0_lost, watcher.fallbacks(set(lost))),
            "fallbacks_others": fallbacks_since(watcher, f0_others, watcher.fallbacks(others)), "after_s": time.monotonic() - t0}


def shed(f: dict) -> str:
    return f"{f['fallbacks']}/{f['sent']}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", type=int, default=8, help="dense streams, published in the same second")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each fault")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--sts", type=int, default=1)
    ap.add_argument("--lease-ttl", type=float, default=3.0)
    ap.add_argument("--redis-down", type=float, default=0.5, help="seconds Redis stays down in a restart")
    args = ap.parse_args()
    fx = cached_dense_media(default_cache_dir(), seconds=60)
    names = [f"f{i}" for i in range(args.k)]
    cluster = fault_cluster(args.replicas, args.sts, args.lease_ttl)
    publishers: list = []
    rounds, watcher = [], None
    try:
        start_looped(cluster, fx.path, names, publishers)
        watcher = Watcher(cluster, names).start()
        for i in range(1, args.rounds + 1):
            rounds.append(redis_round(cluster, watcher, names, i, args.redis_down))
            rounds.append(kill_round(cluster, watcher, names, i))
    finally:
        if watcher is not None:
            watcher.stop()
        stop_all(cluster, publishers)
    print(f"\nFaults under load: {args.k} dense streams (looped, started together), {args.replicas} media-service, "
          f"{args.sts} sts-service, lease TTL {args.lease_ttl:g} s, D {DEFAULT_D:g} s, {os.cpu_count()} CPUs")
    print(f"{'round':>5} {'fault':<6} {'leases back s':>13} {'lost':>4} {'written again s max':>19} "
          f"{'longest stall s (others)':>24} {'takeovers':>9} {'twice':>5} {'shed before':>11} {'shed after':>10} "
          f"{'of which lost':>13} {'others':>7}")
    for r in rounds:
        if "error" in r:
            print(f"{r['round']:>5} {r['fault']:<6} {r['error']}")
            continue
        kill = r["fault"] == "kill"
        w = list(r["writing_again_s"].values()) if kill else []
        print(f"{r['round']:>5} {r['fault']:<6} {fmt(r.get('leases_back_s')):>13} "
              f"{len(r['streams']) if kill else '-':>4} {fmt(max(w, default=None)):>19} "
              f"{fmt(r['others_stall_max_s' if kill else 'stall_max_s'], '.2f'):>24} {r.get('takeovers', '-'):>9} "
              f"{len(r['twice']):>5} {shed(r['fallbacks_before']):>11} {shed(r['fallbacks']):>10} "
              f"{shed(r['fallbacks_lost']) if kill else '-':>13} {shed(r['fallbacks_others']) if kill else '-':>7}")
    print(json.dumps({"machine": machine_info(), "k": args.k, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
