"""The relay's child process for srt:// outputs: copies the muxed MPEG-TS from stdin to an SRT
listener (this side calls) through libsrt, Debian's `libsrt1.5-gnutls`, reached with ctypes.

    LIVEDUB_RELAY_URL=srt://host:port?streamid=... python -m media_service.media_io.srt_relay \
        --rw-timeout-us 5000000

Why not relay_main: PyAV's wheel libraries are built without libsrt. Why not `srt-live-transmit`
(Debian `srt-tools`): it takes the URL (passphrase, streamid) on its command line, never exits at
the end of its input, and drops what it reads while the connection is not up or the link is slow,
so a stalled receiver would never show as one. Here the URL comes in the environment (as for
relay_main) and every send blocks (at most the rw timeout), so relay.py's stall bounds see a slow
receiver as they do for rtmp.

The URL's options are read as FFmpeg's srt protocol reads them (the form the API documents, the
same the ffmpeg fallback gets): `latency`, `rcvlatency`, `peerlatency` and `timeout` in
microseconds, `connect_timeout` in milliseconds, `streamid`, `passphrase`, `pbkeylen`; values as
FFmpeg's `av_find_info_tag` gives them (`+` is a space), `streamid` also percent-decoded as FFmpeg
decodes it. `mode` is caller (targets.py refuses anything else). `timeout` (else `--rw-timeout-us`)
bounds the connect unless `connect_timeout` is given, every send, and the peer's silence.

Exit status 0: stdin ended and the receiver acknowledged everything (or the rw timeout passed
waiting for that). Otherwise 1, with one line on stderr saying what failed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import struct
import sys
import time
from urllib.parse import unquote_plus, urlsplit

from .relay_main import run_child

# libsrt's SONAMEs: Debian's GnuTLS build first (what the image installs), then the others.
LIBSRT_NAMES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5")
# SRT_SOCKOPT values (srt.h, libsrt 1.5).
SRTO_SNDTIMEO = 13
SRTO_LATENCY = 23
SRTO_PASSPHRASE = 26
SRTO_PBKEYLEN = 27
SRTO_CONNTIMEO = 36
SRTO_RCVLATENCY = 43
SRTO_PEERLATENCY = 44
SRTO_STREAMID = 46
SRTO_TRANSTYPE = 50
SRTO_PEERIDLETIMEO = 55
SRTT_LIVE = 0
PAYLOAD = 1316  # 7 MPEG-TS packets: libsrt's live-mode payload size
_DRAIN_POLL_S = 0.05
_DELIVERY_MARGIN_S = 0.2  # beyond the receiver's latency: its clock drift and scheduling


class SrtError(RuntimeError):
    pass


def load_libsrt() -> ctypes.CDLL | None:
    """libsrt from the system's library path, or None when no build of it is installed."""
    for name in LIBSRT_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _info_tag(value: str) -> str:
    return value.replace("+", " ")  # what FFmpeg's av_find_info_tag does to a value


def srt_options(url: str, rw_timeout_us: int) -> tuple[str, int, dict[int, int | bytes]]:
    """(host, port, {SRTO_*: value}) for `url`, its options read with FFmpeg's units."""
    parts = urlsplit(url)
    if parts.scheme != "srt" or not parts.hostname or not parts.port:
        raise SrtError("the destination is not srt://host:port")
    query = {}
    for pair in parts.query.split("&"):
        key, sep, value = pair.partition("=")
        if key and sep:
            query[key] = value
    if query.get("mode", "caller") != "caller":
        raise SrtError("only srt caller mode is supported")
    try:
        rw_ms = max(1, int(query.get("timeout", rw_timeout_us)) // 1000)
        opts: dict[int, int | bytes] = {
            SRTO_TRANSTYPE: SRTT_LIVE,
            SRTO_CONNTIMEO: int(query.get("connect_timeout", rw_ms)),
            SRTO_SNDTIMEO: rw_ms,
            SRTO_PEERIDLETIMEO: rw_ms,
        }
        for key, opt in (("latency", SRTO_LATENCY), ("rcvlatency", SRTO_RCVLATENCY),
                         ("peerlatency", SRTO_PEERLATENCY)):
            if key in query:
                opts[opt] = int(query[key]) // 1000
        if "pbkeylen" in query:
            opts[SRTO_PBKEYLEN] = int(query["pbkeylen"])
    except ValueError as exc:
        raise SrtError(f"an srt option is not a number: {exc}") from None
    if "streamid" in query:
        opts[SRTO_STREAMID] = unquote_plus(query["streamid"]).encode()
    if "passphrase" in query:
        opts[SRTO_PASSPHRASE] = _info_tag(query["passphrase"]).encode()
    return parts.hostname, parts.port, opts


def _sockaddr(host: str, port: int) -> bytes:
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_pton(family, addr[0]) + bytes(8)
    return (struct.pack("=H", family) + struct.pack("!HI", port, 0) + socket.inet_pton(family, addr[0])
            + struct.pack("=I", addr[3]))


class Srt:
    """One caller socket of libsrt in live mode."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.srt_getlasterror_str.restype = ctypes.c_char_p
        lib.srt_setsockflag.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        lib.srt_connect.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.srt_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.srt_getsockflag.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        lib.srt_getsndbuffer.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_size_t),
                                         ctypes.POINTER(ctypes.c_size_t)]
        if lib.srt_startup() < 0:
            raise SrtError(f"libsrt did not start: {self.last_error()}")
        self.sock = lib.srt_create_socket()
        if self.sock < 0:
            raise SrtError(f"cannot create an srt socket: {self.last_error()}")

    def last_error(self) -> str:
        return (self.lib.srt_getlasterror_str() or b"").decode(errors="replace")

    def set(self, opt: int, value: int | bytes) -> None:
        if isinstance(value, bytes):
            buf, size = ctypes.create_string_buffer(value, len(value)), len(value)
        else:
            buf, size = ctypes.c_int(value), ctypes.sizeof(ctypes.c_int)
        if self.lib.srt_setsockflag(self.sock, opt, ctypes.byref(buf), size) < 0:
            raise SrtError(f"srt option {opt} refused: {self.last_error()}")

    def connect(self, host: str, port: int) -> None:
        addr = _sockaddr(host, port)
        if self.lib.srt_connect(self.sock, addr, len(addr)) < 0:
            raise SrtError(f"cannot connect: {self.last_error()}")

    def send(self, data: bytes) -> None:
        if self.lib.srt_send(self.sock, data, len(data)) < 0:
            raise SrtError(f"sending failed: {self.last_error()}")

    def peer_latency_s(self) -> float:
        value, size = ctypes.c_int(0), ctypes.c_int(ctypes.sizeof(ctypes.c_int))
        if self.lib.srt_getsockflag(self.sock, SRTO_PEERLATENCY, ctypes.byref(value), ctypes.byref(size)) < 0:
            return 0.0
        return value.value / 1000

    def drain(self, timeout_s: float) -> None:
        """Wait until the receiver has acknowledged what was sent and has had its latency to hand
        it on: closing discards what the sender still holds, and the receiver drops what its
        latency buffer still holds when the connection closes."""
        blocks, nbytes = ctypes.c_size_t(0), ctypes.c_size_t(0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.lib.srt_getsndbuffer(self.sock, ctypes.byref(blocks), ctypes.byref(nbytes)) < 0 or not blocks.value:
                break
            time.sleep(_DRAIN_POLL_S)
        time.sleep(max(0.0, min(self.peer_latency_s() + _DELIVERY_MARGIN_S, deadline - time.monotonic())))

    def close(self) -> None:
        self.lib.srt_close(self.sock)
        self.lib.srt_cleanup()


def relay(url: str, rw_timeout_us: int, source: int = 0) -> None:
    lib = load_libsrt()
    if lib is None:
        raise SrtError("libsrt is not installed (Debian: libsrt1.5-gnutls)")
    host, port, opts = srt_options(url, rw_timeout_us)
    srt = Srt(lib)
    try:
        for opt, value in opts.items():
            srt.set(opt, value)
        srt.connect(host, port)
        pending = b""
        while data := os.read(source, 1 << 16):
            pending += data
            cut = len(pending) - len(pending) % PAYLOAD
            for at in range(0, cut, PAYLOAD):
                srt.send(pending[at:at + PAYLOAD])
            pending = pending[cut:]
        if pending:
            srt.send(pending)
        srt.drain(opts[SRTO_SNDTIMEO] / 1000)
    finally:
        srt.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="srt_relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rw-timeout-us", type=int, required=True)
    args = parser.parse_args(argv)
    return run_child("srt relay", lambda url: relay(url, args.rw_timeout_us), (SrtError, OSError))


if __name__ == "__main__":
    sys.exit(main())
