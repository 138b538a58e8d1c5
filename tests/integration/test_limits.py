"""Limits (issue 9 #2): one API client cannot exhaust the media-service. Each limit is refused with
`limit_reached`, counted in /metrics, and freed when the stream goes. Real media-service process;
the streams' inputs never connect (nothing needs to be published to hold a slot)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from livedub_testkit.services import MediaProcess, http_json

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    proc = MediaProcess("--max-streams", "2", "--max-languages", "2", "--max-preview-viewers", "1",
                        sts_url="http://127.0.0.1:9", sts_token="sts-token-for-this-test",
                        log_dir=tmp_path_factory.mktemp("media-logs"))
    proc.start(wait=60)
    yield proc
    proc.stop()


def body(name: str, **extra) -> dict:
    return {"id": name, "input_url": f"rtmp://127.0.0.1:1/live/{name}/in",
            "output_url": f"rtmp://127.0.0.1:1/live/{name}/{{lang}}", **extra}


def metric(media, name: str) -> float:
    text = urllib.request.urlopen(media.url + "/metrics", timeout=5).read().decode()
    line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), None)
    return float(line.split()[-1]) if line else 0.0


def test_streams_are_limited_and_the_slot_comes_back(media):
    assert media.api("POST", "/v1/streams", body("one"))[0] == 201
    assert media.api("POST", "/v1/streams", body("two"))[0] == 201
    assert media.api("POST", "/v1/streams", body("two"))[0] == 200, "the same request again is not a new stream"
    req = urllib.request.Request(media.url + "/v1/streams", data=json.dumps(body("three")).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {media.api_token}",
                                          "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
    error = json.loads(refused.value.read())["error"]
    assert error["code"] == "limit_reached" and "--max-streams" in error["message"]
    assert media.api("GET", "/v1/streams/three")[0] == 404
    assert metric(media, 'media_limit{limit="streams"}') == 2
    assert metric(media, 'media_limit_refusals_total{limit="streams"}') == 1
    assert media.api("DELETE", "/v1/streams/one")[0] == 200
    assert media.api("POST", "/v1/streams", body("three"))[0] == 201
    for name in ("two", "three"):
        media.api("DELETE", f"/v1/streams/{name}")


def test_languages_per_stream_are_limited(media):
    status, answer = media.api("POST", "/v1/streams", body("babel", target_languages=["es", "ca", "fr"]))
    assert status == 400 and answer["error"]["code"] == "limit_reached"
    assert "3 target languages; at most 2" in answer["error"]["message"]
    assert media.api("GET", "/v1/streams")[1]["streams"] == []


def test_oversized_bodies_are_refused_with_json(media):
    status, answer = media.api("POST", "/v1/streams", body("big", padding="x" * 70_000))
    assert status == 413 and answer["error"]["code"] == "limit_reached"
    assert media.api("GET", "/v1/streams")[1]["streams"] == []


def test_preview_viewers_are_limited(media):
    assert media.api("POST", "/v1/streams", body("watched"))[0] == 201
    url = media.url + media.api("POST", "/v1/streams/watched/preview-link")[1]["url"]
    first = urllib.request.urlopen(url, timeout=5)  # headers sent: this viewer holds the slot
    try:
        assert first.status == 200
        status, answer = http_json(url)
        assert status == 503 and answer["error"]["code"] == "limit_reached"
        assert "--max-preview-viewers" in answer["error"]["message"]
    finally:
        first.close()
        media.api("DELETE", "/v1/streams/watched")
