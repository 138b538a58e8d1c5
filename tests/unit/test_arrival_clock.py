"""ingest.ArrivalClock: packets read in bursts keep the time they arrived (the output delay is counted from it)."""

import pytest
from media_service.media_io.ingest import (
    BURST_S,
    CATCH_UP_CHUNK_S,
    CATCH_UP_S,
    CATCH_UP_WAIT_S,
    ArrivalClock,
    BehindAlarm,
    IngestLag,
    burst_pause,
)


def test_arrival_clock_dates_a_burst_by_stream_time():
    """Packets taken in one burst are dated by when they arrived, not when they were taken."""
    clock = ArrivalClock(max_lag_s=0.15)
    assert clock.arrival(1.0, now=50.0) == 50.0  # nothing seen arriving yet: now
    clock.saw_arrive(10.0, wall=100.0)  # a read that waited: this packet arrived at 100.0
    # taken 100 ms later in one burst: each dated by its distance in stream time
    assert clock.arrival(10.04, now=100.1) == pytest.approx(100.04)
    assert clock.arrival(10.08, now=100.1) == pytest.approx(100.08)
    assert clock.arrival(10.5, now=100.1) == pytest.approx(100.1)  # never later than now
    assert clock.arrival(9.99, now=100.1) == pytest.approx(100.0)  # interleaving: not before the anchor
    assert clock.arrival(2.0, now=100.1) == pytest.approx(100.0)  # a jump backwards: bounded
    assert clock.arrival(10.0, now=101.0) == pytest.approx(100.85)  # at most max_lag_s before now
    assert clock.arrival(None, now=100.1) == 100.1


def test_ingest_lag_grows_only_when_the_reader_falls_behind():
    lag = IngestLag(jump_s=1.0)
    assert lag.update(0.0, now=100.0) == 0.0
    # keeping up: wall and stream time advance together (jitter of a few ms either way)
    assert lag.update(1.0, now=101.003) == pytest.approx(0.003)
    assert lag.update(2.0, now=101.99) == 0.0  # a new best reference
    # falling behind: each second of stream is read 1.5 s of wall time later
    assert lag.update(3.0, now=103.49) == pytest.approx(0.5)
    assert lag.update(4.0, now=104.99) == pytest.approx(1.0)
    # a stall (no packet for 3 s) is lag too, not a timestamp jump
    assert lag.update(4.1, now=108.09) == pytest.approx(4.0)
    # stream time jumping back (a new timestamp base) starts a new reference
    assert lag.update(0.5, now=108.2) == 0.0
    assert lag.update(1.5, now=109.2) == pytest.approx(0.0)
    assert lag.update(None, now=120.0) == pytest.approx(0.0)  # no timestamp: unchanged



def test_the_reader_sleeps_a_burst_only_when_it_is_caught_up():
    assert burst_pause(0.0005, behind_s=0.0) == 0.0  # data was buffered: keep reading
    assert burst_pause(0.030, behind_s=0.05) == BURST_S  # waited for the source: gather a burst


def test_behind_the_source_it_yields_once_per_chunk_whatever_the_reads_took():
    behind = CATCH_UP_S + 0.5
    # a slow read waited for the GIL or a core, not for data: no sleep until a chunk was read
    assert burst_pause(0.030, behind_s=behind, chunk_s=0.0) == 0.0
    assert burst_pause(0.030, behind_s=behind, chunk_s=CATCH_UP_CHUNK_S / 2) == 0.0
    assert burst_pause(0.0005, behind_s=behind, chunk_s=CATCH_UP_CHUNK_S) == CATCH_UP_WAIT_S < BURST_S


def test_a_reader_whose_every_read_is_slow_still_keeps_up():
    """Contention makes every read slow: the reader must still take more than real time. Simulated:
    a 720p30 stream's ~77 packets a second, each read costing 5 ms, starting 2 s behind. Once
    caught up, a slow read looks like a wait for the source (a burst sleep), so the lag then
    stays between CATCH_UP_S and CATCH_UP_S + BURST_S instead of growing."""
    packet_s = 1 / 77
    ts, wall, paused_ts = 0.0, 2.0, 0.0
    lags = []
    while wall < 30.0:
        wall += 0.005  # the read
        ts += packet_s
        wall = max(wall, ts)  # never ahead of the live source
        pause = burst_pause(0.005, behind_s=wall - ts, chunk_s=ts - paused_ts)
        if pause:
            paused_ts = ts
        wall += pause
        lags.append((wall, wall - ts))
    assert max(lag for t, lag in lags if t > 6.0) <= CATCH_UP_S + BURST_S + 0.02  # 2 s made up within 4 s


def test_falling_behind_is_told_once_when_it_starts_and_once_when_it_ends():
    alarm = BehindAlarm(raise_s=1.0, clear_s=0.5)
    lags = [0.1, 0.4, 0.9, 1.2, 3.0, 0.8, 1.1, 2.5, 0.7, 0.3, 0.2, 0.9, 1.0]
    told = [(lag, change) for lag in lags if (change := alarm.update(lag))]
    # 0.8 and 0.7 are under the threshold but not under the clear level: the same episode
    assert told == [(1.2, "behind"), (0.3, "caught_up"), (1.0, "behind")]
    assert alarm.behind and alarm.worst_s == 1.0


def test_the_worst_lag_of_an_episode_is_kept_for_the_caught_up_report():
    alarm = BehindAlarm()
    for lag in (1.5, 4.0, 2.0):
        alarm.update(lag)
    assert alarm.update(0.1) == "caught_up" and alarm.worst_s == 4.0
