"""The segmenter's limits cross threads through a handoff: the dubbing stage posts them (event
loop), the capture stage applies them on its own thread before the next audio it feeds."""

import numpy as np
from media_service.audio.timeline import RATE
from media_service.config import MediaConfig
from media_service.events import EventLog
from media_service.stream.budget import FragmentLimits
from media_service.stream.capture import Capture
from media_service.stream.counters import Counters
from media_service.stream.handoff import Handoff


def test_posted_limits_apply_before_the_next_feed_and_only_the_latest():
    limits: Handoff[FragmentLimits] = Handoff()
    capture = Capture("x", MediaConfig(sts_token="t"), EventLog(), Counters(),
                      on_segment=lambda seg, arrival: None, segment_limits=limits)
    applied = []
    set_limits = capture.segmenter.set_limits
    capture.segmenter.set_limits = lambda *a: (applied.append(a), set_limits(*a))
    limits.post(FragmentLimits(4000.0, 300.0))
    limits.post(FragmentLimits(2500.0, 200.0))  # replaces the one not yet taken
    assert applied == []  # nothing is set from the posting thread
    capture.on_audio(np.zeros((1024, 2), np.float32), 0.0)
    assert applied == [(2500.0, 200.0)]
    capture.on_audio(np.zeros((1024, 2), np.float32), 1024 / RATE)
    assert applied == [(2500.0, 200.0)]  # taken once
    assert limits.take() is None
