"""--allowed-hosts guards every route (issue 24 #8): a page whose DNS name was rebound to this
service's address sends its own name as Host; it must not read /metrics, /health or anything else."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from media_service.config import MediaConfig
from media_service.control.api import make_app
from media_service.control.auth import answered_hosts, auth_middleware
from media_service.control.registry import StreamRegistry
from media_service.events import EventLog
from media_service.metrics import MediaMetrics

API = "api-Zq7-test-token-4821"


@pytest.mark.parametrize("path", ["/metrics", "/health", "/", "/v1/streams"])
async def test_a_foreign_host_reads_nothing(path):
    cfg = MediaConfig(sts_token="s" * 20 + "x1", api_token=API, allowed_hosts=("media-service", "127.0.0.1"))
    metrics, events = MediaMetrics(), EventLog()
    app = make_app(cfg, StreamRegistry(cfg, metrics, events), metrics, events)
    auth = {"Authorization": f"Bearer {API}"}
    async with TestClient(TestServer(app)) as client:
        async with client.get(path, headers={**auth, "Host": "rebound.example:8080"}) as r:
            assert r.status == 403, (path, r.status)
            assert "media_" not in await r.text()
        for host in ("media-service:8080", "127.0.0.1:8080"):
            async with client.get(path, headers={**auth, "Host": host}) as r:
                assert r.status == 200, (path, host, r.status)


def test_answered_hosts_add_the_own_advertised_host_only_to_a_guard():
    assert answered_hosts(("Media-Service",), ["http://172.18.0.5:8080"]) == {"media-service", "172.18.0.5"}
    assert answered_hosts((), ["http://172.18.0.5:8080"]) == frozenset()  # no guard stays no guard


async def test_a_replica_answers_requests_forwarded_to_its_advertised_host():
    """Another replica forwards to the advertised URL (a container address by default): that Host
    must be answered even though --allowed-hosts does not list it. The app is not started, so no
    Redis is needed: the guard is the middleware's alone."""
    cfg = MediaConfig(sts_token="s" * 20 + "x1", api_token=API, allowed_hosts=("media-service",),
                      redis_url="redis://127.0.0.1:1/0", advertise_url="http://10.1.2.3:8080")
    metrics, events = MediaMetrics(), EventLog()
    app = make_app(cfg, StreamRegistry(cfg, metrics, events), metrics, events)

    async def handler(request):
        return web.Response(text="ok")

    for host, status in (("10.1.2.3:8080", 200), ("media-service:8080", 200), ("10.1.2.4:8080", 403)):
        request = make_mocked_request("GET", "/health", headers={"Host": host}, app=app)
        assert (await auth_middleware(request, handler)).status == status, host
