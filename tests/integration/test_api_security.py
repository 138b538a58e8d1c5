"""The media-service API is never open (issue 12 #1): a web page in the operator's browser cannot
drive it, with or without MEDIA_API_TOKEN. Real media-service process, real HTTP requests."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from livedub_testkit.services import MediaProcess, ServiceProcess, http_json

pytestmark = pytest.mark.timeout(120)

BODY = {"id": "probe", "input_url": "rtmp://127.0.0.1:1/live/x/in", "output_url": "rtmp://127.0.0.1:1/live/x/out"}


class TokenlessMedia(ServiceProcess):
    """media-service started the way a new user would: no MEDIA_API_TOKEN at all."""

    name = "media-service"

    def __init__(self, log_dir):
        super().__init__([], env={"STS_URL": "http://127.0.0.1:9", "STS_AUTH_TOKEN": "sts-token-for-this-test"},
                         log_dir=log_dir)
        self.env.pop("MEDIA_API_TOKEN", None)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    proc = TokenlessMedia(tmp_path_factory.mktemp("media"))
    proc.start(wait=60)
    yield proc
    proc.stop()


def raw(url: str, *, method="GET", data: bytes | None = None, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def generated_token(media) -> str:
    m = re.search(r"this run's API token is (\S+)", media.logs())
    assert m, media.logs()
    return m.group(1)


def test_without_a_configured_token_one_is_generated_and_required(media):
    token = generated_token(media)
    assert len(token) >= 24
    # Loopback is no longer trusted on its own (a browser page runs on loopback too).
    assert http_json(media.url + "/v1/streams")[0] == 401
    assert http_json(media.url + "/v1/streams", token=token)[0] == 200
    assert http_json(media.url + "/health")[0] == 200


def test_a_simple_cross_site_post_is_refused(media):
    """A page can POST text/plain without a preflight; it must not start anything."""
    token = generated_token(media)
    url = media.url + "/v1/streams"
    data = json.dumps(BODY).encode()
    assert raw(url, method="POST", data=data, headers={"Content-Type": "text/plain"}) == 401
    # Even with the token (e.g. leaked), a non-JSON body or a foreign Origin is refused.
    auth = {"Authorization": f"Bearer {token}"}
    assert raw(url, method="POST", data=data, headers={**auth, "Content-Type": "text/plain"}) == 415
    assert raw(url, method="POST", data=data, headers={**auth, "Content-Type": "application/json",
                                                       "Origin": "http://evil.example"}) == 403
    assert raw(url, headers={**auth, "Origin": "null"}) == 403
    assert http_json(url, token=token)[1]["streams"] == []  # nothing was started


def test_query_token_only_on_hook_routes(media):
    token = generated_token(media)
    assert raw(f"{media.url}/v1/streams?token={token}") == 401
    # A hook route takes it (and answers about the hook, not about auth).
    assert raw(f"{media.url}/v1/hooks/nginx/on_publish_done?token={token}", method="POST",
               data=b"app=live&name=x/in", headers={"Content-Type": "application/x-www-form-urlencoded"}) != 401
    # A preview takes a signed link, not the token: a URL with the token would sit in browser history.
    assert raw(f"{media.url}/v1/streams/none/preview.mjpg?token={token}") == 401


def test_same_origin_dashboard_requests_are_served(media):
    token = generated_token(media)
    host = media.url.split("://", 1)[1]
    assert raw(media.url + "/v1/streams", headers={"Authorization": f"Bearer {token}",
                                                   "Origin": f"http://{host}"}) == 200


KEY = "abcd-efgh-ijkl-mnop-qrst"  # a stream key in a path, an srt passphrase, a secret STS path
VIEWER = "viewer-token-for-this-test-7f3k"


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """media-service with a read-only viewer token, as a monitoring page would use it."""
    proc = MediaProcess(sts_url=f"http://127.0.0.1:9/sts/{KEY}", sts_token="sts-token-for-this-test",
                        env={"MEDIA_VIEWER_TOKEN": VIEWER}, log_dir=tmp_path_factory.mktemp("watched"))
    proc.start(wait=60)
    yield proc
    proc.stop()


def test_the_viewer_token_sees_no_stream_key(watched):
    """Issue 24 #2, reproduced from outside: the key in the input's path was in the viewer's answers."""
    body = {"id": "keyed", "input_url": f"rtmp://127.0.0.1:1/live2/{KEY}",
            "outputs": [{"kind": "rtmp", "url": f"rtmp://127.0.0.1:1/out/{KEY}"},
                        {"kind": "srt", "url": f"srt://127.0.0.1:9000?passphrase={KEY}"}]}
    status, snap = watched.api("POST", "/v1/streams", body)
    assert status == 201, snap
    try:
        for path in ("/v1/streams", "/v1/streams/keyed", "/v1/events?since=0"):
            status, answer = http_json(watched.url + path, token=VIEWER)
            assert status == 200 and KEY not in json.dumps(answer), (path, answer)
            status, answer = watched.api("GET", path)
            assert status == 200 and KEY not in json.dumps(answer), (path, answer)
        viewer = http_json(watched.url + "/v1/streams/keyed", token=VIEWER)[1]
        assert viewer["input_url"] == "rtmp://127.0.0.1:1"  # sts.url names the replica in use ("" here); the log: below
        assert viewer["outputs"] == {"rtmp.0.es": "rtmp://127.0.0.1:1", "srt.1": "srt://127.0.0.1:9000"}
    finally:
        assert watched.api("DELETE", "/v1/streams/keyed")[0] == 200
    assert KEY not in watched.logs()
