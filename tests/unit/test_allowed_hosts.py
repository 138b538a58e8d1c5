"""--allowed-hosts guards every route (issue 24 #8): a page whose DNS name was rebound to this
service's address sends its own name as Host; it must not read /metrics, /health or anything else."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from media_service.config import MediaConfig
from media_service.control.api import make_app
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
