"""Late starts (protocol 1.3): how late a dub may start, how late the STS plans it, the wire fields."""

from __future__ import annotations

import pytest
from livedub_protocol import FragmentData, FragmentProcessed, ProtocolError, parse
from media_service.stream.dubbing import late_allowance_ms
from sts_service.pipeline import late_offset


def test_the_allowance_is_the_configured_limit_but_at_most_40_percent_of_the_span():
    assert late_allowance_ms(400, 2000) == 400
    assert late_allowance_ms(400, 600) == pytest.approx(240)
    assert late_allowance_ms(0, 2000) == 0


def test_the_offset_is_the_expected_lateness_plus_a_pad_in_10_ms_steps_within_the_allowance():
    assert late_offset(-0.2, 0.4, 2000) == 0 and late_offset(0.0, 0.4, 2000) == 0
    assert late_offset(0.101, 0.4, 2000) == 160  # 101 + 50 ms pad, rounded up to 10 ms
    assert late_offset(0.9, 0.4, 2000) == 400, "never more than the client allows"
    assert late_offset(0.9, 3.0, 1000) == 500, "never more than half the span"


def _fragment(**extra) -> dict:
    return {"stream_id": "s", "fragment_id": "f", "sequence_number": 0, "start_ms": 0, "duration_ms": 10,
            "audio": b"\0\0", "deadline_ms": 500, **extra}


def test_late_start_ms_is_optional_and_bounded():
    assert parse(FragmentData, _fragment()).late_start_ms is None  # a v1.2 client
    assert parse(FragmentData, _fragment(late_start_ms=400)).late_start_ms == 400
    for bad in (0, -1, 10001):
        with pytest.raises(ProtocolError, match="late_start_ms"):
            parse(FragmentData, _fragment(late_start_ms=bad))


def test_start_offset_ms_defaults_to_on_time_for_older_servers():
    base = {"stream_id": "s", "fragment_id": "f", "sequence_number": 0, "start_ms": 0, "duration_ms": 10,
            "status": "ok"}
    assert parse(FragmentProcessed, base).start_offset_ms == 0
    assert parse(FragmentProcessed, {**base, "start_offset_ms": 120}).start_offset_ms == 120
