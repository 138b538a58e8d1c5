"""REST fuzzing against a real media-service (issue 9 #5): random and mutated JSON bodies on
every route that takes one. Every answer is a deliberate status (never 5xx) with the API's error
shape, and the service keeps serving. Seeded (derandomized) so a failure reproduces."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livedub_testkit.services import MediaProcess

pytestmark = pytest.mark.timeout(300)

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30)
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=10)
REQUEST = {"id": "fz", "input_url": "rtmp://127.0.0.1:1/live/fz/in", "output_url": "rtmp://127.0.0.1:1/live/fz/{lang}",
           "target_languages": ["es"], "mix": "duck", "output_delay_s": 8}
bodies = st.one_of(json_like, st.builds(lambda repl, extra: {**REQUEST, **repl, **extra},
                                        st.dictionaries(st.sampled_from(sorted(REQUEST)), json_like, max_size=2),
                                        st.dictionaries(st.text(max_size=6), json_like, max_size=1)))
ROUTES = [("POST", "/v1/streams"), ("PATCH", "/v1/streams/held"), ("POST", "/v1/hooks/mediamtx/ready"),
          ("POST", "/v1/streams/held/preview-link")]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    proc = MediaProcess(sts_url="http://127.0.0.1:9", sts_token="sts-token-for-this-test",
                        log_dir=tmp_path_factory.mktemp("media-logs"))
    proc.start(wait=60)
    assert proc.api("POST", "/v1/streams", {**REQUEST, "id": "held"})[0] == 201  # a stream to PATCH
    yield proc
    proc.stop()


def send(media, method: str, path: str, raw: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(media.url + path, data=raw, method=method, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {media.api_token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_every_body_gets_a_deliberate_answer(media, route, body):
    method, path = route
    raw = json.dumps(body, allow_nan=True).encode()
    status, answer = send(media, method, path, raw)
    assert status < 500, (route, body, status, answer[:300])
    if status >= 400:
        error = json.loads(answer)["error"]
        assert error["code"] and error["message"], answer
    # Streams a valid body started are stopped again, so the limits never fill up.
    for s in media.api("GET", "/v1/streams")[1]["streams"]:
        if s["id"] != "held":
            media.api("DELETE", f"/v1/streams/{s['id']}")


def test_still_serving_after_the_fuzzing(media):
    assert media.proc.poll() is None
    assert media.api("GET", "/v1/streams/held")[0] == 200
    with urllib.request.urlopen(media.url + "/health", timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "ok"
