"""media-service `GET /ready` (the Kubernetes readiness probe, deploy/k8s): open, and 503 once
the service is shutting down, so no new stream or hook is routed to a replica that is stopping."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from media_service.config import MediaConfig
from media_service.control.api import make_app
from media_service.control.registry import StreamRegistry
from media_service.events import EventLog
from media_service.metrics import MediaMetrics


async def test_ready_is_open_and_turns_503_at_shutdown():
    cfg = MediaConfig(sts_token="s" * 20 + "x1", api_token="api-Zq7-test-token-4821")
    metrics, events = MediaMetrics(), EventLog()
    app = make_app(cfg, StreamRegistry(cfg, metrics, events), metrics, events)
    server = TestServer(app)
    async with TestClient(server) as client:
        async with client.get("/ready") as r:  # no token: a probe has none
            assert r.status == 200 and await r.json() == {"ready": True}
        await app.shutdown()  # what SIGTERM runs first
        async with client.get("/ready") as r:
            assert r.status == 503 and (await r.json())["draining"] is True
