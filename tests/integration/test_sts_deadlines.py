"""Deadlines (protocol 1.1) and the server's edges, on the real sts-service with real clients."""

from __future__ import annotations

import asyncio
import re

import pytest
import socketio
from livedub_testkit.services import StsProcess, http_json
from livedub_testkit.speech import SENTENCES, speak
from livedub_testkit.sts_client import StsTestClient

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sts(tmp_path_factory):
    proc = StsProcess("--max-sessions-per-connection", "3", log_dir=tmp_path_factory.mktemp("sts"))
    proc.start(wait=180)
    yield proc
    proc.stop()


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def metrics(sts) -> str:
    status, text = await asyncio.to_thread(http_json, f"{sts.url}/metrics")
    assert status == 200
    return text


async def test_impossible_deadline_is_answered_at_once_and_v10_fragment_still_dubbed(sts):
    c = await StsTestClient(sts.url, sts.token).connect()
    try:
        assert (await c.init("dl"))["ok"]
        audio = speak(SENTENCES[0])
        assert (await c.send("dl", 0, audio, deadline_ms=5))["accepted"]
        assert (await c.send("dl", 1, audio))["accepted"]  # no deadline: a v1.0 client
        late, dubbed = await c.wait_for(["dl-0", "dl-1"])
        assert late.status == "failed" and late.error.code == "deadline_exceeded"
        assert late.error.stage == "asr" and late.error.retryable is False
        assert dubbed.status == "ok" and dubbed.results
        assert dubbed.timings_ms.queue >= 0
    finally:
        await c.close()
    text = await metrics(sts)
    assert metric(text, "sts_deadline_exceeded_total", '{stage="asr"}') >= 1


async def test_a_dub_that_would_miss_its_start_is_fitted_to_the_rest_of_its_span(sts):
    """v1.3: 100 ms is too short for any ASR, but the client allows a 3 s late start: the dub comes
    back `ok`, starting `start_offset_ms` after the span, exactly that much shorter than it."""
    c = await StsTestClient(sts.url, sts.token).connect()
    try:
        assert (await c.init("late"))["ok"]
        audio = speak(SENTENCES[1])
        span_ms = len(audio) / 16.0
        assert (await c.send("late", 0, audio, deadline_ms=100, late_start_ms=3000))["accepted"]
        assert (await c.send("late", 1, audio, deadline_ms=100))["accepted"]  # no late start allowed
        late, refused = await c.wait_for(["late-0", "late-1"])
        assert late.status == "ok" and late.results, late.error
        assert 100 < late.start_offset_ms <= min(3000, span_ms / 2)
        for dub in late.results:
            assert abs(dub.duration_ms - (span_ms - late.start_offset_ms)) < 1.0, (dub.duration_ms, span_ms)
        assert refused.status == "failed" and refused.error.code == "deadline_exceeded"
        assert refused.start_offset_ms == 0
    finally:
        await c.close()
    text = await metrics(sts)
    assert metric(text, "sts_late_start_seconds_count") >= 1


async def test_flood_from_four_connections_sheds_load_without_work_on_expired(sts):
    """Twice what two cores can transcribe in time: every fragment is answered once, either dubbed
    or deadline_exceeded, and no ASR work is ever started on an expired fragment."""
    clients = [await StsTestClient(sts.url, sts.token).connect() for _ in range(4)]
    clips = [speak(s) for s in SENTENCES[:4]]
    try:
        for i, c in enumerate(clients):
            assert (await c.init(f"f{i}"))["ok"]
        sent = {i: [] for i in range(4)}
        for seq in range(4):
            for i, c in enumerate(clients):
                ack = await c.send(f"f{i}", seq, clips[(seq + i) % 4], deadline_ms=1500)
                if ack["accepted"]:
                    sent[i].append(f"f{i}-{seq}")
        outcomes = []
        for i, c in enumerate(clients):
            results = await c.wait_for(sent[i])
            assert len(c.processed) == len(sent[i])  # exactly once
            for r in results:
                assert r.status == "ok" or r.error.code == "deadline_exceeded", r
                outcomes.append(r.status)
        assert "ok" in outcomes  # it did not give up on everything
    finally:
        for c in clients:
            await c.close()
    text = await metrics(sts)
    assert metric(text, "sts_work_on_expired_total") == 0


async def test_sessions_per_connection_are_capped(sts):
    c = await StsTestClient(sts.url, sts.token).connect()
    try:
        for i in range(3):
            assert (await c.init(f"cap{i}"))["ok"]
        ack = await c.init("cap3")
        assert ack["ok"] is False and ack["error"]["code"] == "overloaded"
        assert "max-sessions-per-connection" in ack["error"]["message"]
        assert (await c.init("cap0"))["ok"]  # re-init of an existing session is still fine
    finally:
        await c.close()


async def test_refused_connection_does_not_keep_the_transport(sts):
    """A wrong token is refused at the namespace and the Engine.IO session is closed too (a raw
    Engine.IO websocket, so that no client library closes it for us)."""
    import aiohttp

    ws_url = sts.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        opened = await ws.receive_str(timeout=5)
        assert opened.startswith("0{")
        await ws.send_str('40/sts,{"token":"wrong"}')
        refusal = await ws.receive_str(timeout=5)
        assert refusal.startswith("44/sts,") and "unauthorized" in refusal
        # The server ends the Engine.IO session (close packet "1" or a websocket close); without
        # that it would keep it open and ping it after 5 s.
        msg = await ws.receive(timeout=3)
        assert msg.type != aiohttp.WSMsgType.TEXT or msg.data == "1", msg


async def test_oversized_message_is_refused_by_the_transport(sts):
    """The message limit is the largest legal fragment, not 32 MiB."""
    c = await StsTestClient(sts.url, sts.token).connect()
    try:
        assert (await c.init("big"))["ok"]
        huge = b"\x00\x00" * (4 * 1024 * 1024)  # 8 MiB: far above 15 s at 48 kHz
        with pytest.raises(socketio.exceptions.SocketIOError):
            await c.call("fragment:data", {"stream_id": "big", "fragment_id": "x", "sequence_number": 0,
                                           "start_ms": 0, "duration_ms": 1, "audio": huge}, timeout=5)
        for _ in range(50):
            if not c.sio.connected:
                break
            await asyncio.sleep(0.1)
        assert not c.sio.connected  # the transport dropped the message and the connection
    finally:
        await c.sio.disconnect()
