"""A slow STS service (accepts fragments, never answers in time) costs dubs, never the output."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import socketio
from aiohttp import web
from livedub_protocol import FRAGMENT_DATA, NAMESPACE, STREAM_INIT
from livedub_testkit import analysis
from livedub_testkit.rtmp_server import NginxRtmpServer
from livedub_testkit.services import MediaProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class StalledSts:
    """A real Socket.IO /sts server that accepts everything and answers nothing (a wedged STS)."""

    def __init__(self, token: str):
        self.port = free_port()
        self.token = token
        self.fragments = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        sio = socketio.AsyncServer(async_mode="aiohttp")
        app = web.Application()
        sio.attach(app)

        @sio.on("connect", namespace=NAMESPACE)
        async def connect(sid, environ, auth):
            if (auth or {}).get("token") != self.token:
                raise socketio.exceptions.ConnectionRefusedError("unauthorized")

        @sio.on(STREAM_INIT, namespace=NAMESPACE)
        async def init(sid, data):
            return {"ok": True, "session_id": "s", "protocol_version": 1, "max_inflight": 4,
                    "capabilities": {"asr": "none", "translation": "none", "tts": "none", "languages": ["es"]}}

        @sio.on(FRAGMENT_DATA, namespace=NAMESPACE)
        async def fragment(sid, data):
            self.fragments += 1
            return {"accepted": True, "queue_depth": 1}  # ...and never a fragment:processed

        runner = self._runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)

        async def _cancel_rest():
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_cancel_rest(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_wedged_sts_falls_back_to_original_audio_without_a_gap(short_media, tmp_path):
    sts = StalledSts("stall-token").start()
    rtmp = NginxRtmpServer(prefix=tmp_path / "nginx", keep_prefix=True).start()
    media = MediaProcess("--output-delay", "6", "--max-fragment-ms", "4000",
                         sts_url=f"http://127.0.0.1:{sts.port}", sts_token="stall-token", log_dir=tmp_path)
    media.start(wait=60)
    out = tmp_path / "out.flv"
    try:
        rec = analysis.record_stream(rtmp.url("wedged/out"), out)
        pub = analysis.publish(short_media.path, rtmp.url("wedged/in"))
        status, _ = media.api("POST", "/v1/streams", {"id": "wedged", "input_url": rtmp.url("wedged/in"),
                                                      "output_url": rtmp.url("wedged/out")})
        assert status == 201
        pub.wait(timeout=120)
        deadline = time.monotonic() + 20
        snap = {}
        while time.monotonic() < deadline:
            snap = media.api("GET", "/v1/streams/wedged")[1]
            if snap["output"]["state"] == "idle":
                break
            time.sleep(0.5)
        analysis.stop_process(rec)
    finally:
        media.stop()
        rtmp.stop()
        sts.stop()
    assert snap["sts"]["state"] == "connected" and sts.fragments >= 3
    assert snap["counters"]["fallbacks"].get("timeout", 0) == snap["counters"]["fragments_sent"] >= 3
    assert snap["counters"]["dubs_placed"] == 0
    # The output is the original programme, whole and on time.
    assert abs(snap["output_delay_measured_s"] - 6.0) < 0.25
    with __import__("av").open(str(out)) as c:
        pts = np.array([float(p.pts * p.time_base) for p in c.demux(c.streams.audio[0]) if p.pts is not None])
    assert len(pts) > 600 and np.diff(pts).max() < 0.030
    src, got = analysis.video_packets(short_media.path), analysis.video_packets(out)
    payloads = [p for _, p in src]
    first = payloads.index(got[0][1])
    assert all(o[1] == s for o, s in zip(got[:-1], payloads[first:]))
    for a, b, _ in short_media.speech_spans[1:]:
        shift = got[0][0] - src[first][0]
        level_in = analysis.audio_rms_dbfs(short_media.path, a, b)
        level_out = analysis.audio_rms_dbfs(out, a + shift, b + shift)
        assert abs(level_in - level_out) < 1.5, "fallback must play the original speech at its level"
