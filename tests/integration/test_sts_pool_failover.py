"""An STS pool of two real sts-service processes under a live stream (issue 23 #5, #7).

nginx-rtmp, two sts-services (A and B) and one media-service with `STS_URL=A,B`; one stream (the
20 s marker fixture, published in a loop). In order:

1. the stream dubs on one replica (X); X is SIGKILLed while a fragment is in flight there: that
   span falls back (`sts_disconnected`), and dubs come back through the other replica (Y);
2. X is started again on its port; Y gets SIGTERM while the stream and a plain protocol client
   both have fragments in flight there: Y refuses new streams (connect and `stream:init`:
   `draining`), answers `/ready` 503, answers the fragments it had, tells its clients to move;
   the stream moves to X without a fallback for the move, and Y exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from livedub_protocol import ErrorCode
from livedub_testkit import analysis
from livedub_testkit.rtmp_server import NginxRtmpServer
from livedub_testkit.services import MediaProcess, StsProcess, http_json
from livedub_testkit.speech import SENTENCES, speak
from livedub_testkit.sts_client import StsTestClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SID = "pooled"


def wait(what: str, media: MediaProcess, predicate, timeout: float, poll: float = 0.05) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, snap = media.api("GET", f"/v1/streams/{SID}")
        assert status == 200, snap
        if predicate(snap):
            return snap
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s; last {snap}\n{media.logs(40)}"
        time.sleep(poll)


def events_since(media: MediaProcess, seq: int) -> list[dict]:
    return [e for e in media.api("GET", f"/v1/events?since=0&stream={SID}")[1]["events"] if e["seq"] > seq]


def dubbed_after(events: list[dict], kind: str, **data) -> bool:
    """A `dubbed` event after the first event of `kind` whose data has `data`."""
    marks = [e["seq"] for e in events if e["type"] == kind and all(e["data"].get(k) == v for k, v in data.items())]
    return bool(marks) and any(e["type"] == "dubbed" and e["seq"] > min(marks) for e in events)


def last_seq(media: MediaProcess) -> int:
    return media.api("GET", "/v1/events?since=0&wait=0")[1]["last_seq"]


async def drain_while_busy(y: StsProcess) -> dict:
    """SIGTERM `y` while a plain client has fragments in flight there; what the client then sees."""
    busy = await StsTestClient(y.url, y.token).connect()
    idle = await StsTestClient(y.url, y.token).connect()  # connected before, opens its stream after
    try:
        assert (await busy.init("direct", ["es"]))["ok"]
        ids = []
        for i in range(2):
            assert (await busy.send("direct", i, speak(SENTENCES[i])))["accepted"]
            ids.append(f"direct-{i}")
        y.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        refused_init = await idle.init("late", ["es"])
        ready = await asyncio.to_thread(http_json, y.url + "/ready")
        load = await asyncio.to_thread(http_json, y.url + "/load")
        late = StsTestClient(y.url, y.token)
        try:
            await late.connect()
            late_connected = True
        except Exception:
            late_connected = False
        results = await busy.wait_for(ids, timeout=60)
        return {"init": refused_init, "ready": ready, "load": load, "late_connected": late_connected,
                "late_errors": late.connect_errors, "results": results}
    finally:
        for c in (busy, idle):
            await c.close()


@pytest.fixture(scope="module")
def scenario(short_media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stspool")
    rtmp = NginxRtmpServer(prefix=tmp / "nginx", keep_prefix=True).start()
    a = StsProcess(log_dir=tmp / "a")
    b = StsProcess(token=a.token, log_dir=tmp / "b")
    media = MediaProcess("--output-delay", "3.5", sts_url=f"{a.url},{b.url}", sts_token=a.token, log_dir=tmp)
    pub = restarted = None
    found: dict = {}
    try:
        a.start(wait=0)
        b.start(wait=0)
        a.wait_ready(240)
        b.wait_ready(240)
        media.start(wait=60)
        pub = analysis.publish(short_media.path, rtmp.url(f"{SID}/in"), loop=True)
        status, body = media.api("POST", "/v1/streams", {"id": SID, "input_url": rtmp.url(f"{SID}/in"),
                                                        "output_url": rtmp.url(f"{SID}/out")})
        assert status == 201, body
        first = wait("dubbed", media, lambda s: s["counters"]["dubs_placed"] >= 1 and s["sts"]["state"] == "connected",
                     timeout=90)
        by_url = {a.url: a, b.url: b}
        x = by_url[first["sts"]["url"]]
        y = b if x is a else a
        found["x"], found["y"] = x.url, y.url

        # 1. X dies with a fragment in flight.
        wait("a fragment in flight", media, lambda s: s["sts"]["inflight"] >= 1, timeout=60, poll=0.02)
        killed_at = last_seq(media)
        x.kill()
        back = wait("dubbing through the other replica", media,
                    lambda s: s["sts"]["state"] == "connected" and s["sts"]["url"] == y.url
                    and s["counters"]["dubs_placed"] > first["counters"]["dubs_placed"], timeout=60, poll=0.2)
        wait("dubbed after the reconnect", media,
             lambda s: dubbed_after(events_since(media, killed_at), "sts_state", state="connected"), timeout=60,
             poll=0.5)
        found["after_kill"] = events_since(media, killed_at)
        found["back"] = back

        # 2. X comes back; Y drains while busy.
        restarted = StsProcess(token=a.token, port=x.port, log_dir=tmp / "x2")
        restarted.start(wait=240)
        wait("a fragment in flight on Y", media, lambda s: s["sts"]["inflight"] >= 1, timeout=60, poll=0.02)
        term_at = last_seq(media)
        found["drain"] = asyncio.run(drain_while_busy(y))
        moved = wait("moved to the restarted replica", media,
                     lambda s: s["sts"]["url"] == restarted.url and s["sts"]["moves"] >= 1, timeout=30, poll=0.2)
        found["exit"] = y.proc.wait(60)
        wait("dubbed after the move", media, lambda s: dubbed_after(events_since(media, term_at), "sts_moved"),
             timeout=60, poll=0.5)
        found["after_term"] = events_since(media, term_at)
        found["moved"] = moved
        found["y_log"] = y.logs(200)
        yield found
    finally:
        if pub is not None:
            analysis.stop_process(pub)
        media.stop()
        for proc in (a, b, restarted):
            if proc is not None:
                proc.stop()
        rtmp.stop()


def test_a_killed_replica_costs_its_spans_then_the_other_one_dubs(scenario):
    events = scenario["after_kill"]
    fallbacks = [e for e in events if e["type"] == "fallback"]
    assert any(e["data"]["reason"] == "sts_disconnected" for e in fallbacks), fallbacks
    lost = min(e["seq"] for e in fallbacks if e["data"]["reason"] == "sts_disconnected")
    connected = [e["seq"] for e in events if e["type"] == "sts_state" and e["data"]["state"] == "connected"]
    assert connected and min(connected) > lost, events
    assert any(e["type"] == "dubbed" and e["seq"] > min(connected) for e in events), events
    assert scenario["back"]["sts"]["url"] == scenario["y"]
    assert scenario["back"]["state"] == "running"


def test_a_draining_replica_refuses_new_streams_and_finishes_what_it_has(scenario):
    drain = scenario["drain"]
    assert drain["init"]["ok"] is False and drain["init"]["error"]["code"] == ErrorCode.DRAINING.value, drain["init"]
    assert drain["ready"][0] == 503 and drain["ready"][1]["draining"] is True, drain["ready"]
    assert drain["load"][0] == 200 and drain["load"][1]["draining"] is True, drain["load"]
    assert not drain["late_connected"]
    assert any("draining" in str(e) for e in drain["late_errors"]), drain["late_errors"]
    for r in drain["results"]:  # answered, not abandoned
        assert r.status == "ok", r
    assert scenario["exit"] == 0
    assert "draining: " in scenario["y_log"] and "drained after" in scenario["y_log"]


def test_the_stream_moves_off_a_draining_replica_without_losing_a_span(scenario):
    events = scenario["after_term"]
    moved = [e for e in events if e["type"] == "sts_moved"]
    assert len(moved) == 1 and moved[0]["data"]["from"] == scenario["y"], events
    assert moved[0]["data"]["to"] == scenario["x"]
    reasons = [e["data"]["reason"] for e in events if e["type"] == "fallback"]
    assert "sts_disconnected" not in reasons and "sts_unavailable" not in reasons, reasons
    assert not any(e["type"] == "sts_state" and e["data"]["state"] != "connected" for e in events), events
    assert any(e["type"] == "dubbed" and e["seq"] > moved[0]["seq"] for e in events)
