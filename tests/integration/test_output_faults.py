"""Outputs under faults, with real processes: nginx-rtmp stopped (SIGSTOP) or absent, relay children,
PyAV files, a full tmpfs.

What must hold: a stalled destination never holds up the writer (nor the other outputs), its
relay is killed and reaped with its threads; a destination that is down is retried with a
growing delay; a reopened file output never truncates what was recorded; a full disk says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

import av
import numpy as np
import pytest
from livedub_testkit import analysis
from livedub_testkit.rtmp_server import NginxRtmpServer, free_port
from media_service.media_io.output import OutputError, OutputWriter
from media_service.media_io.relay import RelaySettings

pytestmark = pytest.mark.timeout(180)

CLIP_S = 4


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 4 s 640x360 H.264 clip at ~3 Mb/s (big packets fill socket buffers quickly)."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=640x360:rate=30", "-t", str(CLIP_S), "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "12", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


class Source:
    """The clip's video packets, looped forever with continuing timestamps, and its stream as template."""

    def __init__(self, path):
        self.container = av.open(str(path))
        self.template = self.container.streams.video[0]
        self.packets = [p for p in self.container.demux(self.template) if p.size]
        self.step = self.packets[1].pts - self.packets[0].pts
        self.count = 0

    def next(self) -> av.Packet:
        src = self.packets[self.count % len(self.packets)]
        pkt = av.Packet(bytes(src))
        pkt.pts = pkt.dts = self.count * self.step
        pkt.time_base = src.time_base
        pkt.is_keyframe = src.is_keyframe
        self.count += 1
        return pkt

    def close(self):
        self.container.close()


@pytest.fixture
def source(clip):
    src = Source(clip)
    yield src
    src.close()


@contextmanager
def paused(server: NginxRtmpServer):
    """nginx master and worker stopped (SIGSTOP): connections stay open, nothing is read."""
    os.killpg(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.proc.pid, signal.SIGCONT)


def relay_threads(label: str = "") -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("relay-") and label in t.name]


def assert_reaped(writer: OutputWriter) -> None:
    proc = writer.relay.proc
    assert proc.returncode is not None, "relay child not reaped"
    assert not os.path.exists(f"/proc/{proc.pid}") or _state(proc.pid) != "Z", "relay child left a zombie"
    left = relay_threads(writer.relay.label)
    assert not writer.relay.alive and left == [], left


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def write_until_error(writer, source, *, per_sleep=30, sleep_s=0.25, limit_s=90.0):
    """Write paced video (30 packets per `sleep_s`) until OutputError; returns it and the longest write."""
    worst, deadline = 0.0, time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for _ in range(per_sleep):
            t = time.monotonic()
            try:
                writer.write_video(source.next(), 0)
            except OutputError as exc:
                return exc, max(worst, time.monotonic() - t)
            worst = max(worst, time.monotonic() - t)
        time.sleep(sleep_s)
    raise AssertionError(f"no OutputError within {limit_s} s")


# ------------------------------------------------------------ a stalled server

STALLS = {
    # The feeder sees the child take nothing for stall_s: kills it.
    "no_progress": (RelaySettings(rw_timeout_s=120, stall_s=2, queue_bytes=1 << 30), "stalled", "nothing taken"),
    # Our queue grows past its bound (written faster than ~2 MB can leave): killed at once.
    "queue_full": (RelaySettings(rw_timeout_s=120, stall_s=120, queue_bytes=2 << 20), "stalled", "bytes waiting"),
    # libavformat's own rw_timeout ends it (our bounds set out of reach).
    "rw_timeout": (RelaySettings(rw_timeout_s=2, stall_s=120, queue_bytes=1 << 30), "relay_exited", "timed out"),
}


@pytest.mark.parametrize("case", list(STALLS))
def test_stalled_server_never_blocks_the_writer_and_the_relay_is_reaped(case, rtmp_server, source):
    settings, kind, words = STALLS[case]
    writer = OutputWriter(rtmp_server.url(f"stall-{case}"), source.template, audio=False, relay_settings=settings)
    try:
        for _ in range(90):  # 3 s of video reach the server
            writer.write_video(source.next(), 0)
        with paused(rtmp_server):
            err, worst = write_until_error(writer, source)
            print(f"{case}: {err.kind} after {source.count} packets; longest write {worst * 1000:.1f} ms")
            assert err.kind == kind and words in str(err), str(err)
            assert worst < 1.0, f"a write blocked for {worst:.2f} s"
            with pytest.raises(OutputError):  # the output stays failed
                writer.write_video(source.next(), 0)
            writer.close()  # while the server is still stopped: must not wait for it
            assert_reaped(writer)
    finally:
        writer.close()


@pytest.mark.slow
def test_one_stalled_output_does_not_hold_up_another(source, tmp_path):
    """Like the worker: one thread writes every output; the stalled one is dropped, the other goes on."""
    with NginxRtmpServer() as good, NginxRtmpServer() as bad:
        rec = analysis.record_stream(good.url("a"), tmp_path / "a.flv")
        time.sleep(0.5)  # the player waits on nginx before the publisher starts
        a = OutputWriter(good.url("a"), source.template, audio=False)
        b = OutputWriter(bad.url("b"), source.template, audio=False,
                         relay_settings=RelaySettings(stall_s=2))
        outputs = {"a": a, "b": b}
        written_a = after_stop_a = 0
        stopped = False
        try:
            for i in range(2000):
                if i == 90:
                    os.killpg(bad.proc.pid, signal.SIGSTOP)
                    stopped = True
                pkt = source.next()
                for name, w in list(outputs.items()):
                    copy = av.Packet(bytes(pkt))
                    copy.pts, copy.dts, copy.time_base = pkt.pts, pkt.dts, pkt.time_base
                    copy.is_keyframe = pkt.is_keyframe
                    try:
                        w.write_video(copy, 0)
                    except OutputError as exc:
                        assert name == "b", exc
                        w.close()
                        assert_reaped(w)
                        del outputs[name]
                        continue
                    if name == "a":
                        written_a += 1
                        after_stop_a += stopped
                if "b" not in outputs and after_stop_a >= 600:
                    break
                if i % 30 == 29:
                    time.sleep(0.25)  # 4x real time
            assert "b" not in outputs, "the stalled output was never declared failed"
        finally:
            if stopped:
                os.killpg(bad.proc.pid, signal.SIGCONT)
            for w in outputs.values():
                w.close()
            time.sleep(1.0)
            analysis.stop_process(rec)
    got = len(analysis.video_packets(tmp_path / "a.flv"))
    print(f"output a: {written_a} packets written ({after_stop_a} after b stalled), {got} recorded")
    assert got >= written_a - 30, (got, written_a)


# ------------------------------------------------------------ nobody listening

@pytest.mark.slow
def test_down_server_is_retried_with_growing_delay(source):
    port = free_port()
    url = f"rtmp://user:s3cret@127.0.0.1:{port}/live/x?pass=hunter2"
    delays = []
    for _attempt in range(3):
        while True:
            try:
                writer = OutputWriter(url, source.template, audio=False)
                break
            except OutputError as exc:  # refused at once during the backoff, nothing started
                assert exc.retry_in > 0 and relay_threads() == []
                time.sleep(exc.retry_in + 0.01)
        err, _ = write_until_error(writer, source, per_sleep=3, sleep_s=0.1, limit_s=30)
        writer.close()
        assert_reaped(writer)
        delays.append(OutputWriter.retry_after(url))
        assert err.kind == "relay_exited" and "Connection refused" in str(err), str(err)
        assert "s3cret" not in str(err) and "hunter2" not in str(err), str(err)
    print("delays after each failure:", [round(d, 2) for d in delays])
    assert 0.5 < delays[0] <= 1.0 and 1.0 < delays[1] <= 2.0 and 2.0 < delays[2] <= 4.0, delays


# ------------------------------------------------------------ file outputs

def write_audio_seconds(writer, seconds, start_frame=0):
    noise = np.random.default_rng(1).uniform(-0.3, 0.3, (1024, 2)).astype(np.float32)
    for i in range(int(seconds * 48000 / 1024)):
        writer.write_audio(noise, (start_frame + i) * 1024)


def test_reopened_file_output_keeps_the_first_recording(tmp_path):
    url = f"file://{tmp_path}/show.flv"
    first = OutputWriter(url, None)
    write_audio_seconds(first, 2)
    first.close()
    recorded = (tmp_path / "show.flv").read_bytes()
    again = OutputWriter(url, None)  # as after an input reconnect
    write_audio_seconds(again, 1, start_frame=200)
    again.close()
    assert again.target == str(tmp_path / "show.001.flv")
    assert (tmp_path / "show.flv").read_bytes() == recorded
    assert analysis.probe(tmp_path / "show.flv")["audio"]["codec"] == "aac"
    assert analysis.probe(tmp_path / "show.001.flv")["audio"]["codec"] == "aac"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["show.001.flv", "show.flv"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:  # not root: the unit test fakes ENOSPC at os.write instead
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_reported_as_disk_full(tiny_tmpfs):
    url = str(tiny_tmpfs / "rec.flv")
    writer = OutputWriter(url, None)
    with pytest.raises(OutputError) as err:
        write_audio_seconds(writer, 60)
    writer.close()
    assert err.value.kind == "disk_full" and err.value.state == "disk_full", str(err.value)
    kept = (tiny_tmpfs / "rec.flv").stat().st_size
    assert kept > 32 * 1024  # what fitted is kept
    with pytest.raises(OutputError) as again:  # not retried at once
        OutputWriter(url, None)
    assert again.value.kind == "disk_full" and again.value.retry_in > 0
    time.sleep(again.value.retry_in + 0.01)
    retry = OutputWriter(url, None)  # a new segment; nothing fits; removed since empty
    with pytest.raises(OutputError) as third:
        write_audio_seconds(retry, 5)
    retry.close()
    assert third.value.kind == "disk_full"
    assert [p.name for p in tiny_tmpfs.iterdir()] == ["rec.flv"] and (tiny_tmpfs / "rec.flv").stat().st_size == kept
