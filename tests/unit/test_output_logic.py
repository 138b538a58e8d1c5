"""Output logic without processes: backoff, redaction, segment names, disk full at the OS boundary."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from media_service.media_io import output, recording
from media_service.media_io.output import BACKOFFS, Backoff, OutputError, OutputWriter
from media_service.media_io.recording import SegmentFile, next_segment_number, segment_name
from media_service.redaction import redact, redact_url


def test_backoff_doubles_from_one_second_up_to_thirty():
    b = Backoff()
    delays = [b.failed(OutputError("x"), now=100.0) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert b.remaining(100.0) == 30 and b.remaining(131.0) == 0


def test_failed_open_is_not_retried_before_its_backoff(tmp_path):
    url = f"file://{tmp_path}/missing-dir/out.flv"
    with pytest.raises(OutputError) as first:
        OutputWriter(url, None)
    assert first.value.kind == "open_failed" and first.value.retry_in == 0
    with pytest.raises(OutputError) as second:  # refused at once, nothing tried
        OutputWriter(url, None)
    assert second.value.kind == "open_failed" and 0 < second.value.retry_in <= 1.0
    assert "next attempt in" in str(second.value)
    assert 0 < OutputWriter.retry_after(url) <= 1.0
    BACKOFFS.succeeded(url)
    assert OutputWriter.retry_after(url) == 0


def test_a_healthy_output_resets_its_destination_backoff(tmp_path, monkeypatch):
    url = str(tmp_path / "healthy.flv")
    BACKOFFS.failed(url, OutputError("earlier failure"))
    BACKOFFS.get(url).next_try = 0  # the delay has passed
    monkeypatch.setattr(output, "HEALTHY_S", 0.0)
    w = OutputWriter(url, None)
    w.write_audio(np.zeros((1024, 2), np.float32), 0)
    w.write_audio(np.zeros((1024, 2), np.float32), 1024)
    w.close()
    assert BACKOFFS.get(url) is None


def test_redaction_hides_userinfo_and_query_values():
    url = "rtmp://user:s3cret@example.org:1935/live/key?user=bob&pass=hunter2"
    assert redact_url(url) == "rtmp://***@example.org:1935/live/***?user=***&pass=***"
    text = f"[tcp @ 0x1] Error opening output {url}: Connection refused"
    assert "s3cret" not in redact(text) and "hunter2" not in redact(text)
    assert redact("srt://h:9000?passphrase=abcdefghij&latency=200") == "srt://h:9000?passphrase=***&latency=***"


def test_segment_names_follow_the_highest_present(tmp_path):
    base = tmp_path / "rec.flv"
    assert segment_name(base, 0) == base and segment_name(base, 2).name == "rec.002.flv"
    assert segment_name(tmp_path / "rec", 1).name == "rec.001"
    assert next_segment_number(base) == 0
    base.write_bytes(b"x")
    assert next_segment_number(base) == 1
    (tmp_path / "rec.007.flv").write_bytes(b"x")
    (tmp_path / "rec.x.flv").write_bytes(b"x")  # not a segment
    assert next_segment_number(base) == 8
    base.unlink()
    assert next_segment_number(base) == 8  # a deleted first segment is not reused out of order


def test_segment_file_never_opens_an_existing_file(tmp_path):
    base = tmp_path / "rec.flv"
    base.write_bytes(b"recorded")
    seg = SegmentFile(base)
    seg.write(b"new")
    seg.close()
    assert base.read_bytes() == b"recorded" and seg.path.name == "rec.001.flv"
    assert seg.path.read_bytes() == b"new"
    empty = SegmentFile(base)
    empty.close()
    assert not empty.path.exists(), "a segment that received nothing is removed"


def test_disk_full_is_its_own_kind(tmp_path, monkeypatch):
    """ENOSPC from the OS (faked at os.write) -> OutputError kind/state 'disk_full'."""
    real_write = os.write
    budget = {"bytes": 3000}

    def write(fd, data):
        if budget["bytes"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), budget["bytes"])
        budget["bytes"] -= n
        return real_write(fd, data[:n])

    monkeypatch.setattr(recording.os, "write", write)
    url = str(tmp_path / "full.flv")
    w = OutputWriter(url, None)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (1024, 2)).astype(np.float32)
    with pytest.raises(OutputError) as err:
        for i in range(500):
            w.write_audio(noise, i * 1024)
    w.close()
    assert err.value.kind == "disk_full" and err.value.state == "disk_full"
    assert str(err.value).startswith("disk full:")
    assert (tmp_path / "full.flv").stat().st_size == 3000  # what fitted is kept
    with pytest.raises(OutputError) as again:
        OutputWriter(url, None)
    assert again.value.kind == "disk_full" and again.value.retry_in > 0
    BACKOFFS.succeeded(url)
