"""srt:// outputs through srt_relay (libsrt, what the image has): the bytes reach an SRT listener
unchanged and in full (an independent receiver: srt-live-transmit from Debian's srt-tools), the URL
with its passphrase stays off every command line, and a destination that does not answer, or
refuses the passphrase, ends the relay as `relay_exited` without the secret in the message."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from livedub_testkit.services import free_port
from media_service.media_io.relay import Relay, RelaySettings, libsrt_installed

pytestmark = pytest.mark.skipif(not libsrt_installed(), reason="libsrt is not installed (Debian libsrt1.5-gnutls; "
                                                               "make setup installs it)")
PASSPHRASE = "srt-relay-passphrase-42"


def receiver(port: int, out, passphrase: str = PASSPHRASE) -> subprocess.Popen:
    exe = shutil.which("srt-live-transmit")
    if exe is None:
        pytest.skip("srt-live-transmit is not installed (Debian srt-tools; make setup installs it)")
    return subprocess.Popen([exe, "-q", "-a:no", f"srt://127.0.0.1:{port}?mode=listener&passphrase={passphrase}",
                             "file://con"], stdout=out, stderr=subprocess.DEVNULL)


def wait_failure(relay: Relay, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while relay.failure is None and time.monotonic() < deadline:
        relay.write(b"\x47" + bytes(187))  # one MPEG-TS packet at a time, as a live muxer writes
        time.sleep(0.05)
    return relay.failure


def test_every_byte_reaches_the_listener_in_order(tmp_path):
    port = free_port()
    payload = os.urandom(188 * 7 * 300 + 188 * 3)  # not a whole number of SRT payloads
    with open(tmp_path / "got.ts", "wb") as out:
        rx = receiver(port, out)
    try:
        time.sleep(0.5)  # the listener binds
        relay = Relay(f"srt://127.0.0.1:{port}?streamid=publish:live/x&passphrase={PASSPHRASE}&latency=200000",
                      RelaySettings(close_timeout_s=10), fmt="mpegts")
        with open(f"/proc/{relay.proc.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        assert b"srt_relay" in cmdline and PASSPHRASE.encode() not in cmdline, cmdline
        for at in range(0, len(payload), 188 * 50):
            relay.write(payload[at:at + 188 * 50])
            time.sleep(0.01)
        relay.close()
        assert relay.failure is None, relay.failure
        assert relay.proc.returncode == 0, relay.stderr_tail()
    finally:
        rx.terminate()
        rx.wait(timeout=10)
    assert (tmp_path / "got.ts").read_bytes() == payload


@pytest.mark.parametrize(("listener_passphrase", "said"), [
    (None, "Connection setup failure"),  # nobody listening
    ("another-passphrase-99", "rejected"),
])
def test_a_refused_connection_ends_the_relay_within_its_bounds(tmp_path, listener_passphrase, said):
    port = free_port()
    rx = None
    if listener_passphrase is not None:
        with open(tmp_path / "got.ts", "wb") as out:
            rx = receiver(port, out, passphrase=listener_passphrase)
        time.sleep(0.5)
    try:
        relay = Relay(f"srt://127.0.0.1:{port}?passphrase={PASSPHRASE}",
                      RelaySettings(rw_timeout_s=2, close_timeout_s=1), fmt="mpegts")
        try:
            failure = wait_failure(relay)
            assert failure is not None and failure.kind == "relay_exited", failure
            assert said in failure.message and PASSPHRASE not in failure.message, failure
        finally:
            relay.close()
        assert not relay.alive
    finally:
        if rx is not None:
            rx.terminate()
            rx.wait(timeout=10)


def test_a_receiver_that_goes_away_ends_the_relay(tmp_path):
    port = free_port()
    with open(tmp_path / "got.ts", "wb") as out:
        rx = receiver(port, out)
    try:
        time.sleep(0.5)
        relay = Relay(f"srt://127.0.0.1:{port}?passphrase={PASSPHRASE}", RelaySettings(rw_timeout_s=1,
                                                                                     close_timeout_s=1), fmt="mpegts")
        try:
            for _ in range(20):
                relay.write(b"\x47" + bytes(187))
                time.sleep(0.05)
            assert relay.failure is None, relay.failure
            rx.kill()  # no goodbye: the relay only hears silence
            failure = wait_failure(relay)
            assert failure is not None and failure.kind in ("relay_exited", "stalled"), failure
        finally:
            relay.close()
        assert not relay.alive
    finally:
        rx.kill()
        rx.wait(timeout=10)
