"""Three media-service replicas behind one Redis (issue 23 #1-3, #7), real processes throughout:
redis-server, nginx-rtmp (its publish hooks reach the replicas through one HTTP entry point, as a
Service would), two sts-services, three media-services with `--redis-url`, six publishers.

One cluster serves the module's tests, in order: six hook-started streams run exactly once each,
spread over the replicas; the replica with the most streams is SIGKILLed and its streams come
back elsewhere, each once, counted as takeovers; a replica paused (SIGSTOP) past its lease gives
its streams up when it wakes (SIGCONT) and never publishes over their new owner; Redis restarted
empty: the streams go on and their leases come back. Times are printed, not asserted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from livedub_testkit.analysis import publish, stop_process
from livedub_testkit.redis_server import RedisServer
from livedub_testkit.rtmp_server import NginxRtmpServer
from livedub_testkit.services import MediaProcess, StsProcess, free_port, http_json, metric_value

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

STREAMS = [f"c{i}" for i in range(1, 7)]
LEASE_TTL_S = 3.0  # the default


class HookFront:
    """One HTTP entry point for the replicas' hooks: each request goes to the first replica that
    answers (a Kubernetes Service / compose DNS name does the same with its ready endpoints)."""

    def __init__(self, ports: list[int]):
        front = self
        self.ports = ports

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                for port in front.ports:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}{self.path}", data=body, method="POST",
                                                 headers={"Content-Type": self.headers.get("Content-Type", "")})
                    try:
                        with urllib.request.urlopen(req, timeout=10) as resp:  # nosec B310  # loopback
                            status, data = resp.status, resp.read()
                    except urllib.error.HTTPError as exc:
                        status, data = exc.code, exc.read()
                    except OSError:
                        continue  # that replica is down: the next one
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(502)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def local_streams(replica: MediaProcess) -> dict[str, dict]:
    """The streams this replica itself runs (a forwarded request is answered locally)."""
    req = urllib.request.Request(replica.url + "/v1/streams", headers={
        "Authorization": f"Bearer {replica.api_token}", "X-Livedub-Forwarded": "1"})
    with urllib.request.urlopen(req, timeout=5) as resp:  # nosec B310  # loopback
        import json
        return {s["id"]: s for s in json.loads(resp.read())["streams"] if s["state"] != "stopped"}


def cluster_streams(replica: MediaProcess) -> list[dict]:
    status, body = replica.api("GET", "/v1/streams")
    assert status == 200, body
    return body["streams"]


def writing(snap: dict) -> bool:
    return snap.get("output", {}).get("state") == "writing" and snap["counters"]["audio_frames_out"] > 0


def alive(replicas):
    return [r for r in replicas if r.proc is not None and r.proc.poll() is None]


def wait_for(what: str, predicate, timeout: float, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, short_media):
    work = tmp_path_factory.mktemp("cluster")
    redis = RedisServer(workdir=work / "redis").start()
    ports = [free_port() for _ in range(3)]
    front = HookFront(ports)
    api_token = "cluster-test-token-7f3b9c2e1a"
    hooks = f"{front.url}/v1/hooks/nginx"
    rtmp = NginxRtmpServer(on_publish_url=f"{hooks}/on_publish?token={api_token}",
                           on_publish_done_url=f"{hooks}/on_publish_done?token={api_token}",
                           prefix=work / "nginx", keep_prefix=True)
    sts_token = "cluster-sts-token-5d8e2f9a7b"
    sts = [StsProcess(token=sts_token, log_dir=work / f"sts{i}") for i in range(2)]
    # The default shutdown drain (the testkit's is 2 s): a hand-over plays out what is buffered.
    media = [MediaProcess("--rtmp-base-url", f"rtmp://127.0.0.1:{rtmp.rtmp_port}", "--redis-url", redis.url,
                          sts_url=sts[i % 2].url, sts_token=sts_token, api_token=api_token, port=ports[i],
                          env={"MEDIA_SHUTDOWN_DRAIN": ""}, log_dir=work / f"media{i}") for i in range(3)]
    publishers = []
    try:
        rtmp.start()
        for s in sts:
            s.start(wait=0)
        for s in sts:
            s.wait_ready(240)
        for m in media:
            m.start(wait=60)
        for name in STREAMS:
            publishers.append(publish(short_media.path, rtmp.url(f"{name}/in"), loop=True,
                                      log_path=work / f"publish-{name}.log"))
        yield {"redis": redis, "rtmp": rtmp, "media": media, "sts": sts, "work": work}
    finally:
        for p in publishers:
            stop_process(p, timeout=3)
        for m in alive(media):
            os.kill(m.proc.pid, signal.SIGCONT)  # a paused replica must be able to stop
            m.proc.send_signal(signal.SIGTERM)  # all at once: their drains overlap
        for m in media:
            m.stop(timeout=20)
        for s in sts:
            s.stop()
        rtmp.stop()
        front.close()
        redis.stop()


def owners(replicas) -> dict[str, list[str]]:
    """stream id -> the replicas (by port) that run it."""
    out: dict[str, list[str]] = {}
    for r in alive(replicas):
        for stream_id in local_streams(r):
            out.setdefault(stream_id, []).append(str(r.port))
    return out


def test_hook_started_streams_run_once_each_spread_by_load(cluster):
    media = cluster["media"]

    def all_writing():
        snaps = {s["id"]: s for s in cluster_streams(media[1])}
        return len(snaps) == len(STREAMS) and all(writing(s) for s in snaps.values()) and snaps

    snaps = wait_for("six streams writing", all_writing, 90)
    where = owners(media)
    assert sorted(where) == STREAMS
    assert all(len(v) == 1 for v in where.values()), f"a stream runs twice: {where}"
    per_replica = {str(r.port): sum(1 for v in where.values() if v == [str(r.port)]) for r in media}
    print(f"\nstreams per replica: {per_replica}")
    assert all(1 <= n <= 3 for n in per_replica.values()), per_replica
    assert {s["replica"] for s in snaps.values()} and len(cluster_streams(media[2])) == len(STREAMS)


def test_sigkill_of_the_busiest_replica_restarts_its_streams_elsewhere_once(cluster):
    media, rtmp = cluster["media"], cluster["rtmp"]
    where = owners(media)
    victim = max(media, key=lambda r: sum(1 for v in where.values() if v == [str(r.port)]))
    lost = sorted(s for s, v in where.items() if v == [str(victim.port)])
    victim_id = next(s["replica"] for s in cluster_streams(victim) if s["id"] == lost[0])
    survivors = [r for r in media if r is not victim]
    killed_at = time.monotonic()
    victim.kill()
    back: dict[str, float] = {}

    def all_back():
        for r in survivors:
            for stream_id, snap in local_streams(r).items():
                if stream_id in lost and stream_id not in back and writing(snap):
                    back[stream_id] = time.monotonic() - killed_at
        return len(back) == len(lost)

    wait_for(f"{lost} writing again on the survivors", all_back, 60, poll=0.1)
    print(f"\nSIGKILL of the replica with {len(lost)} streams: dubbed output writing again after "
          + ", ".join(f"{s} {t:.1f} s" for s, t in sorted(back.items())))
    where = owners(survivors)
    assert sorted(where) == STREAMS and all(len(v) == 1 for v in where.values()), where
    takeovers = sum(metric_value(r.api("GET", "/metrics")[1], "media_stream_takeovers_total", reason="lease_expired")
                    for r in survivors)
    assert takeovers == len(lost)
    events = [e for r in survivors for e in r.api("GET", "/v1/events?since=0")[1]["events"] if e["type"] == "taken_over"]
    assert sorted(e["stream"] for e in events) == lost and all(e["data"]["from"] == victim_id for e in events)
    assert all(rtmp.stat_xml().count(f"<name>{s}/out</name>") <= 1 for s in STREAMS)
    victim.start(wait=60)  # a fresh replica (new id) joins for the next tests


def test_a_replica_paused_past_its_lease_gives_its_streams_up(cluster):
    media = cluster["media"]
    where = owners(media)
    sleeper = max(media, key=lambda r: sum(1 for v in where.values() if v == [str(r.port)]))
    held = sorted(s for s, v in where.items() if v == [str(sleeper.port)])
    assert held
    others = [r for r in media if r is not sleeper]
    seq = sleeper.api("GET", "/v1/events?since=0")[1]["last_seq"]
    os.kill(sleeper.proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        def taken():
            running = {}
            for r in others:
                running.update({k: v for k, v in local_streams(r).items() if writing(v)})
            return all(s in running for s in held)
        wait_for(f"{held} taken over while the owner is paused", taken, 60, poll=0.2)
        paused_for = time.monotonic() - stopped_at
    finally:
        os.kill(sleeper.proc.pid, signal.SIGCONT)
    print(f"\npaused owner: its {len(held)} streams writing on other replicas after {paused_for:.1f} s")
    wait_for("the woken replica gave its streams up", lambda: not set(held) & set(local_streams(sleeper)), 20)
    after = [e for e in sleeper.api("GET", f"/v1/events?since={seq}")[1]["events"] if e["stream"] in held]
    assert {e["stream"] for e in after if e["type"] == "lease_lost"} == set(held), after
    assert not [e for e in after if e["type"] == "output_open"], "the stale owner opened an output again"
    where = owners(media)
    assert sorted(where) == STREAMS and all(len(v) == 1 for v in where.values()), where


def test_redis_restarted_empty_streams_go_on_and_leases_come_back(cluster):
    media, redis = cluster["media"], cluster["redis"]
    before = {s["id"]: s["counters"]["audio_frames_out"] for s in cluster_streams(media[0])}
    redis.restart(down_s=0.5)

    def leases_back():
        import socket
        with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as s:
            s.sendall(b"KEYS livedub:lease:*\r\n")
            time.sleep(0.2)
            reply = s.recv(65536).decode()
        return all(f"livedub:lease:{sid}" in reply for sid in STREAMS)

    wait_for("every lease back in Redis", leases_back, 20)
    time.sleep(2)
    snaps = {s["id"]: s for s in cluster_streams(media[0])}
    assert sorted(snaps) == STREAMS
    assert all(writing(s) and s["counters"]["audio_frames_out"] > before[i] for i, s in snaps.items())
    where = owners(media)
    assert all(len(v) == 1 for v in where.values()), where
    assert http_json(media[0].url + "/health")[0] == 200


def test_sigterm_hands_streams_over_after_playing_out(cluster):
    media = cluster["media"]
    where = owners(media)
    leaving = max(media, key=lambda r: sum(1 for v in where.values() if v == [str(r.port)]))
    moving = sorted(s for s, v in where.items() if v == [str(leaving.port)])
    assert moving
    stayers = [r for r in media if r is not leaving]
    before = sum(metric_value(r.api("GET", "/metrics")[1], "media_stream_takeovers_total", reason="handover")
                 for r in stayers)
    sent_at = time.monotonic()
    leaving.proc.send_signal(signal.SIGTERM)
    back: dict[str, float] = {}

    def all_moved():
        for r in stayers:
            for stream_id, snap in local_streams(r).items():
                if stream_id in moving and stream_id not in back and writing(snap):
                    back[stream_id] = time.monotonic() - sent_at
        return len(back) == len(moving)

    wait_for(f"{moving} writing on the other replicas", all_moved, 60, poll=0.1)
    assert leaving.proc.wait(30) == 0
    print(f"\nSIGTERM of a replica with {len(moving)} streams: writing on their successors after "
          + ", ".join(f"{s} {t:.1f} s" for s, t in sorted(back.items())))
    where = owners(stayers)
    assert sorted(where) == STREAMS and all(len(v) == 1 for v in where.values()), where
    after = sum(metric_value(r.api("GET", "/metrics")[1], "media_stream_takeovers_total", reason="handover")
                for r in stayers)
    assert after - before == len(moving)
