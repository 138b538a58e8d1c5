"""The local stack with several media-service processes (`LocalStack(replicas=N)`, what
`DEMO_REPLICAS=N make demo` runs; issue 23 #4): a redis-server, the replicas, the RTMP server's
hooks through one entry point. A broadcaster's publish starts its stream on exactly one replica,
and the first replica's API (the one the demo shows) answers for it wherever it runs.

sts-service is not started: the stream runs on the original audio (fallbacks), which is all this
needs; the dubbing itself is the other tests' business."""

from __future__ import annotations

import pytest
from livedub_testkit import analysis
from livedub_testkit.cluster import LocalCluster
from livedub_testkit.polling import wait_for
from livedub_testkit.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

STREAM = "demo"


@pytest.fixture
def stack(tmp_path):
    stack = LocalStack(workdir=tmp_path / "stack", rtmp="auto", publishers=(STREAM,), replicas=2, start_sts=False)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def test_a_published_stream_runs_on_one_replica_and_the_first_answers_for_it(stack, short_media, tmp_path):
    assert len(stack.replicas) == 2 and stack.redis is not None
    pub = analysis.publish(short_media.path, stack.publish_url(f"{STREAM}/in"), loop=True,
                           log_path=tmp_path / "publish.log")
    try:
        owners = wait_for(lambda: [r for r in stack.replicas if STREAM in LocalCluster.local_streams(r)],
                          "the hook-started stream running on a replica", timeout=30)
        assert len(owners) == 1, [r.url for r in owners]
        status, listed = stack.media.api("GET", "/v1/streams")
        assert status == 200
        assert [s["replica"] for s in listed["streams"] if s["id"] == STREAM], listed
        status, snap = stack.media.api("GET", f"/v1/streams/{STREAM}")  # forwarded when the other runs it
        assert status == 200 and snap["id"] == STREAM, snap
        assert [r for r in stack.replicas if STREAM in LocalCluster.local_streams(r)] == owners, "still only one"
    finally:
        analysis.stop_process(pub)
