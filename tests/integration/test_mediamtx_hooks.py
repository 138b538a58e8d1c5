"""MediaMTX hooks against a real media-service (issue 12 #7: hook bodies built safely).

The shipped hook posts the publisher's raw query as the body and the path in the URL, so a query
holding quotes cannot name another stream; the older JSON body still works, and a JSON body with a
duplicate key (the smuggling shape) is refused. The streams' inputs never connect: starting one is
all these tests need."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from livedub_testkit.services import MediaProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    proc = MediaProcess("--rtmp-base-url", "rtmp://127.0.0.1:1", sts_url="http://127.0.0.1:9",
                        sts_token="sts-token-for-this-test", log_dir=tmp_path_factory.mktemp("media-logs"))
    proc.start(wait=60)
    yield proc
    proc.stop()


def post(media, path: str, data: bytes, content_type: str) -> tuple[int, dict]:
    req = urllib.request.Request(media.url + path, data=data, method="POST", headers={
        "Content-Type": content_type, "Authorization": f"Bearer {media.api_token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_raw_query_body_cannot_name_another_stream(media):
    query = 'lang=es&user=publisher&pass=secret","path":"live/other/in'
    status, answer = post(media, "/v1/hooks/mediamtx/ready?path=live/demo/in", query.encode(),
                          "application/x-www-form-urlencoded")
    try:
        assert status == 200 and answer == {"id": "demo", "created": True}, answer
        streams = {s["id"]: s for s in media.api("GET", "/v1/streams")[1]["streams"]}
        assert list(streams) == ["demo"], streams
        assert streams["demo"]["target_languages"] == ["es"]
        assert "secret" not in json.dumps(streams), "the publisher's password must not be shown"
        status, answer = post(media, "/v1/hooks/mediamtx/not-ready?path=live/demo/in", query.encode(),
                              "application/x-www-form-urlencoded")
        assert status == 200, answer
    finally:
        media.api("DELETE", "/v1/streams/demo")


def test_json_body_still_served_and_duplicate_keys_refused(media):
    status, answer = post(media, "/v1/hooks/mediamtx/ready",
                          b'{"path": "live/old/in", "query": "lang=ca"}', "application/json")
    try:
        assert status == 200 and answer == {"id": "old", "created": True}, answer
        assert media.api("GET", "/v1/streams/old")[1]["target_languages"] == ["ca"]
    finally:
        media.api("DELETE", "/v1/streams/old")
    status, answer = post(media, "/v1/hooks/mediamtx/ready",
                          b'{"path": "live/a/in", "query": "x", "path": "live/b/in"}', "application/json")
    assert status == 400 and answer["error"]["code"] == "invalid_json", answer
    assert "duplicate key 'path'" in answer["error"]["message"], answer
    assert media.api("GET", "/v1/streams")[1]["streams"] == []
