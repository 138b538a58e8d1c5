"""Input timestamp jumps (issue 12 #3): a new session on the timeline, never a giant gap.

Drives the capture stage directly with synthetic audio; no threads, no network.
"""

import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest
from media_service.audio.timeline import RATE
from media_service.config import MediaConfig
from media_service.events import EventLog
from media_service.stream.capture import VAD_BLOCK, Capture
from media_service.stream.counters import Counters

CHUNK = 1024


@pytest.fixture
def worker():
    """The capture stage of stream "x"; its closed segments are collected, not sent."""
    c = Capture("x", MediaConfig(sts_token="t"), EventLog(), Counters(), on_segment=lambda seg, arrival: None)
    return c


def feed(w, start_s: float, seconds: float):
    n = int(seconds * RATE) // CHUNK
    tone = 0.1 * np.sin(np.arange(CHUNK) * 2 * np.pi * 440 / RATE).astype(np.float32)
    for i in range(n):
        w.on_audio(np.repeat(tone[:, None], 2, axis=1), start_s + i * CHUNK / RATE)


def test_forward_jump_of_an_hour_allocates_nothing_and_continues(worker):
    feed(worker, 10.0, 1.0)
    end = worker.timeline.end
    tracemalloc.start()
    feed(worker, 3610.0, 1.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6  # an hour of silence would be ~1.4 GB
    assert worker.counters.timestamp_jumps == 1
    assert worker.timeline.end - end == (RATE // CHUNK) * CHUNK  # continues, no hole
    assert worker.events.since(0, "x")[-1]["type"] == "timestamp_jump"


def test_backward_jump_keeps_the_audio(worker):
    feed(worker, 100.0, 1.0)
    end = worker.timeline.end
    feed(worker, 5.0, 1.0)  # the encoder restarted its clock
    assert worker.counters.timestamp_jumps == 1
    assert worker.timeline.end - end == (RATE // CHUNK) * CHUNK  # nothing dropped


def test_rtmp_32_bit_timestamp_wrap(worker):
    feed(worker, 2**32 / 1000.0 - 1.0, 1.0)
    end = worker.timeline.end
    feed(worker, 0.0, 1.0)
    assert worker.counters.timestamp_jumps == 1
    assert worker.timeline.end - end == (RATE // CHUNK) * CHUNK


def test_short_hole_is_still_silence_not_a_jump(worker):
    feed(worker, 10.0, 1.0)
    end = worker.timeline.end
    feed(worker, 10.0 + end / RATE + 0.5, 0.5)
    assert worker.counters.timestamp_jumps == 0
    assert worker.timeline.end - end > 0.5 * RATE  # the 0.5 s hole is kept on the timeline
    assert not worker.store.read(end, 1000).any()  # and reads as silence


def test_video_only_stretch_then_audio_keeps_sync_without_allocating(worker):
    feed(worker, 10.0, 1.0)
    end = worker.timeline.end
    worker.last_video_out_s = 10.0 + end / RATE + 30.0  # video went on for 30 s alone
    tracemalloc.start()
    feed(worker, 10.0 + end / RATE + 30.0, 0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6
    assert worker.timeline.end - end >= 30 * RATE  # the audio lands where the video is
    assert worker.counters.timestamp_jumps == 0  # the audio was away, it did not jump
    assert worker.timeline.shift_s == 0.0
    assert worker.segmenter.received >= (worker.timeline.end - VAD_BLOCK) // 3 - CHUNK  # all but the queued block


def video(w, pts_s: float):
    pkt = av.Packet(b"\x00" * 16)
    pkt.time_base = Fraction(1, 1000)
    pkt.pts = pkt.dts = int(round(pts_s * 1000))
    w.on_video(pkt)


def test_audio_only_stretch_then_video_is_not_a_jump(worker):
    for i in range(30):  # 1 s of both
        video(worker, 10.0 + i / 30)
    feed(worker, 10.0, 1.0)
    feed(worker, 10.0 + worker.timeline.end / RATE, 4.0)  # the picture is away for 4 s
    video(worker, 10.0 + worker.timeline.end / RATE)  # and comes back where the sound is
    assert worker.counters.timestamp_jumps == 0
    assert worker.timeline.shift_s == 0.0 and worker.video.shift_ticks == 0


def test_both_jumping_is_still_a_jump(worker):
    for i in range(30):
        video(worker, 10.0 + i / 30)
    feed(worker, 10.0, 1.0)
    video(worker, 500.0)  # an encoder restart: video first, then audio, both far away
    feed(worker, 500.0, 0.5)
    assert worker.counters.timestamp_jumps == 1
