"""Caption feeds and signed links (issue 24 #5), against the real app in process: one client
cannot take every feed (caps per stream, per client, in all, from the configuration), a feed
opened by a signed link ends when the link expires, and the preview's `?lang=` is signed."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from media_service.config import MediaConfig, StreamRequest
from media_service.control.api import make_app
from media_service.control.preview import PreviewRegistry
from media_service.control.registry import StreamRegistry
from media_service.control.signed_links import LinkSigner
from media_service.events import EventLog
from media_service.metrics import MediaMetrics
from media_service.stream.worker import StreamWorker

API = "api-Zq7-test-token-4821"
JPEG = b"\xff\xd8fake-jpeg\xff\xd9"


def frames(url, stop):
    while not stop.wait(0.05):
        yield JPEG


async def make_client(link_ttl_s: float = 300.0, **limits) -> TestClient:
    cfg = MediaConfig(sts_token="s" * 20 + "x1", api_token=API, **limits)
    metrics, events = MediaMetrics(), EventLog()
    registry = StreamRegistry(cfg, metrics, events)
    app = make_app(cfg, registry, metrics, events, PreviewRegistry(source=frames, grace_s=0.1))
    app["links"] = LinkSigner(ttl_s=link_ttl_s)
    for name in ("a", "b"):  # not started: nothing is opened, the captions and the clock are there
        req = StreamRequest(id=name, input_url=f"rtmp://127.0.0.1:1/live/{name}/in",
                            output_url=f"rtmp://127.0.0.1:1/live/{name}/{{lang}}", target_languages=["es", "ca"])
        registry._workers[name] = StreamWorker(name, req, cfg, metrics, events)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


AUTH = {"Authorization": f"Bearer {API}"}


async def open_feed(client, path, headers=None):
    """An open SSE response (its first bytes read), or the refusal."""
    resp = await client.get(path, headers=headers if headers is not None else AUTH)
    if resp.status == 200:
        await resp.content.readuntil(b"\n\n")  # retry: 3000
    return resp


async def test_per_stream_and_per_client_caps_and_the_total():
    client = await make_client(max_caption_feeds=2, max_caption_feeds_per_client=3, max_caption_feeds_total=4)
    held = []
    try:
        held += [await open_feed(client, "/v1/streams/a/captions/es/events") for _ in range(2)]
        assert [r.status for r in held] == [200, 200]
        refused = await open_feed(client, "/v1/streams/a/captions/ca/events")  # a third on stream a
        assert refused.status == 503 and "--max-caption-feeds" in (await refused.json())["error"]["message"]
        held.append(await open_feed(client, "/v1/streams/b/captions/es/events"))
        assert held[-1].status == 200
        refused = await open_feed(client, "/v1/streams/b/captions/ca/events")  # a fourth from this client
        assert refused.status == 503 and "--max-caption-feeds-per-client" in (await refused.json())["error"]["message"]
        held.pop(0).close()  # one closed feed frees its slots
        for _ in range(50):
            resp = await open_feed(client, "/v1/streams/b/captions/ca/events")
            if resp.status == 200:
                break
            await asyncio.sleep(0.1)
        assert resp.status == 200
        held.append(resp)
        metrics = await (await client.get("/metrics")).text()
        for name, value in (("caption_feeds", 2), ("caption_feeds_per_client", 3), ("caption_feeds_total", 4)):
            assert f'media_limit{{limit="{name}"}} {value}.0' in metrics
    finally:
        for r in held:
            r.close()
        await client.close()


@pytest.mark.parametrize("trusted", ["", "127.0.0.0/8"])
async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_cap(trusted):
    client = await make_client(max_caption_feeds_per_client=1, trusted_proxies=trusted)
    held = []
    try:
        def via_proxy(address):
            return open_feed(client, "/v1/streams/a/captions/es/events",
                             {**AUTH, "X-Forwarded-For": f"198.51.100.9, {address}"})
        held.append(await via_proxy("203.0.113.1"))
        other = await via_proxy("203.0.113.2")
        held.append(other)
        again = await via_proxy("203.0.113.1")
        held.append(again)
        assert held[0].status == 200 and again.status == 503
        # Untrusted, the header is the client's own word: every feed is the test client's.
        assert other.status == (200 if trusted else 503)
        if not trusted:
            assert "127.0.0.1 has 1 caption feeds" in (await other.json())["error"]["message"]
    finally:
        for r in held:
            r.close()
        await client.close()


async def test_the_total_cap():
    client = await make_client(max_caption_feeds_per_client=10, max_caption_feeds_total=2)
    try:
        held = [await open_feed(client, f"/v1/streams/{s}/captions/es/events") for s in ("a", "b")]
        refused = await open_feed(client, "/v1/streams/a/captions/ca/events")
        assert refused.status == 503 and "--max-caption-feeds-total" in (await refused.json())["error"]["message"]
        for r in held:
            r.close()
    finally:
        await client.close()


async def test_a_feed_opened_by_a_link_ends_when_the_link_expires():
    client = await make_client(link_ttl_s=2.0)
    try:
        link = await (await client.post("/v1/streams/a/captions/es/link", headers=AUTH)).json()
        resp = await open_feed(client, link["events"], headers={})
        assert resp.status == 200
        body = await asyncio.wait_for(resp.content.read(), 15.0)  # returns when the server ends the feed
        assert body.rstrip().endswith(b"event: expired\ndata: {}"), body[-200:]
        again = await client.get(link["events"])  # the link itself is expired too
        assert again.status == 401
        bearer = await open_feed(client, "/v1/streams/a/captions/es/events")  # a token's feed has no end
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bearer.content.read(), 4.0)
        bearer.close()
    finally:
        await client.close()


def test_the_dashboard_opens_a_new_feed_when_its_link_expires():
    from media_service.control.dashboard import DASHBOARD_HTML

    assert 'es.addEventListener("expired"' in DASHBOARD_HTML and "card.setCaptions(); });" in DASHBOARD_HTML


async def test_the_preview_language_is_part_of_the_signature():
    client = await make_client()
    try:
        link = await (await client.post("/v1/streams/a/preview-link?lang=ca", headers=AUTH)).json()
        assert link["url"].endswith("&lang=ca"), link
        for changed in (link["url"].replace("lang=ca", "lang=es"), link["url"].replace("&lang=ca", ""),
                        link["url"] + "&lang=es"):
            resp = await client.get(changed)
            assert resp.status == 401, (changed, resp.status)
        plain = await (await client.post("/v1/streams/a/preview-link", headers=AUTH)).json()
        assert (await client.get(plain["url"] + "&lang=ca")).status == 401  # no language added either
        async with client.get(link["url"]) as resp:
            assert resp.status == 200
            assert JPEG in await asyncio.wait_for(resp.content.readuntil(b"\xff\xd9"), 10.0)
    finally:
        await client.close()
