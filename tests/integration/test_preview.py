"""Live preview and dashboard against the real stack: nginx-rtmp, media-service, sts-service, ffmpeg.

The 20 s fixture is published to live/<name>/in (the hook starts the worker); once the dubbed
output is being written, two HTTP viewers read /v1/streams/<name>/preview.mjpg at the same time
and must get real JPEGs of the output video from one shared upstream decoder.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import aiohttp
import av
import pytest
from livedub_testkit import analysis

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NAME = "preview"


@pytest.fixture(scope="module")
def stack(local_stack):
    return local_stack


@pytest.fixture(scope="module")
def live(stack, short_media):
    """The fixture being published and dubbed, its output already written."""
    pub = analysis.publish(short_media.path, stack.url(f"{NAME}/in"))
    try:
        snap = stack.wait_stream(NAME, lambda s: s["output"]["state"] == "writing", timeout=40)
        yield snap
    finally:
        analysis.stop_process(pub)
        stack.media.api("DELETE", f"/v1/streams/{NAME}")


async def read_mjpeg(url: str, frames: int, timeout: float, got: list[bytes]) -> tuple[dict, list[bytes]]:
    """Read `frames` parts of a multipart/x-mixed-replace response into `got`; returns its headers and `got`."""
    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        assert r.status == 200, await r.text()
        while len(got) < frames:
            line = await r.content.readline()
            assert line, f"preview stream ended after {len(got)} frames"
            if line.strip() != b"--frame":
                continue
            headers = {}
            while (line := (await r.content.readline()).strip()):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            assert headers.get("content-type") == "image/jpeg", headers
            got.append(await r.content.readexactly(int(headers["content-length"])))
        return dict(r.headers), got


def decode_jpeg(data: bytes):
    codec = av.CodecContext.create("mjpeg", "r")
    (frame,) = codec.decode(av.Packet(data))
    return frame


def test_two_viewers_share_one_upstream(stack, live, short_media):
    status, link = stack.media.api("POST", f"/v1/streams/{NAME}/preview-link")
    assert status == 200 and link["url"].startswith(f"/v1/streams/{NAME}/preview.mjpg?exp="), link
    url = stack.media.url + link["url"]  # the signed link, as the dashboard's <img> uses it
    stats_while_watching: dict = {}
    video_out: list[int] = []  # the output's video packets when viewer a had its first and its last frame

    async def watch():
        async def snapshot():
            _, snap = await asyncio.to_thread(stack.media.api, "GET", f"/v1/streams/{NAME}")
            return snap

        async def have(n_a: int, n_b: int = 0) -> None:
            for _ in range(750):  # 15 s, the readers' own timeout
                if len(a) >= n_a and len(b) >= n_b:
                    return
                await asyncio.sleep(0.02)

        async def probe():
            await have(1)
            video_out.append((await snapshot())["counters"]["video_packets_out"])
            await have(3, 3)  # both viewers are connected and have pictures
            stats_while_watching.update((await snapshot())["preview"])
            await have(10)
            video_out.append((await snapshot())["counters"]["video_packets_out"])

        a: list[bytes] = []
        b: list[bytes] = []
        results = await asyncio.gather(read_mjpeg(url, 10, 15, a), read_mjpeg(url, 10, 15, b), probe())
        return results[:2]

    a, b = asyncio.run(watch())
    for headers, jpegs in (a, b):
        assert headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        assert len(jpegs) == 10
        for jpeg in jpegs:
            assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9", jpeg[:4] + b"..." + jpeg[-4:]
            frame = decode_jpeg(jpeg)
            assert (frame.width, frame.height) == (480, 270)  # 640x360 scaled to 480 wide, aspect kept
    # At most 5 frames a second of the stream: frames 1 to 10 of a viewer span at least 9 / 5 s of
    # the output (counted on the stream, not the clock; less the time the snapshots took).
    shown_s = (video_out[1] - video_out[0]) / short_media.fps
    assert shown_s >= 9 / 5 - 0.4, f"10 preview frames over {shown_s:.2f} s of the stream: faster than 5 fps"
    assert stats_while_watching["subscribers"] == 2, stats_while_watching
    assert stats_while_watching["pumps_started"] == 1, stats_while_watching
    assert stats_while_watching["upstreams_opened"] == 1, stats_while_watching

    # The viewers left: the broadcaster notices at its next frame and keeps its one upstream.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, snap = stack.media.api("GET", f"/v1/streams/{NAME}")
        if snap["preview"]["subscribers"] == 0:
            break
        time.sleep(0.2)
    assert snap["preview"]["subscribers"] == 0, snap["preview"]
    assert snap["preview"]["pumps_started"] == 1 and snap["preview"]["upstreams_opened"] == 1, snap["preview"]
    assert snap["preview"]["frames"] >= 9 and snap["preview"]["dropped_subscribers"] == 0, snap["preview"]
    _, listing = stack.media.api("GET", "/v1/streams")
    assert [s["preview"]["pumps_started"] for s in listing["streams"] if s["id"] == NAME] == [1]


def test_preview_errors(stack, live):
    status, body = stack.media.api("GET", "/v1/streams/nope/preview.mjpg")
    assert status == 404 and body["error"]["code"] == "not_found", body
    status, body = stack.media.api("GET", f"/v1/streams/{NAME}/preview.mjpg?lang=xx")
    assert status == 404 and "xx" in body["error"]["message"], body
    status, body = stack.media.api("POST", f"/v1/streams/{NAME}/preview-link?lang=xx")
    assert status == 404 and "xx" in body["error"]["message"], body
    # A signed link opens only its own stream's preview, and not once it is altered.
    link = stack.media.api("POST", f"/v1/streams/{NAME}/preview-link")[1]["url"]
    for forged in (link.replace(NAME, "other", 1), link.replace("exp=", "exp=9", 1), link[:-1] + ("1" if link.endswith("0") else "0"),
                   f"/v1/streams/{NAME}/preview.mjpg?token={stack.api_token}"):
        try:
            urllib.request.urlopen(stack.media.url + forged, timeout=5)
            raise AssertionError(f"{forged} was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401, (forged, exc.code)


def test_dashboard_page(stack):
    for path in ("/", "/dashboard"):
        with urllib.request.urlopen(stack.media.url + path, timeout=5) as resp:
            status, ctype, html = resp.status, resp.headers["Content-Type"], resp.read().decode()
        assert status == 200 and ctype.startswith("text/html"), (status, ctype)
        assert html.startswith("<!doctype html>")
        assert "/v1/streams" in html and "/preview-link" in html and "setInterval(poll, 2000)" in html
        assert "http://" not in html and "https://" not in html  # self-contained: no external assets
