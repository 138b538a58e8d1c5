"""What the API serves from an HLS directory (issue 24 #9): names that match the pattern exactly
(no trailing newline), no symlink anywhere on the path, the file opened is the file checked, and
segments are private to the viewer who fetched them (no shared cache keeps them)."""

from __future__ import annotations

import os

import pytest
from aiohttp.test_utils import TestClient, TestServer
from media_service.config import MediaConfig, StreamRequest
from media_service.control.api import make_app
from media_service.control.registry import StreamRegistry
from media_service.events import EventLog
from media_service.media_io.hls import read_servable, servable
from media_service.metrics import MediaMetrics
from media_service.stream.worker import StreamWorker

API = "api-Zq7-test-token-4821"


@pytest.fixture
def hls_dir(tmp_path):
    root = tmp_path / "hls"
    (root / "video").mkdir(parents=True)
    (root / "video" / "seg00001.ts").write_bytes(b"TS")
    (root / "master.m3u8").write_text("#EXTM3U\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for viewers")
    return root, secret


def test_a_trailing_newline_does_not_match(hls_dir):
    root, _ = hls_dir
    (root / "master.m3u8\n").write_text("#EXTM3U\n")  # `$` matched before a final newline
    assert servable(str(root), "master.m3u8\n") is None
    assert servable(str(root), "video/seg00001.ts\n") is None
    assert servable(str(root), "master.m3u8") == (str(root / "master.m3u8"), "application/vnd.apple.mpegurl")


def test_symlinks_are_not_followed(hls_dir, tmp_path):
    root, secret = hls_dir
    os.symlink(secret, root / "video" / "seg00002.ts")
    assert servable(str(root), "video/seg00002.ts") is None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "index.m3u8").write_text("#EXTM3U\n")
    os.symlink(elsewhere, root / "audio-es")  # a linked directory
    assert servable(str(root), "audio-es/index.m3u8") is None


def test_the_file_opened_is_the_file_checked(hls_dir):
    root, secret = hls_dir
    path, _ = servable(str(root), "video/seg00001.ts")
    assert read_servable(path) == b"TS"
    os.unlink(path)
    os.symlink(secret, path)  # swapped for a link after the check
    with pytest.raises(OSError):
        read_servable(path)
    os.unlink(path)
    os.mkfifo(path)  # nor anything but a regular file (a FIFO would block the read)
    with pytest.raises(OSError):
        read_servable(path)
    os.rename(root / "video", root / "moved")
    os.symlink(root / "moved", root / "video")  # a directory on the way swapped for a link
    (root / "moved" / "seg00001.ts").unlink()
    (root / "moved" / "seg00001.ts").write_bytes(b"TS")
    with pytest.raises(OSError):
        read_servable(str(root / "video" / "seg00001.ts"))
    assert read_servable(str(root / "moved" / "seg00001.ts")) == b"TS"


async def test_the_api_serves_segments_privately_and_refuses_links(hls_dir):
    root, secret = hls_dir
    os.symlink(secret, root / "video" / "seg00002.ts")
    cfg = MediaConfig(sts_token="s" * 20 + "x1", api_token=API)
    metrics, events = MediaMetrics(), EventLog()
    registry = StreamRegistry(cfg, metrics, events)
    req = StreamRequest(id="h", input_url="rtmp://127.0.0.1:1/live/h/in", outputs=[{"kind": "hls", "url": "hls://"}])
    worker = StreamWorker("h", req, cfg, metrics, events)  # not started: its directory is given here
    worker.hls_dir = str(root)
    registry._workers["h"] = worker
    auth = {"Authorization": f"Bearer {API}"}
    async with TestClient(TestServer(make_app(cfg, registry, metrics, events))) as client:
        async with client.get("/v1/streams/h/hls/video/seg00001.ts", headers=auth) as r:
            assert r.status == 200 and await r.read() == b"TS"
            assert r.headers["Cache-Control"] == "private, max-age=60"
        async with client.get("/v1/streams/h/hls/master.m3u8", headers=auth) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-cache, no-store"
        for name in ("video/seg00002.ts", "master.m3u8%0A"):
            async with client.get(f"/v1/streams/h/hls/{name}", headers=auth) as r:
                assert r.status == 404, name
                assert "not for viewers" not in await r.text()
