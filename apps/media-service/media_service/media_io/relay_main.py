"""The relay's child process: copies the muxed stream from stdin to the destination through
libavformat's own protocols (rtmp, rtmps, udp, ...), from the libraries that PyAV ships.

    LIVEDUB_RELAY_URL=rtmp://... python -m media_service.media_io.relay_main \
        --rw-timeout-us 5000000 --protocol-whitelist rtmp,tcp

The stream is already muxed in the service (FLV for rtmp, MPEG-TS for udp), and libavformat's
protocols take it as bytes: the rtmp protocol reads the FLV tags from the bytes written to it
(this is how the ffmpeg CLI publishes FLV to rtmp too). So the relay neither demuxes nor remuxes,
and the image needs no ffmpeg program: only the libavformat that PyAV already brings.

libavformat is reached with ctypes (PyAV's own output path opens URLs without options, so it
cannot bound the network with `rw_timeout` nor restrict protocols with `protocol_whitelist`).
ctypes releases the GIL in every call, and this is a process of its own anyway (relay.py says why).

The URL comes in the environment, not on the command line, because it may carry a stream key or
credentials and every local user can read a process's command line.

Exit status 0: stdin ended and everything was handed to the destination and closed. Otherwise 1,
with one line on stderr saying what failed (libavformat's own error lines come before it).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from collections.abc import Callable

URL_ENV = "LIVEDUB_RELAY_URL"
AVIO_FLAG_WRITE = 2
AV_LOG_ERROR = 16
CHUNK = 1 << 16


class _AVIOContext(ctypes.Structure):
    """The leading public fields of libavformat's AVIOContext (avio.h), up to the ones read here."""

    _fields_ = [
        ("av_class", ctypes.c_void_p),
        ("buffer", ctypes.c_void_p),
        ("buffer_size", ctypes.c_int),
        ("buf_ptr", ctypes.c_void_p),
        ("buf_end", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("read_packet", ctypes.c_void_p),
        ("write_packet", ctypes.c_void_p),
        ("seek", ctypes.c_void_p),
        ("pos", ctypes.c_int64),
        ("eof_reached", ctypes.c_int),
        ("error", ctypes.c_int),
        ("write_flag", ctypes.c_int),
    ]


class RelayError(RuntimeError):
    pass


def _loaded_library(prefix: str) -> str:
    """Path of a shared library this process has loaded (PyAV's, once `av` is imported)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rstrip("\n").split(" ")[-1]
            if path.startswith("/") and os.path.basename(path).startswith(prefix + "."):
                return path
            if path.startswith("/") and os.path.basename(path).startswith(prefix + "-"):  # auditwheel's names
                return path
    raise RelayError(f"{prefix} is not loaded: is PyAV installed?")


class Libav:
    """The few libavformat/libavutil calls the relay makes, on PyAV's copies of those libraries."""

    def __init__(self):
        import av  # noqa: F401 - loads PyAV's libavformat and libavutil into this process

        self.fmt = ctypes.CDLL(_loaded_library("libavformat"))
        self.util = ctypes.CDLL(_loaded_library("libavutil"))
        ctx = ctypes.POINTER(_AVIOContext)
        self.fmt.avio_open2.argtypes = [ctypes.POINTER(ctx), ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                        ctypes.POINTER(ctypes.c_void_p)]
        self.fmt.avio_write.argtypes = [ctx, ctypes.c_char_p, ctypes.c_int]
        self.fmt.avio_write.restype = None
        self.fmt.avio_flush.argtypes = [ctx]
        self.fmt.avio_flush.restype = None
        self.fmt.avio_closep.argtypes = [ctypes.POINTER(ctx)]
        self.fmt.avio_enum_protocols.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        self.fmt.avio_enum_protocols.restype = ctypes.c_char_p
        self.util.av_dict_set.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_int]
        self.util.av_dict_free.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.util.av_strerror.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        self.util.av_log_set_level.argtypes = [ctypes.c_int]
        self.fmt.avformat_network_init()

    def strerror(self, code: int) -> str:
        buf = ctypes.create_string_buffer(256)
        self.util.av_strerror(code, buf, len(buf))
        return buf.value.decode(errors="replace")

    def output_protocols(self) -> set[str]:
        opaque, names = ctypes.c_void_p(None), set()
        while (name := self.fmt.avio_enum_protocols(ctypes.byref(opaque), 1)) is not None:
            names.add(name.decode())
        return names

    def open(self, url: str, options: dict[str, str]):
        opts = ctypes.c_void_p(None)
        for key, value in options.items():
            self.util.av_dict_set(ctypes.byref(opts), key.encode(), value.encode(), 0)
        pb = ctypes.POINTER(_AVIOContext)()
        try:
            err = self.fmt.avio_open2(ctypes.byref(pb), url.encode(), AVIO_FLAG_WRITE, None, ctypes.byref(opts))
        finally:
            self.util.av_dict_free(ctypes.byref(opts))
        if err < 0:
            raise RelayError(f"cannot open the destination: {self.strerror(err)}")
        # What this module knows of the struct must match the library: a writing context whose
        # buffer starts empty. Anything else means another layout: fail loudly, never misread it.
        head = pb.contents
        if head.write_flag != 1 or head.buffer_size <= 0 or head.buf_ptr != head.buffer:
            self.fmt.avio_closep(ctypes.byref(pb))
            raise RelayError("unexpected AVIOContext layout in this libavformat")
        return pb

    def write(self, pb, data: bytes) -> None:
        self.fmt.avio_write(pb, data, len(data))
        self.fmt.avio_flush(pb)  # no batching: the stream is live
        if pb.contents.error < 0:
            raise RelayError(f"writing to the destination failed: {self.strerror(pb.contents.error)}")

    def close(self, pb) -> None:
        err = self.fmt.avio_closep(ctypes.byref(pb))
        if err < 0:
            raise RelayError(f"closing the destination failed: {self.strerror(err)}")


def relay(url: str, rw_timeout_us: int, protocol_whitelist: str, source: int = 0) -> None:
    libav = Libav()
    libav.util.av_log_set_level(AV_LOG_ERROR)
    pb = libav.open(url, {"rw_timeout": str(rw_timeout_us), "protocol_whitelist": protocol_whitelist})
    try:
        while data := os.read(source, CHUNK):
            libav.write(pb, data)
    except BaseException:
        libav.fmt.avio_closep(ctypes.byref(pb))
        raise
    libav.close(pb)


def run_child(label: str, publish: Callable[[str], None], errors: tuple[type[Exception], ...]) -> int:
    """What every relay child does with its destination and its failures (relay.py reads them):
    the URL comes from ``URL_ENV`` (never argv: it may hold credentials), and a failure is one line
    on stderr and exit status 1 (2: no URL)."""
    url = os.environ.get(URL_ENV)
    if not url:
        print(f"{label}: {URL_ENV} is not set", file=sys.stderr)
        return 2
    try:
        publish(url)
    except errors as exc:
        print(f"{label}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay_main", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rw-timeout-us", type=int, required=True)
    parser.add_argument("--protocol-whitelist", required=True)
    args = parser.parse_args(argv)
    return run_child("relay", lambda url: relay(url, args.rw_timeout_us, args.protocol_whitelist),
                     (RelayError, OSError))


if __name__ == "__main__":
    sys.exit(main())
