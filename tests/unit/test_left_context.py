"""Left context bookkeeping: which fragment a fragment continues, the word handed over at a cut,
and a fragment never waiting past its deadline for the words of the one before it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
from sts_service.asr.left_context import MAX_ENTRIES, LeftContext, ends_in_pause, hand_over
from sts_service.metrics import StsMetrics
from sts_service.pipeline import DubbingPipeline

SECOND = np.zeros(16000, np.float32)


def test_the_last_word_at_a_cut_goes_to_the_next_fragment():
    assert hand_over("She opened the kitchen", True) == ("She opened the", "kitchen")
    assert hand_over("She opened the kitchen", False) == ("She opened the kitchen", "")
    assert hand_over("window", True) == ("window", "")  # never emptied


def test_a_cut_in_a_pause_keeps_its_last_word():
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    assert not ends_in_pause(speech)  # cut inside speech
    paused = speech.copy()
    paused[-4000:] *= 0.01  # the last 250 ms quiet
    assert ends_in_pause(paused)
    dip = speech.copy()
    dip[-2400:-800] *= 0.01  # a 100 ms dip between words, speech again at the cut
    assert not ends_in_pause(dip)
    assert not ends_in_pause(speech[:1000])  # shorter than the tail: no judgement


def test_a_fragment_continues_only_the_cut_fragment_that_ends_where_it_starts():
    async def main():
        ctx = LeftContext(5.0)  # nothing after a pause
        a = ctx.add(0, 1000.0, 1000.0, SECOND, continues=True)
        assert ctx.before(1, 2000.0) is a
        assert ctx.before(1, 2020.0) is a  # within the tolerance
        assert ctx.before(1, 2400.0) is None  # a cut fragment is continued only where it ends
        assert ctx.before(2, 2000.0) is None  # not the previous sequence number
        ctx.add(1, 2000.0, 1000.0, SECOND, continues=False)
        assert ctx.before(2, 3000.0) is None  # ended on a pause, nothing kept
        long = ctx.add(2, 3000.0, 6000.0, np.zeros(6 * 16000, np.float32), continues=True)
        assert long.audio is None and ctx.before(3, 9000.0) is None  # longer than the context kept
        assert LeftContext(0.0, 1.5).add(0, 0.0, 1000.0, SECOND, True).audio is None  # turned off
    asyncio.run(main())


def test_a_fragment_after_a_short_pause_is_heard_behind_the_one_before():
    async def main():
        ctx = LeftContext(5.0, pause_s=1.5)
        a = ctx.add(0, 1000.0, 1000.0, SECOND, continues=False)  # ended in a pause
        assert ctx.before(1, 2000.0) is a
        assert ctx.before(1, 3500.0) is a
        assert ctx.before(1, 3501.0) is None  # a longer gap: heard cold
        # The pause is heard as silence between the two: 600 ms at 16 kHz.
        lead = a.lead_in(2600.0)
        assert len(lead) == 16000 + 9600 and not lead[16000:].any()
        assert a.lead_in(2000.0) is SECOND
        cut = ctx.add(1, 2600.0, 1000.0, SECOND, continues=True)
        assert cut.lead_in(3600.0) is SECOND  # a cut: nothing between the two
        assert ctx.before(2, 3700.0) is None  # and only the fragment starting where it ends goes on from it
    asyncio.run(main())


def test_memory_is_bounded_and_closing_releases_waiters():
    async def main():
        ctx = LeftContext(5.0)
        first = ctx.add(0, 0.0, 1000.0, SECOND, True)
        for seq in range(1, 3 * MAX_ENTRIES):
            ctx.add(seq, seq * 1000.0, 1000.0, SECOND, True)
        assert len(ctx) == MAX_ENTRIES
        assert first.text.done() and first.text.result() == ""  # dropped: anyone waiting is released
        last = ctx.before(3 * MAX_ENTRIES, 3 * MAX_ENTRIES * 1000.0)
        ctx.close()
        assert last.text.result() == "" and len(ctx) == 0
    asyncio.run(main())


def _window(audio, left=None):
    """The sized window: 1000 frames up to 8 s of audio, then a wider one."""
    n = len(audio) + (len(left.audio) if left is not None else 0)
    return 1000 if n <= 8 * 16000 else 1100


def _pipeline(asr_s: float = 0.1, post_s: float = 0.1, wait_s: float = 0.0):
    cost = SimpleNamespace(asr=lambda window, batch, greedy: asr_s, post=SimpleNamespace(value=post_s))
    scheduler = SimpleNamespace(cost=cost, window_for=_window, estimated_wait_s=lambda now: wait_s)
    return SimpleNamespace(scheduler=scheduler, metrics=StsMetrics())


def test_a_fragment_waits_for_the_words_before_it_and_hears_them():
    async def main():
        ctx = LeftContext(5.0)
        prev = ctx.add(0, 0.0, 1000.0, SECOND, True)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, prev.commit, "She opened the")
        left = await DubbingPipeline._left_audio(_pipeline(), prev, SECOND, 1000.0, loop.time() + 5.0)
        assert left is not None and left.text == "She opened the" and left.audio is SECOND
        assert not prev.successor_cold
    asyncio.run(main())


def test_no_time_to_wait_means_cold_and_the_cut_fragment_keeps_its_word():
    async def main():
        ctx = LeftContext(5.0)
        prev = ctx.add(0, 0.0, 1000.0, SECOND, True)
        loop = asyncio.get_running_loop()
        # Its own ASR and the stages after it need 0.2 s of the 0.25 s left: at most 0.05 s to wait.
        t0 = loop.time()
        left = await DubbingPipeline._left_audio(_pipeline(), prev, SECOND, 1000.0, t0 + 0.25)
        assert left is None and prev.successor_cold
        # Nothing before it to wait for, or nothing heard there: cold at once.
        assert await DubbingPipeline._left_audio(_pipeline(), None, SECOND, 0.0, t0 + 5.0) is None
        empty = ctx.add(1, 1000.0, 1000.0, SECOND, True)
        empty.commit("")
        assert await DubbingPipeline._left_audio(_pipeline(), empty, SECOND, 2000.0, t0 + 5.0) is None
    asyncio.run(main())


def test_after_a_pause_the_silence_is_heard_and_a_wider_window_is_not_paid_for():
    async def main():
        ctx = LeftContext(5.0, pause_s=1.5)
        pipe = _pipeline()
        loop = asyncio.get_running_loop()
        prev = ctx.add(0, 0.0, 1000.0, SECOND, continues=False)
        prev.commit("He went to the market,")
        left = await DubbingPipeline._left_audio(pipe, prev, SECOND, 1500.0, loop.time() + 5.0)
        assert left is not None and left.text == "He went to the market,"
        assert len(left.audio) == 16000 + 8000 and not left.audio[16000:].any()
        assert pipe.metrics.asr_left_context.labels("used_after_pause")._value.get() == 1
        # Five seconds behind a four-second fragment would need the next window: heard cold.
        long = ctx.add(1, 2000.0, 5000.0, np.zeros(5 * 16000, np.float32), continues=False)
        long.commit("and bought fresh bread, cheese and a bottle of milk.")
        four = np.zeros(4 * 16000, np.float32)
        assert await DubbingPipeline._left_audio(pipe, long, four, 7200.0, loop.time() + 5.0) is None
        # A cut fragment is heard in front of the next one even so: its words are split at the cut.
        cut = ctx.add(2, 7200.0, 5000.0, np.zeros(5 * 16000, np.float32), continues=True)
        cut.commit("and bought fresh bread,")
        assert await DubbingPipeline._left_audio(pipe, cut, four, 12200.0, loop.time() + 5.0) is not None
        assert pipe.metrics.asr_left_context.labels("used")._value.get() == 1
    asyncio.run(main())


def test_after_a_pause_the_context_waits_for_room_in_the_deadline():
    """Heard behind the words before, the decoder runs longer: after a pause that is done only while
    the deadline leaves room for one more ASR run after the expected wait; a cut fragment's successor
    is heard behind it regardless (its words are split at the cut)."""
    async def main():
        ctx = LeftContext(5.0, pause_s=1.5)
        loop = asyncio.get_running_loop()
        prev = ctx.add(0, 0.0, 1000.0, SECOND, continues=False)
        prev.commit("He went to the market,")
        # 1 s left: 0.6 s of wait + 0.1 post leaves 0.3 s, room for the 0.2 s of two ASR runs.
        assert await DubbingPipeline._left_audio(_pipeline(wait_s=0.6), prev, SECOND, 1500.0, loop.time() + 1.0)
        busy = _pipeline(wait_s=0.75)  # 0.15 s left: no room
        assert await DubbingPipeline._left_audio(busy, prev, SECOND, 1500.0, loop.time() + 1.0) is None
        assert busy.metrics.asr_left_context.labels("skipped_busy")._value.get() == 1
        cut = ctx.add(1, 2000.0, 1000.0, SECOND, continues=True)
        cut.commit("and bought fresh")
        assert await DubbingPipeline._left_audio(busy, cut, SECOND, 3000.0, loop.time() + 1.0) is not None
    asyncio.run(main())
