"""The hook-only token (MEDIA_HOOK_TOKEN, issue 22 #3) and what hooks build from MediaMTX's values.

Every route of the real app is called in process with the hook token: only `/v1/hooks/*` gets past
the token check, everything else is 403 `forbidden`. A new route is covered without editing this.
"""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livedub_testkit.routes import every_route
from media_service.config import ConfigError, MediaConfig
from media_service.control.api import make_app
from media_service.control.hooks import PublishHooks, mediamtx_query
from media_service.control.registry import StreamRegistry
from media_service.events import EventLog
from media_service.metrics import MediaMetrics

API, HOOK, VIEWER = "api-Zq7-test-token-4821", "hook-Zq7-test-token-5512", "viewer-Zq7-test-token-9377"
STS = "s" * 20 + "x1"


@pytest.fixture
async def client():
    cfg = MediaConfig(sts_token=STS, api_token=API, hook_token=HOOK, viewer_token=VIEWER)
    metrics, events = MediaMetrics(), EventLog()
    app = make_app(cfg, StreamRegistry(cfg, metrics, events), metrics, events)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_every_route_with_the_hook_token(client):
    hooks = refused = 0
    for method, path in every_route(client.server.app):
        if not path.startswith("/v1/"):
            continue
        kw = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
        async with client.request(method, path, headers={"Authorization": f"Bearer {HOOK}"}, **kw) as r:
            body = await r.json(content_type=None) if r.content_type == "application/json" else None
            if path.startswith("/v1/hooks/"):
                assert r.status not in (401, 403), (method, path, r.status, body)
                hooks += 1
            else:
                assert r.status == 403, (method, path, r.status, body)
                if method != "HEAD":  # no body
                    assert body["error"]["code"] == "forbidden" and "MEDIA_HOOK_TOKEN" in body["error"]["message"]
                refused += 1
    assert hooks >= 4 and refused >= 10, (hooks, refused)
    async with client.post(f"/v1/hooks/mediamtx/not-ready?path=live/x/in&token={HOOK}", data=b"") as r:
        assert r.status == 200, "the hook token also works as ?token= (nginx-rtmp cannot send headers)"


def test_the_hook_token_is_its_own():
    for clash in ({"hook_token": API}, {"hook_token": VIEWER, "viewer_token": VIEWER}):
        with pytest.raises(ConfigError, match="MEDIA_HOOK_TOKEN must differ"):
            MediaConfig(sts_token=STS, api_token=API, **clash)
    with pytest.raises(ConfigError, match="MEDIA_HOOK_TOKEN"):
        MediaConfig(sts_token=STS, api_token=API, hook_token="change-me-media-hook-token")
    with pytest.raises(ConfigError, match="MEDIA_RTMP_PASS"):
        MediaConfig(sts_token=STS, rtmp_user="media-service", rtmp_pass="with space&x=1")


def test_mediamtx_query_forms():
    raw = "lang=ca,es&user=studio-a&pass=p&x=' a"
    assert mediamtx_query(raw) == raw  # MediaMTX up to 1.18.0: the raw query
    assert mediamtx_query(quote_plus(raw)) == raw  # from 1.18.1: escaped as a whole
    assert mediamtx_query("") == "" and mediamtx_query("novalue") == "novalue"


def test_hook_streams_carry_the_services_credentials():
    cfg = MediaConfig(sts_token=STS, rtmp_base_url="rtmp://mediamtx:1935", rtmp_user="media-service",
                      rtmp_pass="p4ss-word_0123.~", default_target_languages=("es",))
    metrics, events = MediaMetrics(), EventLog()
    hooks = PublishHooks(cfg, StreamRegistry(cfg, metrics, events), events)
    req = hooks.request_for("live/demo/in", "lang=es,ca&user=studio-a&pass=theirs")
    creds = "?user=media-service&pass=p4ss-word_0123.~"
    assert req.input_url == f"rtmp://mediamtx:1935/live/demo/in{creds}"
    assert [p.url for p in req.output_plan()] == [f"rtmp://mediamtx:1935/live/demo/{lang}{creds}"
                                                  for lang in ("es", "ca")]
    plain = PublishHooks(MediaConfig(sts_token=STS), StreamRegistry(cfg, metrics, events), events)
    assert "?" not in plain.request_for("live/demo/in", "").input_url
