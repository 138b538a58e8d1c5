"""Streams come back after a media-service restart or a lost hook (issue 12 #5).

Real media-service processes against the real MediaMTX (deploy/mediamtx/mediamtx.yml, media-service
with its own MediaMTX user, no hook reaching it: a lost hook) and against a small fake of MediaMTX's
control API on 127.0.0.1 (`GET /v3/paths/list`, paginated like the real one, failing on demand).
With the fake, the streams' inputs are never published: what is checked is that the service starts
(and does not restart) the right streams.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from livedub_testkit.fake_mediamtx import FakeMediaMtxApi
from livedub_testkit.mediamtx import MEDIA_USER, MISSING, MediaMtxServer, find_mediamtx
from livedub_testkit.polling import wait_for
from livedub_testkit.services import MediaProcess

# Real processes waiting on reconcile rounds (seconds each): the slow tier.
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def mtx():
    api = FakeMediaMtxApi()
    yield api
    api.close()


def start_media(mtx, log_dir) -> MediaProcess:
    media = MediaProcess("--mediamtx-api", mtx.url, "--reconcile-interval", "0.5",
                         "--rtmp-base-url", "rtmp://127.0.0.1:1", sts_url="http://127.0.0.1:9",
                         sts_token="sts-token-for-this-test", log_dir=log_dir)
    media.start(wait=60)
    return media


def ids(media) -> set[str]:
    return {s["id"] for s in media.api("GET", "/v1/streams")[1]["streams"]}


def test_published_inputs_get_streams_at_start_and_after_a_restart(mtx, tmp_path):
    mtx.items = {"live/alpha/in": True, "live/alpha/out": True, "live/beta/in": False, "live/gamma/in": True,
                 "other/x": True}
    media = start_media(mtx, tmp_path / "a")
    try:
        wait_for(lambda: ids(media) == {"alpha", "gamma"}, "ready input paths (second page too) get streams")
        snap = media.api("GET", "/v1/streams/alpha")[1]
        assert snap["input_url"] == "rtmp://127.0.0.1:1/live/***"  # redacted: the stream key would be there
        events = media.api("GET", "/v1/events?since=0")[1]["events"]
        assert {e["stream"] for e in events if e["type"] == "reconciled"} == {"alpha", "gamma"}
    finally:
        media.stop()
    media = start_media(mtx, tmp_path / "b")  # a restart: no hook fires again, the streams come back
    try:
        wait_for(lambda: ids(media) == {"alpha", "gamma"}, "streams come back after a restart")
    finally:
        media.stop()


def test_a_late_publish_is_picked_up_and_an_operator_stop_is_respected(mtx, tmp_path):
    media = start_media(mtx, tmp_path)
    try:
        mtx.items = {"live/delta/in": True}  # a publish whose hook was lost
        wait_for(lambda: "delta" in ids(media), "a published input without a hook gets a stream")
        assert media.api("DELETE", "/v1/streams/delta")[0] == 200
        seen = mtx.requests
        wait_for(lambda: mtx.requests >= seen + 4, "the API keeps being polled")
        assert "delta" not in ids(media), "a stream the operator stopped is not brought back"
        mtx.items = {}  # the publisher leaves ...
        seen = mtx.requests
        wait_for(lambda: mtx.requests >= seen + 2, "polled")
        mtx.items = {"live/delta/in": True}  # ... and publishes again: dubbed again
        wait_for(lambda: "delta" in ids(media), "a new publish after an operator stop is dubbed")
        mtx.status = 500  # the API failing does not hurt the running stream or the service
        seen = mtx.requests
        wait_for(lambda: mtx.requests >= seen + 3, "polled while failing")
        assert media.api("GET", "/health")[0] == 200 and "delta" in ids(media)
        assert media.logs().count("MediaMTX API answered 500") == 1, "a failing API is logged once, not per poll"
    finally:
        media.stop()


@pytest.mark.slow
def test_a_publish_on_the_real_mediamtx_whose_hook_was_lost_is_dubbed(tmp_path):
    """No hook reaches media-service; its reconcile reads the path list as its own MediaMTX user,
    reads the input and publishes the output with its credentials (the original audio: no STS)."""
    if find_mediamtx() is None:
        pytest.skip(MISSING)
    mtx = MediaMtxServer(publishers={"epsilon": "epsilon-password-0123456789"}, workdir=tmp_path / "mediamtx")
    with mtx:
        cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
               "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15", "-f", "lavfi", "-i", "sine=frequency=440",
               "-t", "40", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac", "-f", "flv",
               mtx.publish_url("epsilon/in")]
        publisher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            mtx.wait_ready_path("epsilon/in", timeout=20)
            media = MediaProcess("--mediamtx-api", mtx.api_url, "--reconcile-interval", "0.5",
                                 "--rtmp-base-url", mtx.base_url, "--output-delay", "2.5",
                                 sts_url="http://127.0.0.1:9", sts_token="sts-token-for-this-test",
                                 env={"MEDIA_RTMP_USER": MEDIA_USER, "MEDIA_RTMP_PASS": mtx.media_pass},
                                 log_dir=tmp_path)
            media.start(wait=60)
            try:
                wait_for(lambda: "epsilon" in ids(media), "the published input gets a stream")
                snap = media.api("GET", "/v1/streams/epsilon")[1]
                assert snap["input_url"].startswith(mtx.base_url) and "pass=***" in snap["input_url"], snap
                assert mtx.media_pass not in json.dumps(snap)
                mtx.wait_ready_path("epsilon/out", timeout=30)  # media-service published its output
                kinds = [e["type"] for e in media.api("GET", "/v1/events?stream=epsilon")[1]["events"]]
                assert "reconciled" in kinds and "input_open" in kinds and "hook_publish" not in kinds, kinds
                assert mtx.media_pass not in media.logs(400)
            finally:
                media.stop()
        finally:
            publisher.kill()
            publisher.wait()
