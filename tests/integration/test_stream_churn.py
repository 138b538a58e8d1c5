"""Leaks (issue 9 #6): 50 streams started and stopped one after another leave no thread, file
descriptor or child process behind. Real nginx-rtmp and media-service; each stream reads a file
at real-time pace and publishes RTMP through its relay (a child process) before it is
stopped. The STS side is absent (every fragment falls back): what is counted here is the
media-service's own resources."""

from __future__ import annotations

import shutil

import pytest
from livedub_testkit.services import process_resources, settled_resources
from livedub_testkit.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STREAMS = 50


def test_fifty_streams_leave_nothing_behind(short_media, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    source = root / "in.mp4"
    shutil.copy(short_media.path, source)
    with LocalStack(workdir=tmp_path / "stack", start_sts=False, hooks=False,
                    media_args=("--media-root", str(root))) as stack:
        pid = stack.media.proc.pid

        def one(i: int) -> None:
            sid = f"churn{i}"
            status, snap = stack.media.api("POST", "/v1/streams", {
                "id": sid, "input_url": str(source), "output_url": stack.url(f"{sid}/out"), "output_delay_s": 2.5})
            assert status == 201, snap
            # Running, with its output open (relay started) and writing.
            stack.wait_stream(sid, lambda s: s["output"]["state"] == "writing", timeout=20)
            status, snap = stack.media.api("DELETE", f"/v1/streams/{sid}")
            assert status == 200 and snap["state"] == "stopped", snap

        one(0)  # warm-up: lazily made pools (executor, VAD session) exist from here on
        baseline = settled_resources(pid, process_resources(pid))
        for i in range(1, STREAMS):
            one(i)
        after = settled_resources(pid, baseline)
        assert stack.media.api("GET", "/v1/streams")[1]["streams"] == []
    assert after["children"] == baseline["children"] == 0, (baseline, after)  # every relay reaped
    assert after["fds"] <= baseline["fds"] + 2, (baseline, after)
    assert after["threads"] <= baseline["threads"] + 2, (baseline, after)
