"""The network half of an output: a child process that publishes the FLV (rtmp) or MPEG-TS (srt,
udp) we mux.

The child is `python -m media_service.media_io.relay_main` (relay_main.py), which hands the bytes
to libavformat's protocols from PyAV's own libraries, so no ffmpeg program is needed. PyAV's wheels
have no srt: srt:// goes to `python -m media_service.media_io.srt_relay` (srt_relay.py, libsrt from
Debian's `libsrt1.5-gnutls`, in the image), and only where libsrt is missing to `ffmpeg -c copy`
from PATH, with the same bounds. Either way the relay only copies: payloads and timestamps are the
ones muxed in this process, and the URL stays off the command line except on ffmpeg's.

Why a child process: PyAV holds the GIL while it opens an RTMP publish and while it writes to the
socket, so a slow server would freeze every thread of the service (and nginx-rtmp's `on_publish`
hook, answered by this same process, would deadlock the handshake).

Why threads around it: the caller is a stream's one output thread, shared by every language, so
it must never wait on one destination. `write` hands the bytes to the child's stdin with a
non-blocking write when nothing is queued, and appends what the pipe does not take to a bounded
in-memory queue; a feeder thread per relay moves the queue into the pipe as it drains, and a reader
thread keeps the child's stderr flowing into a small ring of (redacted) lines that explains a failure.

How a relay fails (the first cause wins, and `failure` says which):
- `stalled`: the queue made no progress for `stall_s`, or grew past `queue_bytes`. The feeder (or
  the writer, for the size bound) kills the child at once.
- `relay_exited`: the child ended by itself: the server refused, closed, or stopped answering for
  `rw_timeout_s` (libavformat's `rw_timeout`, inherited by the tcp/tls socket under rtmp/rtmps;
  for srt libsrt's connect timeout, send timeout and peer idle timeout: it bounds every connect,
  read and write).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from ..redaction import redact
from ..targets import protocol_whitelist, scheme_of
from ..thread_names import name_native_thread
from .relay_main import URL_ENV, Libav
from .srt_relay import load_libsrt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelaySettings:
    """Bounds of one relay. The defaults keep a stalled destination from costing more than ~5 s."""

    rw_timeout_s: float = 5.0  # libavformat rw_timeout: connect/read/write on the network side
    stall_s: float = 5.0  # queued data not taken by the child for this long -> stalled, killed
    queue_bytes: int = 8 << 20  # queued data beyond this -> stalled, killed (about 20 s at 3 Mb/s)
    close_timeout_s: float = 3.0  # close(): time to hand over what is queued and let the child finish


STDERR_LINES = 20  # the child's stderr lines kept for error messages
_POLL_MS = 200


@dataclass(frozen=True)
class RelayFailure:
    kind: str  # "stalled" | "relay_exited"
    message: str


class RelayStartError(RuntimeError):
    pass


def _ffmpeg_command(url: str, fmt: str, rw_us: str) -> list[str]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        scheme = scheme_of(url)
        need = "libsrt (install Debian 'libsrt1.5-gnutls') or ffmpeg" if scheme == "srt" else "ffmpeg on PATH"
        raise RelayStartError(f"{scheme}:// outputs need {need}: PyAV's libraries have no {scheme} protocol")
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", fmt, "-i", "pipe:0",
            "-map", "0", "-c", "copy", "-copyts", "-rw_timeout", rw_us,
            "-protocol_whitelist", protocol_whitelist(url), "-f", fmt, url]


@functools.lru_cache(maxsize=1)
def libav_output_protocols() -> frozenset[str]:
    """The protocols PyAV's libavformat can write to (what relay_main can publish with)."""
    return frozenset(Libav().output_protocols())


@functools.lru_cache(maxsize=1)
def libsrt_installed() -> bool:
    """True when srt_relay can load libsrt."""
    return load_libsrt() is not None


def relay_command(url: str, fmt: str, settings: RelaySettings) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the child that publishes to `url`: relay_main when PyAV's libraries
    speak the protocol, srt_relay for srt when libsrt is installed, else ffmpeg (RelayStartError
    naming what to install when it is missing too). The first two take the URL in the environment."""
    rw_us = str(int(settings.rw_timeout_s * 1_000_000))
    scheme = scheme_of(url)
    if scheme in libav_output_protocols():
        cmd = [sys.executable, "-m", "media_service.media_io.relay_main", "--rw-timeout-us", rw_us,
               "--protocol-whitelist", protocol_whitelist(url)]
        return cmd, {**os.environ, URL_ENV: url}
    if scheme == "srt" and libsrt_installed():
        cmd = [sys.executable, "-m", "media_service.media_io.srt_relay", "--rw-timeout-us", rw_us]
        return cmd, {**os.environ, URL_ENV: url}
    return _ffmpeg_command(url, fmt, rw_us), dict(os.environ)


class Relay:
    """One relay child (relay_main; srt_relay or ffmpeg for srt), fed from a bounded queue.

    File-like for PyAV (`write` only: not seekable). Thread-safe between the writing thread and
    its own feeder/reader threads; `close` (or `kill`) ends both threads and reaps the child.
    """

    def __init__(self, url: str, settings: RelaySettings | None = None, *, fmt: str = "flv"):
        self.url = url
        self.label = redact(url)
        self.settings = settings or RelaySettings()
        cmd, env = relay_command(url, fmt, self.settings)
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, bufsize=0, env=env)
        except OSError as exc:
            raise RelayStartError(f"cannot start the relay: {exc}") from exc
        self.failure: RelayFailure | None = None
        self.bytes_written = 0  # handed to the child
        self._stderr = collections.deque(maxlen=STDERR_LINES)
        self._cond = threading.Condition()
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._queued = 0
        self._progress_at = time.monotonic()  # last time the queue moved (or became non-empty)
        self._eof = False
        self._fd = self.proc.stdin.fileno()
        os.set_blocking(self._fd, False)
        self._feeder = threading.Thread(target=self._feed, name=f"relay-feed {self.label}", daemon=True)
        self._reader = threading.Thread(target=self._read_stderr, name=f"relay-err {self.label}", daemon=True)
        self._reader.start()
        self._feeder.start()

    # ------------------------------------------------------------ writer side (never blocks)

    def write(self, data) -> int:
        """Hand `data` to the child (at once, or queued). After a failure it is dropped (the output is dead)."""
        n = len(data)
        with self._cond:
            if self.failure is not None or self._eof:
                return n
            if not self._chunks:
                # The usual case: the child keeps up, the pipe has room. Writing here (non-blocking)
                # spares a feeder wake-up per packet; what does not fit is queued for the feeder.
                done = self._write_now(data)
                if done == n:
                    return n
                data = memoryview(data)[done:]
            if self._queued + len(data) > self.settings.queue_bytes:
                stalled = True
            else:
                stalled = False
                if not self._chunks:
                    self._progress_at = time.monotonic()
                self._chunks.append(memoryview(bytes(data)))
                self._queued += len(data)
                self._cond.notify()
        if stalled:
            self._stall(f"more than {self.settings.queue_bytes} bytes waiting for the relay")
        return n

    def _write_now(self, data) -> int:
        """Bytes of `data` the pipe took at once (0 when full or broken: the feeder then finds out
        why, and reports a dead child). Called with the lock held and nothing queued."""
        try:
            n = os.write(self._fd, data)
        except OSError:
            return 0
        self._progress_at = time.monotonic()
        self.bytes_written += n
        return n

    def stderr_tail(self) -> str:
        return " | ".join(self._stderr)

    # ------------------------------------------------------------ lifecycle

    def kill(self) -> None:
        """Kill the child now (idempotent); the threads then end by themselves."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Hand over what is queued, let the child finish; kill it after `close_timeout_s`. Reaps it."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        deadline = time.monotonic() + self.settings.close_timeout_s
        self._feeder.join(max(0.0, deadline - time.monotonic()))
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("relay to %s did not finish in %.0f s: killed", self.label, self.settings.close_timeout_s)
            self.kill()
            self.proc.wait()
        self._feeder.join()
        self._reader.join()

    @property
    def alive(self) -> bool:
        """True while any part of the relay (process or thread) is still running."""
        return self.proc.poll() is None or self._feeder.is_alive() or self._reader.is_alive()

    # ------------------------------------------------------------ internals

    def _fail(self, kind: str, message: str) -> bool:
        with self._cond:
            if self.failure is not None:
                return False
            self.failure = RelayFailure(kind, message)
            self._chunks.clear()
            self._queued = 0
            self._cond.notify_all()
        log.info("relay to %s: %s", self.label, message)
        return True

    def _stall(self, why: str) -> None:
        if self._fail("stalled", f"relay to {self.label} stalled ({why}): killed"):
            self.kill()

    def _feed(self) -> None:
        name_native_thread("relay-feed")
        fd = self.proc.stdin.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._eof and self.failure is None:
                        self._cond.wait()
                    if self.failure is not None or not self._chunks:
                        return  # failed, or closing with everything handed over
                    chunk = self._chunks[0]
                if not poller.poll(_POLL_MS):
                    if time.monotonic() - self._progress_at > self.settings.stall_s:
                        self._stall(f"nothing taken for {self.settings.stall_s:g} s")
                    continue
                try:
                    n = os.write(fd, chunk)
                except BlockingIOError:
                    continue
                except OSError:  # EPIPE: the child is gone; the reader reports why
                    self._reader.join(self.settings.close_timeout_s)
                    self._fail("relay_exited", f"relay to {self.label} closed its input: {self.stderr_tail()}")
                    return
                with self._cond:
                    self._progress_at = time.monotonic()
                    self.bytes_written += n
                    if self.failure is None and self._chunks and self._chunks[0] is chunk:
                        self._queued -= n
                        if n == len(chunk):
                            self._chunks.popleft()
                        else:
                            self._chunks[0] = chunk[n:]
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def _read_stderr(self) -> None:
        name_native_thread("relay-err")
        fd = self.proc.stderr.fileno()
        pending = b""
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._keep_line(line)
            if len(pending) > 4096:
                self._keep_line(pending)
                pending = b""
        if pending:
            self._keep_line(pending)
        self.proc.stderr.close()
        rc = self.proc.wait()
        with self._cond:
            normal_end = self._eof and rc == 0
        if not normal_end:
            self._fail("relay_exited", f"relay to {self.label} exited ({rc}): {self.stderr_tail() or 'no message'}")

    def _keep_line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").strip()
        if line:
            self._stderr.append(redact(line[:500]))
