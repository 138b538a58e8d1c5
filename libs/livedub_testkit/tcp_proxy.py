"""A TCP proxy on 127.0.0.1 for fault-injection tests: pass, pause, throttle, reset, black-hole.

``TcpProxy(upstream_port)`` listens on a free loopback port and forwards every connection to
``127.0.0.1:upstream_port``. One thread owned by the object runs every connection (``select`` over
non-blocking sockets); what it does can be changed at run time:

* ``passthrough()``: forward both ways (at most ``throttle(bytes_per_s)`` per direction and
  connection when a rate is set; ``throttle(None)`` lifts it);
* ``pause()``: forward nothing and read nothing, but keep every connection open (a network stall,
  not a close: the peers' data waits in the kernel's buffers, their writes block once those are
  full). New connections are accepted and connected upstream, then held the same way;
* ``black_hole()``: accept and read everything from both sides, forward nothing; new connections
  are never connected upstream;
* ``reset()``: every open connection is closed with an RST (``SO_LINGER`` 0) on both sides, now;
  ``refuse_new(True)`` also resets each new connection as soon as it is accepted.

``stop()`` (or leaving the ``with`` block) closes the listener and every connection and joins the
thread. Counters: ``accepted``, ``active``, ``forwarded`` (bytes per direction), ``discarded``.
The throttle's allowance grows with ``clock`` (``time.monotonic`` unless a test passes its own).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["TcpProxy"]

CHUNK = 65536
BUFFER_LIMIT = 256 * 1024  # per direction: reading stops while this much waits to be written
TICK_S = 0.02

PASS, PAUSE, BLACK_HOLE = "pass", "pause", "black_hole"


@dataclass
class _Pipe:
    """One proxied connection: the client's socket and the upstream's (None when black-holed)."""

    client: socket.socket
    upstream: socket.socket | None
    to_upstream: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    allowance: dict = field(default_factory=lambda: {"up": 0.0, "down": 0.0})


def _rst(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


class TcpProxy:
    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", port: int = 0,
                 connect_timeout_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        """`clock` times the throttle only: a test that moves its own clock by hand checks the
        rate as bytes per second of that clock, whatever the machine's speed."""
        self.upstream = (upstream_host, upstream_port)
        self.clock = clock
        self.connect_timeout_s = connect_timeout_s
        self.mode = PASS
        self.rate: float | None = None  # bytes/s per direction and connection (None: unlimited)
        self.refusing = False
        self.accepted = 0
        self.forwarded = {"up": 0, "down": 0}
        self.discarded = 0
        self.resets = 0
        self._pipes: list[_Pipe] = []
        self._lock = threading.Lock()
        self._reset_now = False
        self._gen = self._seen = 0  # behaviour changes asked for / taken up by the proxy thread
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"tcp-proxy:{self.port}", daemon=True)
        self._started = False

    # ------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._pipes)

    def start(self) -> TcpProxy:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def _apply(self, **changes) -> None:
        """Change the behaviour; returns once the proxy thread works by it (a loop round that
        began under the old one has ended), so that no byte is handled the old way afterwards."""
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            self._gen += 1
            gen = self._gen
        self._wake()
        deadline = time.monotonic() + 5.0
        while self._seen < gen and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.002)

    def passthrough(self) -> None:
        self._apply(mode=PASS)

    def pause(self) -> None:
        self._apply(mode=PAUSE)

    def black_hole(self) -> None:
        self._apply(mode=BLACK_HOLE)

    def throttle(self, bytes_per_s: float | None) -> None:
        self._apply(rate=float(bytes_per_s) if bytes_per_s else None)

    def refuse_new(self, on: bool = True) -> None:
        self._apply(refusing=on)

    def reset(self, timeout: float = 5.0) -> int:
        """RST every open connection (both sides); returns how many were reset."""
        with self._lock:
            n = len(self._pipes)
            self._reset_now = True
        self._wake()
        deadline = time.monotonic() + timeout
        while self._reset_now and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.005)
        return n

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        if self._started:
            self._thread.join(timeout)
        else:
            self._teardown()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # ------------------------------------------------------------ the loop (proxy thread)

    def _run(self) -> None:
        last = self.clock()
        try:
            while not self._stopping.is_set():
                with self._lock:
                    mode, rate, refusing = self.mode, self.rate, self.refusing
                    reset_now, self._seen = self._reset_now, self._gen
                if reset_now:
                    for pipe in self._take_all():
                        _rst(pipe.client)
                        _rst(pipe.upstream)
                        self.resets += 1
                    self._reset_now = False
                now = self.clock()
                if rate is not None:
                    for pipe in list(self._pipes):
                        for d in ("up", "down"):  # at most a quarter second of bytes banked
                            pipe.allowance[d] = min(rate / 4 + CHUNK, pipe.allowance[d] + rate * (now - last))
                last = now
                rlist, wlist = [self._listener, self._wake_r], []
                for pipe in self._pipes:
                    if mode == PAUSE:
                        continue
                    if mode == BLACK_HOLE or len(pipe.to_upstream) < BUFFER_LIMIT:
                        rlist.append(pipe.client)
                    if pipe.upstream is not None and (mode == BLACK_HOLE or len(pipe.to_client) < BUFFER_LIMIT):
                        rlist.append(pipe.upstream)
                    if mode == PASS:
                        if pipe.to_upstream and pipe.upstream is not None and self._may_send(pipe, "up", rate):
                            wlist.append(pipe.upstream)
                        if pipe.to_client and self._may_send(pipe, "down", rate):
                            wlist.append(pipe.client)
                readable, writable, _ = select.select(rlist, wlist, [], TICK_S)
                if self._wake_r in readable:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                if self._listener in readable:
                    self._accept(mode, refusing)
                for sock in readable:
                    if sock not in (self._listener, self._wake_r):
                        self._read(sock, mode)
                for sock in writable:
                    self._write(sock, rate)
        finally:
            self._teardown()

    def _may_send(self, pipe: _Pipe, direction: str, rate: float | None) -> bool:
        return rate is None or pipe.allowance[direction] >= 1

    def _take_all(self) -> list[_Pipe]:
        with self._lock:
            pipes, self._pipes = self._pipes, []
        return pipes

    def _teardown(self) -> None:
        for pipe in self._take_all():
            _close(pipe.client)
            _close(pipe.upstream)
        for sock in (self._listener, self._wake_r, self._wake_w):
            _close(sock)

    def _accept(self, mode: str, refusing: bool) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        self.accepted += 1
        if refusing:
            _rst(client)
            self.resets += 1
            return
        upstream = None
        if mode != BLACK_HOLE:
            try:
                upstream = socket.create_connection(self.upstream, timeout=self.connect_timeout_s)
            except OSError:
                _rst(client)  # nothing to forward to: the client sees the refusal as a reset
                return
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._pipes.append(_Pipe(client, upstream))

    def _pipe_of(self, sock: socket.socket) -> _Pipe | None:
        for pipe in self._pipes:
            if sock is pipe.client or sock is pipe.upstream:
                return pipe
        return None

    def _drop(self, pipe: _Pipe) -> None:
        with self._lock:
            if pipe in self._pipes:
                self._pipes.remove(pipe)
        _close(pipe.client)
        _close(pipe.upstream)

    def _read(self, sock: socket.socket, mode: str) -> None:
        pipe = self._pipe_of(sock)
        if pipe is None:
            return
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pipe)  # reset by a peer: the other side is closed too
            return
        if not data:
            if mode == BLACK_HOLE:
                self._drop(pipe)
            else:  # EOF: pass on what is buffered, then close both sides
                self._flush_and_drop(pipe)
            return
        if mode == BLACK_HOLE:
            self.discarded += len(data)
        elif sock is pipe.client:
            pipe.to_upstream += data
        else:
            pipe.to_client += data

    def _flush_and_drop(self, pipe: _Pipe) -> None:
        for sock, buf in ((pipe.upstream, pipe.to_upstream), (pipe.client, pipe.to_client)):
            if sock is not None and buf:
                with contextlib.suppress(OSError):
                    sock.setblocking(True)
                    sock.settimeout(1.0)
                    sock.sendall(bytes(buf))
        self._drop(pipe)

    def _write(self, sock: socket.socket, rate: float | None) -> None:
        pipe = self._pipe_of(sock)
        if pipe is None:
            return
        direction = "up" if sock is pipe.upstream else "down"
        buf = pipe.to_upstream if direction == "up" else pipe.to_client
        n = len(buf) if rate is None else min(len(buf), int(pipe.allowance[direction]))
        try:
            sent = sock.send(bytes(buf[:n]))
        except BlockingIOError:
            return
        except OSError:
            self._drop(pipe)
            return
        del buf[:sent]
        self.forwarded[direction] += sent
        if rate is not None:
            pipe.allowance[direction] -= sent
