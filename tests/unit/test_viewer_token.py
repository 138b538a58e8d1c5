"""The read-only viewer token (MEDIA_VIEWER_TOKEN, issue 10 #2): every route of the real app is
called in process with it; reads get past the token check, anything that could change a stream is
403 `forbidden`. A new route is covered by this test without editing it."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livedub_testkit.routes import every_route
from media_service.config import ConfigError, MediaConfig
from media_service.control.api import make_app
from media_service.control.auth import viewer_may
from media_service.control.registry import StreamRegistry
from media_service.events import EventLog
from media_service.metrics import MediaMetrics

API, VIEWER = "api-Zq7-test-token-4821", "viewer-Zq7-test-token-9377"


@pytest.fixture
async def client():
    cfg = MediaConfig(sts_token="s" * 20 + "x1", api_token=API, viewer_token=VIEWER)
    metrics, events = MediaMetrics(), EventLog()
    registry = StreamRegistry(cfg, metrics, events)
    app = make_app(cfg, registry, metrics, events)
    async with TestClient(TestServer(app)) as c:
        c.app_config, c.registry, c.metrics, c.events = cfg, registry, metrics, events
        yield c


def test_the_rule():
    assert viewer_may("GET", "/v1/streams") and viewer_may("HEAD", "/v1/streams/a/hls/video/seg1.ts")
    assert viewer_may("POST", "/v1/streams/a/preview-link") and viewer_may("POST", "/v1/streams/a/captions/es/link")
    for method, path in (("POST", "/v1/streams"), ("PATCH", "/v1/streams/a"), ("DELETE", "/v1/streams/a"),
                         ("POST", "/v1/streams/a/bypass"), ("PUT", "/v1/streams/a"),
                         ("POST", "/v1/hooks/nginx/on_publish"), ("GET", "/v1/hooks/nginx/on_publish"),
                         ("POST", "/v1/streams/a/preview-link/x"), ("POST", "/v1/streams/a/b/preview-link")):
        assert not viewer_may(method, path), (method, path)


async def test_every_route_with_the_viewer_token(client):
    checked = {"read": 0, "refused": 0}
    for method, path in every_route(client.server.app):
        if not path.startswith("/v1/"):
            continue
        kw = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
        async with client.request(method, path, headers={"Authorization": f"Bearer {VIEWER}"}, **kw) as r:
            body = await r.json(content_type=None) if r.content_type == "application/json" else None
            if viewer_may(method, path):
                assert r.status not in (401, 403), (method, path, r.status, body)
                checked["read"] += 1
            else:
                assert r.status == 403, (method, path, r.status, body)
                assert body["error"]["code"] == "forbidden"
                assert "read-only" in body["error"]["message"] and "MEDIA_API_TOKEN" in body["error"]["message"]
                checked["refused"] += 1
    # GET list/one/events x2/preview/captions x2/hls; POST links x2; POST create/bypass/hooks x4, PATCH, DELETE
    assert checked["read"] >= 10 and checked["refused"] >= 8, checked


async def test_the_api_token_still_does_everything_and_a_wrong_one_is_401(client):
    async with client.post("/v1/streams", json={}, headers={"Authorization": f"Bearer {API}"}) as r:
        assert r.status == 400  # past the token check, refused for the empty body
    async with client.delete("/v1/streams/nostream", headers={"Authorization": f"Bearer {API}"}) as r:
        assert r.status == 404
    async with client.get("/v1/streams", headers={"Authorization": f"Bearer {VIEWER}x"}) as r:
        assert r.status == 401
    async with client.post("/v1/hooks/nginx/on_publish?token=" + VIEWER, data={"name": "x"}) as r:
        assert r.status == 403  # a hook starts streams: never with the viewer token


def test_the_viewer_token_is_checked_like_the_api_token():
    with pytest.raises(ConfigError, match="MEDIA_VIEWER_TOKEN is not usable"):
        MediaConfig(sts_token="s" * 22, api_token=API, viewer_token="change-me-viewer-token")
    with pytest.raises(ConfigError, match="must differ from MEDIA_API_TOKEN"):
        MediaConfig(sts_token="s" * 22, api_token=API, viewer_token=API)
    assert MediaConfig(sts_token="s" * 22, api_token=API).viewer_token is None  # off unless set



KEY = "abcd-efgh-ijkl-mnop-qrst"  # an RTMP stream key (in the path), an srt passphrase


async def test_the_viewer_sees_scheme_and_host_only_and_the_dashboard_still_works(client):
    """Issue 24 #2: the list, one stream and the events showed stream keys, passphrases and the
    STS URL to the viewer token. What the dashboard reads (ids, output keys, hls, states) stays."""
    from media_service.config import StreamRequest
    from media_service.stream.worker import StreamWorker

    cfg = client.app_config.model_copy(update={"sts_url": f"http://127.0.0.1:9/sts/{KEY}"})
    req = StreamRequest(id="keyed", input_url=f"rtmp://127.0.0.1:1/live2/{KEY}",
                        outputs=[{"kind": "rtmp", "url": f"rtmp://127.0.0.1:1/out/{KEY}"},
                                 {"kind": "srt", "url": f"srt://127.0.0.1:9000?passphrase={KEY}"},
                                 {"kind": "hls", "url": "hls://"}])
    worker = StreamWorker("keyed", req, cfg, client.metrics, client.events)  # not started: nothing is opened
    client.registry._workers["keyed"] = worker
    client.events.publish("keyed", "failed", {"reason": "cannot open rtmp://127.0.0.1:1/out/***"})  # as redacted
    answers = {}
    for token in (API, VIEWER):
        for path in ("/v1/streams", "/v1/streams/keyed", "/v1/events?since=0", "/v1/streams/keyed/events?since=0"):
            async with client.get(path, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200, (path, r.status)
                answers[token, path] = await r.json()
                assert KEY not in repr(answers[token, path]), (token, path, answers[token, path])
    viewer = answers[VIEWER, "/v1/streams/keyed"]
    assert viewer["input_url"] == "rtmp://127.0.0.1:1"  # sts.url is the replica in use: "" until connected
    assert viewer["outputs"] == {"rtmp.0.es": "rtmp://127.0.0.1:1", "srt.1": "srt://127.0.0.1:9000", "hls.2": "hls://"}
    assert viewer["hls"] == {"master": "/v1/streams/keyed/hls/master.m3u8"}  # the dashboard's player
    assert answers[VIEWER, "/v1/streams"]["streams"] == [viewer]
    reasons = [e["data"]["reason"] for e in answers[VIEWER, "/v1/events?since=0"]["events"] if e["type"] == "failed"]
    assert reasons == ["cannot open rtmp://127.0.0.1:1"]
    admin = answers[API, "/v1/streams/keyed"]  # the admin view is redacted, not reduced
    assert admin["input_url"] == "rtmp://127.0.0.1:1/live2/***"
    assert admin["outputs"]["srt.1"] == "srt://127.0.0.1:9000?passphrase=***"
    assert set(admin) == set(viewer)
