"""Any replica answers (issue 23 #2): two media-service replicas behind a real redis-server, with
a fake MediaMTX path list that both reconcile against. The inputs are never published: what is
checked is where streams start and that a request reaching either replica acts on the stream
wherever it runs (list, snapshot, PATCH, bypass, DELETE), and that reconcile, running on both,
starts each stream once and respects an operator's stop made on either replica."""

from __future__ import annotations

import json
import urllib.request

import pytest
import redis
from livedub_testkit.fake_mediamtx import FakeMediaMtxApi
from livedub_testkit.polling import wait_for
from livedub_testkit.services import MediaProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TOKEN = "cluster-api-test-token-93b1d7"
INPUTS = ["alpha", "beta", "gamma", "delta"]


@pytest.fixture
def replicas(redis_server, tmp_path):
    mtx = FakeMediaMtxApi()
    media = [MediaProcess("--redis-url", redis_server.url, "--mediamtx-api", mtx.url, "--reconcile-interval", "0.5",
                          "--rtmp-base-url", "rtmp://127.0.0.1:1", sts_url="http://127.0.0.1:9",
                          sts_token="sts-token-for-this-test", api_token=TOKEN, log_dir=tmp_path / f"m{i}")
             for i in range(2)]
    try:
        for m in media:
            m.start(wait=60)
        board = redis.Redis.from_url(redis_server.url)
        wait_for(lambda: len(board.keys("livedub:replica:*")) == 2, "both replicas on the load board")
        board.close()  # the inputs are published once both can take streams
        mtx.items = {f"live/{name}/in": True for name in INPUTS} | {"live/alpha/out": True}
        yield media, mtx
    finally:
        for m in media:
            m.stop()
        mtx.close()


def local_ids(replica: MediaProcess) -> set[str]:
    req = urllib.request.Request(replica.url + "/v1/streams", headers={
        "Authorization": f"Bearer {TOKEN}", "X-Livedub-Forwarded": "1"})
    with urllib.request.urlopen(req, timeout=5) as resp:  # nosec B310  # loopback
        return {s["id"] for s in json.loads(resp.read())["streams"] if s["state"] != "stopped"}


def test_any_replica_answers_for_every_stream(replicas):
    (a, b), mtx = replicas
    wait_for(lambda: local_ids(a) | local_ids(b) == set(INPUTS), "reconcile on both starts every published input")
    assert not local_ids(a) & local_ids(b), "a stream runs on both replicas"
    assert local_ids(a) and local_ids(b), "the streams are spread over both replicas"
    for replica in (a, b):
        status, body = replica.api("GET", "/v1/streams")
        assert status == 200 and sorted(s["id"] for s in body["streams"]) == sorted(INPUTS)
        assert {s["replica"] for s in body["streams"]} and all(s["replica"] for s in body["streams"])

    remote = sorted(local_ids(b))[0]  # asked of a, runs on b
    status, snap = a.api("GET", f"/v1/streams/{remote}")
    assert status == 200 and snap["id"] == remote
    status, snap = a.api("PATCH", f"/v1/streams/{remote}", {"mix": "replace", "duck_gain_db": -20})
    assert status == 200 and snap["mix"] == "replace" and snap["duck_gain_db"] == -20
    assert b.api("GET", f"/v1/streams/{remote}")[1]["mix"] == "replace"
    status, snap = a.api("POST", f"/v1/streams/{remote}/bypass")
    assert status == 200 and snap["mix"] == "passthrough"
    # A signed link made by the owner (asked of a, forwarded to b) opens through either replica.
    lang = snap["target_languages"][0]
    status, links = a.api("POST", f"/v1/streams/{remote}/captions/{lang}/link")
    assert status == 200, links
    for replica in (a, b):
        with urllib.request.urlopen(replica.url + links["vtt"], timeout=5) as resp:  # nosec B310  # loopback
            assert resp.status == 200 and resp.read().startswith(b"WEBVTT")

    status, _ = a.api("DELETE", f"/v1/streams/{remote}")
    assert status == 200
    assert remote not in local_ids(b)
    seen = mtx.requests
    wait_for(lambda: mtx.requests >= seen + 8, "both replicas keep polling MediaMTX")
    assert remote not in local_ids(a) | local_ids(b), "an operator's stop is respected by every replica's reconcile"
    assert a.api("GET", f"/v1/streams/{remote}")[0] == 404

    body = {"id": "posted", "input_url": "rtmp://127.0.0.1:1/live/posted/in",
            "output_url": "rtmp://127.0.0.1:1/live/posted/out"}
    status, created = b.api("POST", "/v1/streams", body)
    assert status == 201 and created["replica"]
    status, again = a.api("POST", "/v1/streams", body)
    assert status == 200 and again["id"] == "posted", "the same request again, on another replica: idempotent"
    assert ("posted" in local_ids(a)) != ("posted" in local_ids(b))
