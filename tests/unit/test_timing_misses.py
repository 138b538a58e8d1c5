"""livedub_testkit.analysis.timing_misses: what integration tests accept of a stream's fallbacks."""

import pytest
from livedub_testkit.analysis import timing_misses


def test_none_or_one_timing_miss_is_accepted_and_counted():
    assert timing_misses({}) == 0
    assert timing_misses({"timeout": 1}) == 1
    assert timing_misses({"deadline_exceeded": 1, "timeout": 1}, at_most=2) == 2


@pytest.mark.parametrize("fallbacks", [{"timeout": 2}, {"sts_unavailable": 1}, {"backpressure": 1},
                                       {"failed": 1, "timeout": 0}])
def test_more_misses_or_any_other_reason_fail(fallbacks):
    with pytest.raises(AssertionError):
        timing_misses(fallbacks)
