"""A stream whose input never connects is reaped after --input-wait-timeout (issue 12 #10).

Real processes: nginx-rtmp (nothing is ever published on the input path) and media-service.
"""

from __future__ import annotations

import time

import pytest
from livedub_testkit.stack import LocalStack


@pytest.mark.slow
def test_stream_whose_input_never_connects_is_reaped(tmp_path):
    with LocalStack(workdir=tmp_path, media_args=("--input-wait-timeout", "3"), start_sts=False,
                    hooks=False) as stack:
        req = {"id": "ghost", "input_url": stack.url("ghost/in"), "output_url": stack.url("ghost/out")}
        status, _ = stack.media.api("POST", "/v1/streams", req)
        assert status == 201
        assert stack.media.api("GET", "/v1/streams/ghost")[1]["state"] in ("starting", "waiting_input")
        deadline = time.monotonic() + 20
        while stack.media.api("GET", "/v1/streams/ghost")[0] != 404:
            assert time.monotonic() < deadline, "a stream with no input must not be kept forever"
            time.sleep(0.5)
        while True:  # removed from the registry first, then stopped
            events = stack.media.api("GET", "/v1/events?since=0&stream=ghost")[1]["events"]
            if any(e["type"] == "stopped" for e in events) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        kinds = [e["type"] for e in events]
        assert "stopped" in kinds
        never = next(e["data"] for e in events if e["type"] == "input_never_connected")
        assert never["waited_s"] >= 3 and "nothing is published there" in never["reason"]
        assert any(e["type"] == "state" and "input never connected in 3 s" in e["data"].get("reason", "")
                   for e in events)
