"""Graceful shutdown (issue 9 #7): SIGTERM lets a running stream play out what is buffered and
close its output cleanly, within a bounded time. Real media-service with the default
--shutdown-drain; the input is a file read at real-time pace, the output a file (FLV), the STS
side absent (every span plays its original audio)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest
from livedub_testkit.services import MediaProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

D = 4.0


def duration(path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip())


def test_sigterm_plays_out_the_buffer_and_closes_the_output(short_media, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    source, target = root / "in.mp4", root / "out.flv"
    shutil.copy(short_media.path, source)
    media = MediaProcess("--media-root", str(root), sts_url="http://127.0.0.1:9", sts_token="sts-token-for-this-test",
                         env={"MEDIA_SHUTDOWN_DRAIN": ""}, log_dir=tmp_path)  # "": the default, 15 s
    media.start(wait=60)
    try:
        status, snap = media.api("POST", "/v1/streams", {"id": "drained", "input_url": str(source),
                                                         "output_url": str(target), "output_delay_s": D})
        assert status == 201, snap
        posted = time.monotonic()
        time.sleep(D + 3.0)  # about 7 s of input read, 3 s of it written, 4 s buffered
        read_s = time.monotonic() - posted
        media.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = media.proc.wait(timeout=D + 10)
        took = time.monotonic() - sent
    finally:
        media.stop()
    assert code == 0, media.logs()
    assert took <= D + 5, f"shutdown took {took:.1f} s"
    assert "shutting down: 1 streams play out what is buffered" in media.logs()
    # Without the drain the recording would end about D short of what had been read.
    got = duration(target)
    assert got >= read_s - 1.5, f"output {got:.2f} s of {read_s:.2f} s read: the buffer was not played out"
    assert got <= read_s + 0.5
