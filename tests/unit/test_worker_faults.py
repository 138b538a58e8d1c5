"""A stream thread that dies, or an output loop that stops turning, fails the stream loudly
(issue 12 #4): state `failed` with the reason, a `failed` event, and the threads told to end."""

import time

from media_service.config import MediaConfig, StreamRequest
from media_service.events import EventLog
from media_service.metrics import MediaMetrics
from media_service.stream.worker import StreamWorker


def make_worker() -> StreamWorker:
    req = StreamRequest(input_url="rtmp://127.0.0.1:1/live/x/in", output_url="rtmp://u:pw12345678@127.0.0.1:1/live/x/out")
    return StreamWorker("x", req, MediaConfig(sts_token="t"), MediaMetrics(), EventLog())


def test_an_unexpected_error_in_a_thread_fails_the_stream_with_its_reason():
    w = make_worker()
    w.state = "running"

    def boom():
        raise RuntimeError("muxer exploded writing rtmp://u:pw12345678@127.0.0.1:1/live/x/out")

    w._guarded("output", boom)()  # what the thread runs: it must not raise
    assert w.state == "failed"
    assert w.state_reason.startswith("output thread failed: RuntimeError: muxer exploded")
    assert "pw12345678" not in w.state_reason
    assert w._ending.is_set() and w._stop.is_set()
    kinds = [e["type"] for e in w.events.since(0)]
    assert "failed" in kinds
    w.fail("second failure")  # the first reason stays
    assert w.state_reason.startswith("output thread failed")


def test_the_watchdog_sees_an_output_loop_that_stopped_turning():
    w = make_worker()
    w.state = "running"
    assert w.output_stalled_s() == 0.0  # not started
    w.playout.beat = time.monotonic() - 12.0
    assert w.output_stalled_s() > 10.0
    w.fail("output thread stuck for 12 s")
    assert w.output_stalled_s() == 0.0 and w.state == "failed"


def test_the_registry_watchdog_fails_and_stops_a_stuck_worker():
    """The registry's reaper is the watchdog: within a couple of its 1 s rounds a worker whose
    output loop has not turned for over OUTPUT_STALL_S is failed with the reason and stopped."""
    import asyncio

    from media_service.control.registry import OUTPUT_STALL_S, StreamRegistry

    async def scenario():
        w = make_worker()
        registry = StreamRegistry(w.cfg, w.metrics, w.events)
        stops = []

        async def stop(drain=True):
            stops.append(drain)
        w.stop = stop
        w.state = "running"
        w.playout.beat = time.monotonic() - OUTPUT_STALL_S - 2.0
        registry._workers[w.id] = w
        registry._reaper = asyncio.create_task(registry._reap())
        try:
            for _ in range(40):
                if stops:
                    break
                await asyncio.sleep(0.1)
        finally:
            registry._reaper.cancel()
            await asyncio.gather(registry._reaper, return_exceptions=True)
        return w, stops

    w, stops = asyncio.run(scenario())
    assert w.state == "failed" and w.state_reason.startswith("output thread stuck for 1"), w.state_reason
    assert stops == [False], "a stuck stream is stopped at once, without drain"
    assert any(e["type"] == "failed" for e in w.events.since(0))


def test_undecodable_audio_is_counted_and_named_once_per_session():
    w = make_worker()
    w.counters.input_sessions = 1
    for _ in range(5):
        w._on_undecodable("Invalid data found when processing input")
    assert w.snapshot()["counters"]["audio_packets_undecodable"] == 5
    named = [e for e in w.events.since(0) if e["type"] == "input_undecodable"]
    assert len(named) == 1 and named[0]["data"]["count"] == 1  # not one event per packet
    w.counters.input_sessions = 2  # the publisher came back: its first bad packet is named again
    w._on_undecodable("again")
    assert [e["data"]["count"] for e in w.events.since(0) if e["type"] == "input_undecodable"] == [1, 6]
