"""The preview fan-out (media_service.control.preview) with a fake frame source: no network, no decoding.

The fake source runs in the broadcaster's real pump thread and yields numbered "JPEGs" at a fixed
rate until the broadcaster asks it to stop, counting how many times it was opened. The grace window
is an asyncio timer: its tests stop the event loop's clock and move it by hand (`LoopClock`), so
what they check does not depend on how fast the machine runs.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from media_service.control.preview import (
    UPSTREAM_GONE,
    BroadcasterStopped,
    PreviewBroadcaster,
    PreviewRegistry,
)

pytestmark = pytest.mark.timeout(30)


class FakeSource:
    def __init__(self, interval: float = 0.01, fail_first: int = 0):
        self.interval, self.fail_first = interval, fail_first
        self.opened = 0
        self.running = threading.Event()

    def __call__(self, url: str, stop: threading.Event):
        self.opened += 1
        if self.opened <= self.fail_first:
            raise ConnectionRefusedError(f"{url} is not published yet")
        self.running.set()
        try:
            n = 0
            while not stop.is_set():
                n += 1
                yield b"\xff\xd8" + n.to_bytes(4, "big") + b"\xff\xd9"
                time.sleep(self.interval)
        finally:
            self.running.clear()


def number(jpeg: bytes) -> int:
    return int.from_bytes(jpeg[2:6], "big")


async def eventually(predicate, timeout: float = 2.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def take(queue: asyncio.Queue, n: int, timeout: float = 2.0) -> list:
    return [await asyncio.wait_for(queue.get(), timeout) for _ in range(n)]


class LoopClock:
    """The running loop's clock, stopped where it is and moved on only by `advance`: a loop timer
    (the grace window's sleep) fires once the test has moved the clock past it, never by itself.
    While it is stopped, waits must not be loop timers: `settle` waits in a worker thread."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time()
        self.loop.time = lambda: self.now  # shadows the method: call_later and _run_once read it

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def release(self) -> None:
        del self.loop.time


async def settle(predicate, timeout: float = 2.0) -> bool:
    """`eventually` for a stopped loop clock: the pauses between looks are slept off the loop."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.to_thread(time.sleep, 0.01)
    return predicate()


async def loop_goes_round(bc: PreviewBroadcaster, frames: int = 5) -> bool:
    """True once `frames` more frames have been delivered on the loop: it has gone round with its
    clock where it now is, so any timer due by then has fired and its task has run (or once the
    broadcaster has stopped, which delivers no more: the caller's next check says why)."""
    first = number(bc.latest)
    return await settle(lambda: bc.stopped or number(bc.latest) >= first + frames)


async def test_one_pump_serves_many_subscribers():
    src = FakeSource()
    bc = PreviewBroadcaster("rtmp://x/live/a/out", source=src, grace_s=0.1)
    queues = [bc.subscribe() for _ in range(5)]
    try:
        results = await asyncio.gather(*(take(q, 10) for q in queues))
        for frames in results:  # every viewer sees the same consecutive frames, from one upstream
            assert all(f.startswith(b"\xff\xd8") for f in frames)
            assert [number(f) for f in frames] == list(range(1, 11))
        assert src.opened == 1 and bc.stats.dropped_subscribers == 0
        assert bc.stats.pumps_started == 1 and bc.stats.upstreams_opened == 1
        assert bc.subscriber_count == 5
        # A late subscriber gets the latest frame at once, without waiting for the next one.
        late = bc.subscribe()
        assert late.qsize() == 1
    finally:
        await bc.stop()
    assert not bc.pump_running and not src.running.is_set()


async def test_slow_subscriber_is_dropped_without_blocking_the_others():
    src = FakeSource(interval=0.01)
    bc = PreviewBroadcaster("u", source=src, grace_s=1.0)
    slow, fast = bc.subscribe(), bc.subscribe()
    try:
        got = []
        while len(got) < 60:  # the fast one drains continuously and sees a gap-free sequence
            got.append(number(await asyncio.wait_for(fast.get(), 1.0)))
        assert got == list(range(got[0], got[0] + 60))
        # The slow one never read: it was dropped, holds only the sentinel and is not fed any more.
        assert bc.stats.dropped_subscribers == 1 and bc.subscriber_count == 1
        assert slow.qsize() == 1 and slow.get_nowait() is UPSTREAM_GONE
        await asyncio.sleep(0.05)
        assert slow.empty()
    finally:
        await bc.stop()
    assert fast.get_nowait() is UPSTREAM_GONE  # stop() tells everyone


async def test_frames_iterator_ends_for_dropped_viewer_and_unsubscribes():
    bc = PreviewBroadcaster("u", source=FakeSource(interval=0.002), grace_s=5.0)
    q = bc.subscribe()
    try:
        assert await eventually(lambda: bc.stats.dropped_subscribers == 1)  # never read: dropped
        got = [f async for f in bc.frames(q)]
        assert len(got) <= 2 and bc.subscriber_count == 0 and bc.stats.dropped_subscribers == 1
    finally:
        await bc.stop()


async def test_frames_iterator_stops_when_alive_turns_false():
    bc = PreviewBroadcaster("u", source=FakeSource(fail_first=10**6), retry_s=0.02, grace_s=5.0)
    q = bc.subscribe()
    state = {"alive": True}
    try:
        async def leave():  # once the viewer is waiting for a picture the upstream cannot give
            assert await eventually(lambda: bc.stats.upstream_attempts >= 2)
            state["alive"] = False

        leaver = asyncio.create_task(leave())
        got = [f async for f in bc.frames(q, alive=lambda: state["alive"], poll_s=0.02)]
        await leaver
        assert got == [] and bc.subscriber_count == 0
    finally:
        await bc.stop()


async def test_grace_window_then_teardown():
    src = FakeSource()
    bc = PreviewBroadcaster("u", source=src, grace_s=0.3)
    q = bc.subscribe()
    await take(q, 2)
    clock = LoopClock()
    try:
        bc.unsubscribe(q)
        assert await loop_goes_round(bc)
        clock.advance(0.29)
        assert await loop_goes_round(bc)
        assert bc.pump_running and not bc.stopped, "torn down inside the grace window"
        clock.advance(0.02)  # 0.31 s since the last viewer left
        assert await settle(lambda: bc.stopped), "not torn down once the grace window was over"
    finally:
        clock.release()
    assert await eventually(lambda: not bc.pump_running)
    assert not bc.pump_running and not src.running.is_set() and src.opened == 1
    with pytest.raises(BroadcasterStopped):
        bc.subscribe()


async def test_resubscribe_inside_grace_window_keeps_the_pump():
    src = FakeSource()
    # Room for 16 frames: at 100 a second, only a loop stalled for 0.16 s would drop the reader.
    bc = PreviewBroadcaster("u", source=src, grace_s=0.3, queue_size=16)
    try:
        q1 = bc.subscribe()
        await take(q1, 2)
        clock = LoopClock()
        try:
            bc.unsubscribe(q1)
            clock.advance(0.29)
            assert await loop_goes_round(bc)
            q2 = bc.subscribe()
            got: list = []

            async def read():  # a viewer that keeps reading (loop timers cannot time it out now)
                while len(got) < 40 and (frame := await q2.get()) is not UPSTREAM_GONE:
                    got.append(frame)

            reader = asyncio.create_task(read())
            clock.advance(1.0)  # far past where the first grace window ended
            try:
                assert await settle(reader.done, timeout=10.0) and len(got) == 40, f"{len(got)} frames; {bc.stats}"
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            clock.release()
        assert not bc.stopped and bc.pump_running and bc.stats.dropped_subscribers == 0
        assert src.opened == 1 and bc.stats.pumps_started == 1
        assert [number(f) for f in got[1:]] == list(range(number(got[1]), number(got[1]) + 39))
    finally:
        await bc.stop()


async def test_upstream_retried_while_watched():
    src = FakeSource(fail_first=3)
    bc = PreviewBroadcaster("u", source=src, retry_s=0.02, grace_s=1.0)
    try:
        q = bc.subscribe()
        assert len(await take(q, 2)) == 2
        assert src.opened == 4
        assert bc.stats.upstream_attempts == 4 and bc.stats.upstreams_opened == 1
    finally:
        await bc.stop()


async def test_registry_replaces_a_stopped_broadcaster_and_keeps_counters():
    reg = PreviewRegistry(source=FakeSource(), grace_s=0.05)
    try:
        bc1, q1 = reg.subscribe("news", "u")
        assert reg.get_or_create("news", "u") is bc1
        await take(q1, 2)
        bc1.unsubscribe(q1)
        assert await eventually(lambda: bc1.stopped)
        bc2, q2 = reg.subscribe("news", "u")
        assert bc2 is not bc1
        await take(q2, 1)
        stats = reg.stats("news")
        assert stats["pumps_started"] == 2 and stats["subscribers"] == 1 and stats["frames"] >= 3
        assert reg.stats("other")["subscribers"] == 0
    finally:
        await reg.close()
    assert bc2.stopped and not bc2.pump_running and q2.get_nowait() is not None
    with pytest.raises(BroadcasterStopped):
        reg.get_or_create("news", "u")


async def test_registry_forgets_a_removed_stream():
    """Nothing is kept per stream once it is removed (issue 12 #10: the maps grew forever)."""
    reg = PreviewRegistry(source=FakeSource(), grace_s=0.05)
    try:
        bc1, q1 = reg.subscribe("gone", "u")
        await take(q1, 1)
        bc1.unsubscribe(q1)
        assert await eventually(lambda: bc1.stopped)
        bc2, q2 = reg.subscribe("gone", "u")  # the first one is now "retired"
        _, q3 = reg.subscribe("kept", "v")
        await reg.forget("gone")
        assert bc2.stopped and reg.broadcasters("gone") == [] and "gone" not in reg._retired
        assert reg.stats("gone")["pumps_started"] == 0
        assert len(reg.broadcasters("kept")) == 1
    finally:
        await reg.close()
