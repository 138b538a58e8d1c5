"""Long polls (waiters.Waiters, behind EventLog.wait_since and CaptionTrack.wait_since): what is
added between a reader's first look and its registration must wake it, not leave it waiting
until its timeout."""

import asyncio

from media_service.events import EventLog
from media_service.media_io.captions import CaptionTrack
from media_service.waiters import Waiters


def added_right_after_the_first_look(obj, add):
    """Make `obj.since` run `add()` once, right after the reader's first look has found nothing:
    the moment a writer on another thread can slip in before the reader registers."""
    since, looks = obj.since, []

    def since_then_add(*args):
        found = since(*args)
        if not looks:
            looks.append(found)
            add()
        return found
    obj.since = since_then_add
    return looks


async def test_an_event_published_before_the_reader_registers_wakes_it():
    log = EventLog()
    looks = added_right_after_the_first_look(log, lambda: log.publish("s", "late"))
    found = await log.wait_since(0, "s", timeout=2.0)
    assert looks == [[]] and [e["type"] for e in found] == ["late"]


async def test_a_cue_added_before_the_reader_registers_wakes_it():
    track = CaptionTrack("en")
    looks = added_right_after_the_first_look(track, lambda: track.add("hello", 0.0, 1000.0))
    found = await track.wait_since(0, timeout=2.0)
    assert looks == [[]] and [c.text for c in found] == ["hello"]


async def test_a_wake_up_that_is_not_for_the_reader_keeps_it_waiting():
    waiters, items = Waiters(), []
    reader = asyncio.ensure_future(waiters.wait_for(lambda: [i for i in items if i == "mine"], 5.0))
    await asyncio.sleep(0)
    items.append("other")
    waiters.wake()
    await asyncio.sleep(0.01)
    assert not reader.done()
    items.append("mine")
    waiters.wake()
    assert await asyncio.wait_for(reader, 3.0) == ["mine"]
    assert await waiters.wait_for(lambda: [], 0.0) == []
