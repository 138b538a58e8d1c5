"""Three media-service replicas behind one Redis (issue 23 #1-3, #7), real processes throughout
(`livedub_testkit.cluster.LocalCluster`): redis-server, nginx-rtmp whose publish hooks reach the
replicas through one HTTP entry point, two sts-services, three media-services with `--redis-url`
(default lease TTL and shutdown drain), six looped publishers.

One cluster serves the module's tests, in order: six hook-started streams run exactly once each,
spread over the replicas; the replica with the most streams is SIGKILLed and its streams come
back elsewhere, each once, counted as takeovers; a replica paused (SIGSTOP) past its lease gives
its streams up when it wakes (SIGCONT) and never opens an output again; Redis restarted empty:
the streams go on and their leases come back; Redis away for longer than a lease: every output
stops, and starts again when it is back; SIGTERM hands a replica's streams over. Times are
printed (`-s`), not asserted.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from livedub_testkit.analysis import publish, stop_process
from livedub_testkit.cluster import LocalCluster, writing
from livedub_testkit.polling import wait_for
from livedub_testkit.services import metric_value

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

STREAMS = [f"c{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, short_media):
    # The default shutdown drain (the testkit's is 2 s): a hand-over plays out what is buffered.
    c = LocalCluster(replicas=3, sts=2, workdir=tmp_path_factory.mktemp("cluster"),
                     media_env={"MEDIA_SHUTDOWN_DRAIN": ""})
    publishers = []
    try:
        c.start()
        for name in STREAMS:
            publishers.append(publish(short_media.path, c.rtmp.url(f"{name}/in"), loop=True,
                                      log_path=c.workdir / f"publish-{name}.log"))
        yield c
    finally:
        for p in publishers:
            stop_process(p, timeout=3)
        c.stop()


def cluster_streams(replica) -> list[dict]:
    status, body = replica.api("GET", "/v1/streams")
    assert status == 200, body
    return body["streams"]


def takeovers(replicas, reason: str) -> float:
    return sum(metric_value(r.api("GET", "/metrics")[1], "media_stream_takeovers_total", reason=reason)
               for r in replicas)


def once_each(cluster, replicas=None) -> None:
    where = cluster.owners(replicas)
    assert sorted(where) == STREAMS and all(len(v) == 1 for v in where.values()), where


def wait_writing_on(cluster, replicas, streams: list[str], since: float, timeout: float = 60) -> dict[str, float]:
    """Seconds from `since` until each stream writes on one of `replicas`."""
    back: dict[str, float] = {}

    def all_back():
        for r in replicas:
            for stream_id, snap in cluster.local_streams(r).items():
                if stream_id in streams and stream_id not in back and writing(snap):
                    back[stream_id] = time.monotonic() - since
        return len(back) == len(streams)

    wait_for(all_back, f"{streams} writing on {[r.port for r in replicas]}", timeout, poll=0.1)
    return back


def test_hook_started_streams_run_once_each_spread_by_load(cluster):
    def all_writing():
        snaps = cluster_streams(cluster.media[1])
        return len(snaps) == len(STREAMS) and all(writing(s) for s in snaps)

    wait_for(all_writing, "six streams writing", 90)
    once_each(cluster)
    where = cluster.owners()
    per_replica = {r.port: sum(1 for v in where.values() if v == [r.port]) for r in cluster.media}
    print(f"\nstreams per replica: {per_replica}")
    assert all(1 <= n <= 3 for n in per_replica.values()), per_replica
    listed = cluster_streams(cluster.media[2])
    assert sorted(s["id"] for s in listed) == STREAMS and all(s["replica"] for s in listed)


def test_sigkill_of_the_busiest_replica_restarts_its_streams_elsewhere_once(cluster):
    victim, lost = cluster.busiest()
    victim_id = next(s["replica"] for s in cluster_streams(victim) if s["id"] == lost[0])
    survivors = [r for r in cluster.media if r is not victim]
    killed_at = time.monotonic()
    victim.kill()
    back = wait_writing_on(cluster, survivors, lost, killed_at)
    print(f"\nSIGKILL of the replica with {len(lost)} streams: dubbed output writing again after "
          + ", ".join(f"{s} {t:.1f} s" for s, t in sorted(back.items())))
    once_each(cluster, survivors)
    assert takeovers(survivors, "lease_expired") == len(lost)
    events = [e for r in survivors for e in r.api("GET", "/v1/events?since=0")[1]["events"] if e["type"] == "taken_over"]
    assert sorted(e["stream"] for e in events) == lost and all(e["data"]["from"] == victim_id for e in events)
    assert all(cluster.rtmp.stat_xml().count(f"<name>{s}/out</name>") <= 1 for s in STREAMS)
    victim.start(wait=60)  # a fresh replica (new id) joins for the next tests


def test_a_replica_paused_past_its_lease_gives_its_streams_up(cluster):
    sleeper, held = cluster.busiest()
    assert held
    others = [r for r in cluster.media if r is not sleeper]
    seq = sleeper.api("GET", "/v1/events?since=0")[1]["last_seq"]
    os.kill(sleeper.proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        back = wait_writing_on(cluster, others, held, stopped_at)
    finally:
        os.kill(sleeper.proc.pid, signal.SIGCONT)
    print("\npaused owner: its streams writing on other replicas after "
          + ", ".join(f"{s} {t:.1f} s" for s, t in sorted(back.items())))
    wait_for(lambda: not set(held) & set(cluster.local_streams(sleeper)), "the woken replica gave its streams up", 20)
    after = [e for e in sleeper.api("GET", f"/v1/events?since={seq}")[1]["events"] if e["stream"] in held]
    assert {e["stream"] for e in after if e["type"] == "lease_lost"} == set(held), after
    assert not [e for e in after if e["type"] == "output_open"], "the stale owner opened an output again"
    once_each(cluster)


def test_redis_restarted_empty_streams_go_on_and_leases_come_back(cluster):
    before = {s["id"]: s["counters"]["audio_frames_out"] for s in cluster_streams(cluster.media[0])}
    cluster.redis.restart(down_s=0.5)
    client = redis.Redis.from_url(cluster.redis.url, decode_responses=True)
    try:
        wait_for(lambda: all(client.exists(f"livedub:lease:{s}") for s in STREAMS)
                 and sorted(client.hkeys("livedub:specs")) == STREAMS, "every lease and spec back in Redis", 20)
    finally:
        client.close()
    # The load board is rebuilt by the next heartbeats (1.5 s): until then the list may miss replicas.
    wait_for(lambda: sorted(s["id"] for s in cluster_streams(cluster.media[0])) == STREAMS,
             "the cluster list complete again", 10)
    wait_for(lambda: all(writing(s) and s["counters"]["audio_frames_out"] > before[s["id"]]
                         for s in cluster_streams(cluster.media[0])), "every stream still writing", 10)
    once_each(cluster)


def test_redis_away_longer_than_a_lease_stops_outputs_until_it_is_back(cluster):
    def snaps() -> dict[str, dict]:
        return {k: v for r in cluster.alive() for k, v in cluster.local_streams(r).items()}

    seqs = {r.port: r.api("GET", "/v1/events?since=0")[1]["last_seq"] for r in cluster.alive()}
    cluster.redis.stop()
    down_at = time.monotonic()
    try:
        wait_for(lambda: not any(writing(s) for s in snaps().values()),
                 "every output stopped (no replica can prove it still owns its streams)", 20)
        stopped_after = time.monotonic() - down_at
    finally:
        cluster.redis.start()
    back_at = time.monotonic()
    wait_for(lambda: sorted(snaps()) == STREAMS and all(writing(s) for s in snaps().values()),
             "every stream writing again, once", 30)
    print(f"\nRedis away: outputs stopped {stopped_after:.1f} s after it went, written again "
          f"{time.monotonic() - back_at:.1f} s after it came back")
    once_each(cluster)
    lost = {e["stream"] for r in cluster.alive() for e in r.api("GET", f"/v1/events?since={seqs[r.port]}")[1]["events"]
            if e["type"] == "output_lost" and "lease" in e["data"].get("error", "")}
    assert lost == set(STREAMS)


def test_sigterm_hands_streams_over_after_playing_out(cluster):
    leaving, moving = cluster.busiest()
    assert moving
    stayers = [r for r in cluster.media if r is not leaving]
    before = takeovers(stayers, "handover")
    sent_at = time.monotonic()
    leaving.proc.send_signal(signal.SIGTERM)
    back = wait_writing_on(cluster, stayers, moving, sent_at)
    assert leaving.proc.wait(30) == 0
    print(f"\nSIGTERM of a replica with {len(moving)} streams: writing on their successors after "
          + ", ".join(f"{s} {t:.1f} s" for s, t in sorted(back.items())))
    once_each(cluster, stayers)
    assert takeovers(stayers, "handover") - before == len(moving)
