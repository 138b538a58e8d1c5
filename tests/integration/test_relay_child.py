"""The output relay's child process (media_service.media_io.relay_main) on PyAV's own libavformat:
the bytes arrive as they were written, the URL never appears on a command line, and the protocol
whitelist holds. Its bounds (stall, rw_timeout, refused) are in test_output_faults.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from media_service.media_io import relay_main
from media_service.media_io.relay import Relay, RelaySettings, libav_output_protocols


def test_pyav_libraries_publish_what_the_outputs_need():
    assert {"rtmp", "rtmps", "udp"} <= libav_output_protocols()


def test_bytes_reach_a_udp_receiver_unchanged():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    payload = os.urandom(188 * 7 * 40)  # 40 datagrams of seven MPEG-TS packets
    env = {**os.environ, relay_main.URL_ENV: f"udp://127.0.0.1:{port}?pkt_size=1316"}
    proc = subprocess.Popen([sys.executable, "-m", "media_service.media_io.relay_main", "--rw-timeout-us",
                             "2000000", "--protocol-whitelist", "udp"], stdin=subprocess.PIPE, env=env,
                            stderr=subprocess.PIPE)
    got = b""
    try:
        for i in range(0, len(payload), 1316 * 4):
            proc.stdin.write(payload[i:i + 1316 * 4])
            proc.stdin.flush()
            while len(got) < min(len(payload), i + 1316 * 4):
                got += rx.recv(65536)
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        rx.close()
    assert got == payload


def test_a_protocol_off_the_whitelist_is_refused():
    env = {**os.environ, relay_main.URL_ENV: "udp://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "media_service.media_io.relay_main", "--rw-timeout-us",
                           "1000000", "--protocol-whitelist", "rtmp,tcp"], input=b"", env=env,
                          capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"cannot open the destination" in proc.stderr, proc.stderr


def test_the_url_stays_off_the_command_line():
    secret = "s3cret-stream-key"
    relay = Relay(f"rtmp://127.0.0.1:9/live/x?pass={secret}", RelaySettings(rw_timeout_s=1, close_timeout_s=1))
    try:
        with open(f"/proc/{relay.proc.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        assert b"relay_main" in cmdline and secret.encode() not in cmdline, cmdline
        deadline = time.monotonic() + 10
        while relay.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.failure is not None and relay.failure.kind == "relay_exited", relay.failure
        assert "Connection refused" in relay.failure.message and secret not in relay.failure.message
    finally:
        relay.close()
    assert not relay.alive


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_the_struct_layout_guard_accepts_this_libavformat(tmp_path):
    libav = relay_main.Libav()
    pb = libav.open(f"file:{tmp_path}/out.bin", {"protocol_whitelist": "file"})
    libav.write(pb, b"livedub")
    libav.close(pb)
    assert (tmp_path / "out.bin").read_bytes() == b"livedub"
