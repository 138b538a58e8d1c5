"""Fragment limits derived from the output delay D and the measured round trip."""

import pytest
from media_service.stream.budget import (
    DEADLINE_MARGIN_S,
    SLACK_S,
    DelayTooShort,
    check_delay,
    fragment_limits,
    min_silence_for,
)


def test_a_fragment_sent_at_its_limit_still_has_its_round_trip():
    for delay in (2.5, 3.5, 5.0, 8.0):
        for rtt in (0.2, 0.5, 1.0):
            lim = fragment_limits(delay, rtt, cap_ms=15000, min_silence_cap_ms=300)
            if lim.max_fragment_ms > 1000:  # not clamped to the useful minimum
                sent_by = (lim.max_fragment_ms + lim.min_silence_ms) / 1000.0 + SLACK_S
                assert sent_by + rtt <= delay - DEADLINE_MARGIN_S + 1e-9


def test_short_delay_gives_short_fragments_and_pauses():
    short = fragment_limits(3.5, None, cap_ms=5000, min_silence_cap_ms=300)
    long = fragment_limits(8.0, None, cap_ms=5000, min_silence_cap_ms=300)
    assert short.max_fragment_ms < 2500 and long.max_fragment_ms == 5000  # the configured cap
    assert short.min_silence_ms < long.min_silence_ms == 300
    assert min_silence_for(2.0, 300) == 150


def test_slower_round_trip_shortens_fragments():
    fast = fragment_limits(3.5, 0.3, cap_ms=5000, min_silence_cap_ms=300)
    slow = fragment_limits(3.5, 1.2, cap_ms=5000, min_silence_cap_ms=300)
    assert slow.max_fragment_ms < fast.max_fragment_ms
    assert fragment_limits(3.5, 30.0, cap_ms=5000, min_silence_cap_ms=300).max_fragment_ms == 1000


def test_impossible_delay_is_refused_with_the_arithmetic():
    check_delay(3.5, min_silence_cap_ms=300)
    check_delay(2.0, min_silence_cap_ms=300)  # one stream on an idle sts-service
    with pytest.raises(DelayTooShort, match=r"output_delay_s: 1\.8 s is too short.*at least 1\.\d\d s"):
        check_delay(1.8, min_silence_cap_ms=300)


def test_the_slack_covers_the_capture_stages_own_wait():
    """A span's fragment can leave no sooner than the capture's VAD block and one VAD window after
    its last sample arrived."""
    from media_service.audio.segmenter import VAD_WINDOW
    from media_service.audio.timeline import RATE, VAD_RATE
    from media_service.stream.capture import VAD_BLOCK

    assert SLACK_S > VAD_BLOCK / RATE + VAD_WINDOW / VAD_RATE
