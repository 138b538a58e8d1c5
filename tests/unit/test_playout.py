"""The playout stage with fake writers: constant delay, frames in order, the first-picture rule,
the end of an input played out, and an output that cannot open. Real capture stage and timeline;
no network, no muxers. When a frame is due is checked on a stopped clock moved by hand
(`PlayoutClock`), not by timing the machine."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest
from media_service.audio.mixer import DubTracks, Mode
from media_service.audio.timeline import RATE
from media_service.config import MediaConfig, StreamRequest
from media_service.events import EventLog
from media_service.media_io.output import FRAME, OutputError
from media_service.metrics import MediaMetrics
from media_service.stream import playout as playout_module
from media_service.stream.capture import Capture
from media_service.stream.counters import Counters
from media_service.stream.playout import BATCH_S, IDLE_WAIT_S, Playout

D = 0.15


class FakeWriter:
    def __init__(self, url: str):
        self.url = url
        self.audio: list[tuple[int, np.ndarray, float]] = []  # (pts, samples, the playout's time written)
        self.video: list[tuple[int, int]] = []  # (pts, shift)
        self.av_offset_s = 0.0
        self.closed = False

    def write_audio(self, samples, pts, track=0):
        self.audio.append((pts, samples.copy(), playout_module.time.monotonic()))  # a test may have stopped it

    def write_video(self, packet, shift):
        self.video.append((packet.pts, shift))

    def close(self):
        self.closed = True


class Rig:
    def __init__(self, fail_opens: int = 0):
        self.req = StreamRequest(input_url="rtmp://127.0.0.1:1/live/x/in", output_url="rtmp://127.0.0.1:1/live/x/out")
        self.events, self.counters = EventLog(), Counters()
        self.capture = Capture("x", MediaConfig(sts_token="t"), self.events, self.counters,
                               on_segment=lambda seg, arrival: None)
        self.counters.input_sessions = 1  # an input session is open
        self.writers: list[FakeWriter] = []
        self.errors: list[str] = []
        self.fail_opens = fail_opens
        self.reading = True
        self.stop, self.drain = threading.Event(), threading.Event()
        self.playout = Playout("x", self.req, D, store=self.capture.store, video=self.capture.video,
                               timeline=self.capture.timeline, tracks=DubTracks(["es"]), metrics=MediaMetrics(),
                               events=self.events, counters=self.counters, mix=lambda: (Mode.PASSTHROUGH, -12.0), make_writer=self.make_writer,
                               input_reading=lambda: self.reading, on_error=self.errors.append,
                               stop=self.stop, drain=self.drain)
        self.thread = threading.Thread(target=self.playout.run, daemon=True)

    def make_writer(self, out):
        url = out.url
        if self.fail_opens:
            self.fail_opens -= 1
            raise OutputError(f"cannot open {url}: connection refused")
        self.writers.append(FakeWriter(url))
        return self.writers[-1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


def tone(n: int) -> np.ndarray:
    x = 0.1 * np.sin(np.arange(n) * 2 * np.pi * 440 / RATE).astype(np.float32)
    return np.repeat(x[:, None], 2, axis=1)


def video_packet(pts_ms: int) -> av.Packet:
    p = av.Packet(b"\0" * 16)
    p.pts = p.dts = pts_ms
    p.time_base = Fraction(1, 1000)
    p.is_keyframe = pts_ms == 0
    return p


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


class PlayoutClock:
    """The playout's `time.monotonic`, stopped at `now` and moved by the test. It counts its reads:
    each round of the playout loop reads it at least twice (its start, its idle wait)."""

    def __init__(self, now: float):
        self.now, self.reads = now, 0

    def monotonic(self) -> float:
        self.reads += 1
        return self.now

    def went_round(self) -> bool:
        """True once a whole round has run at the time now set (four reads: the end of the round
        under way, then the next one)."""
        first = self.reads
        return wait_for(lambda: self.reads >= first + 4)


def test_audio_plays_in_order_at_the_delay_and_the_end_is_played_out(monkeypatch):
    arrived = 1000.0
    clock = PlayoutClock(arrived)
    monkeypatch.setattr(playout_module, "time", SimpleNamespace(monotonic=clock.monotonic))
    with Rig() as rig:
        rig.capture.on_video(video_packet(0), arrival=arrived)
        n = 10 * FRAME + 300  # ten whole frames and a partial one
        rig.capture.on_audio(tone(n), 0.0, arrival=arrived)
        clock.now = arrived + D - BATCH_S - 0.001  # a round writes what is due within BATCH_S: not yet
        assert clock.went_round()
        early = len(rig.writers[0].audio) if rig.writers else 0
        assert early == 0, f"{early} audio frames written before their round was due"
        clock.now = arrived + D - BATCH_S + 0.001
        assert wait_for(lambda: rig.writers and len(rig.writers[0].audio) == 10)
        rig.reading = False  # the input ended: the partial frame goes out and the output closes, once due
        clock.now = arrived + D - 0.001
        assert clock.went_round()
        assert not rig.writers[0].closed and len(rig.writers[0].audio) == 10, "the end played out early"
        clock.now = arrived + D + 0.001
        assert wait_for(lambda: rig.writers[0].closed)
    w = rig.writers[0]
    pts = [p for p, _, _ in w.audio]
    assert pts == [i * FRAME for i in range(11)], pts  # consecutive, nothing lost or repeated
    played = np.concatenate([s for _, s, _ in w.audio])
    assert np.allclose(played[:n], tone(n), atol=1e-6)  # passthrough: the original, bit for bit
    assert not played[n:].any()  # the last frame is padded with silence
    assert w.video == [(0, 0)]
    assert rig.counters.audio_frames_out == 11 and rig.counters.video_packets_out == 1
    kinds = [e["type"] for e in rig.events.since(0, "x")]
    assert kinds.count("output_open") == 1 and "output_closed" in kinds
    assert rig.playout.state == "closed"


def test_audio_before_the_first_picture_is_not_sent():
    with Rig() as rig:
        rig.capture.on_audio(tone(3 * FRAME), 0.0)  # 64 ms of sound before the first keyframe
        rig.capture.on_video(video_packet(60))
        rig.capture.on_audio(tone(4 * FRAME), 3 * FRAME / RATE)
        assert wait_for(lambda: rig.writers and rig.writers[0].video)
        assert wait_for(lambda: rig.counters.audio_frames_out >= 5)  # 7 frames, 2 held back
    pts = [p for p, _, _ in rig.writers[0].audio]
    assert pts and pts[0] == 2 * FRAME  # frames 0 and 1 end before 60 ms; frame 2 holds the picture
    assert pts == list(range(pts[0], pts[-1] + 1, FRAME))


def test_an_output_that_cannot_open_is_retried_and_named():
    with Rig(fail_opens=1) as rig:
        rig.capture.on_video(video_packet(0))
        rig.capture.on_audio(tone(2 * FRAME), 0.0)
        assert wait_for(lambda: rig.errors)
        assert rig.playout.state == "error" and "connection refused" in rig.errors[0]
        for i in range(2, 120):  # the input goes on, a frame every 20 ms
            rig.capture.on_audio(tone(FRAME), i * FRAME / RATE)
            if rig.writers and rig.writers[0].audio:
                break
            time.sleep(0.02)
        assert rig.writers and rig.writers[0].audio  # reopened (after OUTPUT_REOPEN_S) and writing
        assert rig.playout.state == "writing"


@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_idle_wait_sleeps_until_the_next_thing_is_due(delay):
    rig = Rig()
    rig.playout.delay_s = delay
    assert rig.playout._idle_wait(0) == pytest.approx(IDLE_WAIT_S, abs=0.002)  # nothing buffered: poll slowly
    rig.capture.on_audio(tone(FRAME), 0.0)
    assert rig.playout._idle_wait(0) <= min(IDLE_WAIT_S, delay) + 0.002
