"""The test kit itself: nginx-rtmp server, generated media, analysis tools, plain relay sync.

Real nginx, real ffmpeg, real Piper speech; nothing mocked.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import av
import numpy as np
import pytest
from aiohttp import web
from livedub_testkit import analysis as A
from livedub_testkit.fixtures import cached_demo_media, make_no_audio_video
from livedub_testkit.rtmp_server import NginxRtmpError, NginxRtmpServer, rtmp_url


# ------------------------------------------------------------------------------- helpers
class HookServer:
    """A tiny aiohttp server in a thread recording nginx-rtmp notify callbacks."""

    def __init__(self, deny_names: tuple[str, ...] = ()):
        self.deny_names = deny_names
        self.calls: list[tuple[str, dict]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.calls.append((request.path, form))
        if request.path == "/hooks/publish" and form.get("name") in self.deny_names:
            return web.Response(status=403, text="denied")
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{kind}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> HookServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{kind}"

    def wait_for(self, path: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p, form in self.calls:
                if p == path:
                    return form
            time.sleep(0.05)
        raise AssertionError(f"no call to {path} within {timeout}s; calls: {self.calls}")


def _relay(srv: NginxRtmpServer, src: str, name: str, out_path) -> None:
    """Record ``name`` (started first, so from the first packet) while publishing ``src`` to it."""
    url = srv.url(name)
    rec = A.record_stream(url, out_path)
    time.sleep(0.8)
    pub = A.publish(src, url)
    try:
        assert pub.wait(120) == 0, f"publisher failed:\n{open(pub.log_path).read()}"
        # nginx sends NetStream.Play.UnpublishNotify (publish_notify on): the recorder ends itself
        rec.wait(15)
    finally:
        A.stop_process(pub)
        A.stop_process(rec)
    assert rec.returncode == 0, f"recorder failed:\n{open(rec.log_path).read()}\n{srv.logs()}"


# ------------------------------------------------------------------------------- fixtures
def test_short_fixture_properties(short_media):
    info = short_media
    p = A.probe(info.path)
    assert abs(p["duration"] - 20.0) <= 0.2
    v, a = p["video"], p["audio"]
    assert (v["codec"], v["pix_fmt"], v["width"], v["height"]) == ("h264", "yuv420p", 640, 360)
    assert v["fps"] == pytest.approx(30.0)
    assert (a["codec"], a["sample_rate"], a["channels"]) == ("aac", 48000, 2)
    assert info.fps == 30 and info.sample_rate == 48000

    # markers: exact frame times, in the middle of pauses, at least one every ~5.5 s
    m = np.asarray(info.markers)
    assert len(m) >= 20 / 5.5
    assert np.allclose(m * 30, np.round(m * 30), atol=1e-9)
    assert np.diff(np.concatenate([[0.0], m])).max() <= 5.6
    for t in m:
        for s, e, _ in info.speech_spans:
            assert not (s - 0.3 < t < e + 0.3), f"marker {t} too close to speech {s}-{e}"
    assert len(info.speech_spans) >= 4
    assert len({text for *_, text in info.speech_spans}) == len(info.speech_spans)
    for s, e, _ in info.speech_spans:
        assert 2.0 <= e - s <= 6.0

    # 2 s GOP, no B-frames (pts == dts), every keyframe exactly 60 frames apart
    with av.open(info.path) as c:
        pk = [(p.pts, p.dts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    assert all(pts == dts for pts, dts, _ in pk)
    key_idx = [i for i, (*_, k) in enumerate(pk) if k]
    assert key_idx == list(range(0, len(pk), 60))


def test_fixture_cache_reused(short_media, livedub_cache_dir):
    mtime = os.stat(short_media.path).st_mtime_ns
    again = cached_demo_media(livedub_cache_dir, seconds=20, width=640, height=360)
    assert again.path == short_media.path
    assert os.stat(again.path).st_mtime_ns == mtime
    assert again.markers == short_media.markers


def test_source_markers_detected_exactly(short_media):
    info = short_media
    flashes = A.detect_flashes(info.path)
    beeps = A.detect_beeps(info.path)
    assert A.first_pts(info.path) == {"video": 0.0, "audio": 0.0}
    assert len(flashes) == len(info.markers)
    assert np.allclose(flashes, info.markers, atol=1e-3)
    assert len(beeps) == len(info.markers), f"beeps {beeps} vs markers {info.markers}"
    offs = A.av_offsets(info.path)
    assert len(offs) == len(info.markers)
    worst = max(abs(d) for _, d in offs)
    print(f"source A/V offsets (ms): {[round(d * 1000, 3) for _, d in offs]}")
    assert worst <= 0.005


@pytest.mark.slow
def test_demo_media_markers_no_false_positives(demo_media):
    """60 s 1280x720: every marker found, none in the 13+ sentences of speech or in the music."""
    info = demo_media
    p = A.probe(info.path)
    assert abs(p["duration"] - 60.0) <= 0.2
    assert (p["video"]["width"], p["video"]["height"]) == (1280, 720)
    assert len(info.speech_spans) >= 12
    assert len(info.markers) >= 60 / 5.5
    flashes = A.detect_flashes(info.path)
    beeps = A.detect_beeps(info.path)
    assert np.allclose(flashes, info.markers, atol=1e-3)
    assert len(beeps) == len(info.markers)
    assert np.abs(np.asarray(beeps) - np.asarray(info.markers)).max() <= 0.005
    # levels: music bed alone in the lead-in pause ~ -26 dBFS; speech louder
    first_speech = info.speech_spans[0]
    bed = A.audio_rms_dbfs(info.path, 0.0, info.markers[0] - 0.02)
    speech = A.audio_rms_dbfs(info.path, first_speech[0], first_speech[1])
    assert -28.5 < bed < -23.5, bed
    assert speech > bed + 4, (speech, bed)


def test_no_audio_video(livedub_cache_dir):
    info = make_no_audio_video(livedub_cache_dir / "noaudio-6s.mp4", 6)
    p = A.probe(info.path)
    assert p["audio"] is None and p["video"]["codec"] == "h264"
    assert not info.has_audio
    assert np.allclose(A.detect_flashes(info.path), info.markers, atol=1e-3)
    assert A.decode_audio(info.path) is None


# ------------------------------------------------------------------------------- rtmp server
def test_rtmp_url_forms():
    assert rtmp_url("127.0.0.1", 1935, "live", "abc") == "rtmp://127.0.0.1:1935/live/abc"
    assert rtmp_url("127.0.0.1", 1935, "live", "demo/in") == "rtmp://127.0.0.1:1935/live/_definst_/demo/in"


def test_rtmp_server_clear_error_when_nginx_missing(monkeypatch):
    monkeypatch.setenv("LIVEDUB_NGINX", "/nonexistent/nginx")
    with pytest.raises(NginxRtmpError, match="libnginx-mod-rtmp"):
        NginxRtmpServer().start()


def test_rtmp_server_health_and_stat(rtmp_server):
    import urllib.request

    with urllib.request.urlopen(rtmp_server.health_url, timeout=5) as r:
        assert r.status == 200
    assert "<application>" in rtmp_server.stat_xml() and "<name>live</name>" in rtmp_server.stat_xml()
    prefix = rtmp_server.prefix
    assert (prefix / "conf" / "nginx.conf").exists()
    rtmp_server.stop()
    assert not rtmp_server.is_running()
    assert not prefix.exists()


@pytest.mark.slow
def test_plain_relay_bit_exact_and_in_sync(short_media, rtmp_server, tmp_path, record_property):
    out = tmp_path / "relay.flv"
    _relay(rtmp_server, short_media.path, "demo/in", out)

    # video: the same H.264 packets, byte for byte, from the first to the last
    src = A.video_packets(short_media.path)
    rec = A.video_packets(out)
    assert len(rec) == len(src)
    assert [b for _, b in rec] == [b for _, b in src]

    # the markers: exactly the planted ones, each beep within 25 ms of its flash
    flashes = A.detect_flashes(out)
    beeps = A.detect_beeps(out)
    assert len(flashes) == len(short_media.markers)
    assert len(beeps) == len(short_media.markers)
    t0 = A.first_pts(out)["video"]
    assert np.allclose(np.asarray(flashes) - t0, short_media.markers, atol=0.002)
    offs = A.av_offsets(out)
    assert len(offs) == len(short_media.markers)
    ms = [round(d * 1000, 2) for _, d in offs]
    print(f"plain relay A/V offsets (ms, beep - flash): {ms}")
    record_property("relay_av_offsets_ms", ms)
    assert max(abs(d) for _, d in offs) <= 0.025


def test_on_publish_hooks(short_media, tmp_path):
    hooks = HookServer(deny_names=("blocked",)).start()
    try:
        with NginxRtmpServer(
            on_publish_url=hooks.url("publish"), on_publish_done_url=hooks.url("publish_done")
        ) as srv:
            pub = A.publish(short_media.path, srv.url("demo/in"), extra_args=["-t", "2"])
            assert pub.wait(60) == 0, open(pub.log_path).read()
            form = hooks.wait_for("/hooks/publish")
            assert form["name"] == "demo/in" and form["app"] == "live" and form["call"] == "publish"
            assert form["addr"] == "127.0.0.1"
            done = hooks.wait_for("/hooks/publish_done")
            assert done["name"] == "demo/in"

            # a non-2xx answer to on_publish refuses the publisher
            denied = A.publish(short_media.path, srv.url("blocked"), extra_args=["-t", "2"])
            try:
                rc = denied.wait(30)
            finally:
                A.stop_process(denied)
            assert rc != 0
            assert any(p == "/hooks/publish" and f["name"] == "blocked" for p, f in hooks.calls)
    finally:
        hooks.stop()


def test_stop_process_interrupts_a_blocked_recorder(rtmp_server, tmp_path):
    """A recorder waiting on a stream that never starts is still stopped cleanly."""
    rec = A.record_stream(rtmp_server.url("nobody/here"), tmp_path / "x.flv")
    time.sleep(1.0)
    assert rec.poll() is None
    t0 = time.monotonic()
    A.stop_process(rec, timeout=5)
    assert time.monotonic() - t0 < 7
    assert rec.returncode is not None


@pytest.mark.slow
def test_stalled_publisher_is_dropped_quickly(short_media):
    """A publisher that stops sending (SIGSTOP, socket left open) is dropped in ~5 s."""
    import signal

    hooks = HookServer().start()
    try:
        with NginxRtmpServer(
            on_publish_url=hooks.url("publish"), on_publish_done_url=hooks.url("publish_done")
        ) as srv:
            pub = A.publish(short_media.path, srv.url("stall"), loop=True)
            try:
                hooks.wait_for("/hooks/publish")
                time.sleep(1.5)
                pub.send_signal(signal.SIGSTOP)
                t0 = time.monotonic()
                hooks.wait_for("/hooks/publish_done", timeout=15)
                took = time.monotonic() - t0
            finally:
                pub.send_signal(signal.SIGCONT)
                A.stop_process(pub)
            print(f"stalled publisher dropped after {took:.1f} s")
            assert took < 8
    finally:
        hooks.stop()
