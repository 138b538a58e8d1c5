"""livedub_testkit.tcp_proxy with real loopback sockets: an echo server behind the proxy."""

from __future__ import annotations

import socket
import threading

import pytest
from livedub_testkit.polling import wait_for
from livedub_testkit.tcp_proxy import CHUNK, TcpProxy

pytestmark = pytest.mark.timeout(30)


class EchoServer:
    """Echoes every byte back; counts connections and bytes received."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = 0
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _echo(self, conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def close(self):
        self.sock.close()


@pytest.fixture
def echo():
    srv = EchoServer()
    yield srv
    srv.close()


def recv_exactly(sock, n, timeout=5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def nothing_arrives(sock, within=0.5) -> bool:
    """True when the connection stays open and silent for `within` seconds."""
    sock.settimeout(within)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return True
    raise AssertionError(f"expected silence, got {data!r}")


def test_passthrough_forwards_both_ways(echo):
    with TcpProxy(echo.port) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as c:
        payload = bytes(range(256)) * 1000
        c.sendall(payload)
        assert recv_exactly(c, len(payload)) == payload
        assert proxy.accepted == 1 and proxy.active == 1
        want = {"up": len(payload), "down": len(payload)}  # counted just after the send that delivered it
        wait_for(lambda: proxy.forwarded == want, f"{want} forwarded", timeout=2, poll=0.01)


def test_pause_holds_the_connection_open_and_forwards_nothing_until_resumed(echo):
    with TcpProxy(echo.port) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as c:
        c.sendall(b"before")
        assert recv_exactly(c, 6) == b"before"
        proxy.pause()
        c.sendall(b"during")
        assert nothing_arrives(c, 0.5)  # neither an answer nor an EOF: a stall
        assert echo.received == 6
        late = socket.create_connection(("127.0.0.1", proxy.port))  # new connections are held too
        late.sendall(b"late")
        assert nothing_arrives(late, 0.2)
        proxy.passthrough()
        assert recv_exactly(c, 6) == b"during"
        assert recv_exactly(late, 4) == b"late"
        late.close()


class HandClock:
    """The throttle's clock, moved only by the test: what passes is counted in bytes a second of
    this clock, so the check does not depend on how fast the machine is."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_throttle_bounds_the_rate(echo):
    clock = HandClock()
    with TcpProxy(echo.port, clock=clock) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as c:
        proxy.throttle(40_000)
        payload = bytes(range(256)) * 400  # 102_400 bytes, none alike in a row

        def forwarded(n: int) -> None:
            want = {"up": n, "down": n}
            wait_for(lambda: proxy.forwarded == want, f"{want} forwarded", timeout=5, poll=0.01)

        c.sendall(payload)
        assert nothing_arrives(c, 0.3), "bytes went through while the throttle's clock stood still"
        assert proxy.forwarded == {"up": 0, "down": 0}
        clock.advance(0.5)  # half a second: 20 kB each way
        assert recv_exactly(c, 20_000) == payload[:20_000]
        forwarded(20_000)
        clock.advance(10.0)  # a long pause: at most a quarter second (plus one chunk) is banked
        banked = 10_000 + CHUNK
        assert recv_exactly(c, banked) == payload[20_000:20_000 + banked]
        forwarded(20_000 + banked)
        clock.advance(1.0)  # 40 kB more than the 6864 bytes left
        assert recv_exactly(c, len(payload) - 20_000 - banked) == payload[20_000 + banked:]
        forwarded(len(payload))
        proxy.throttle(None)  # lifted: everything passes with the clock standing still
        c.sendall(payload)
        assert recv_exactly(c, len(payload)) == payload


def test_reset_sends_rst_to_every_connection(echo):
    with TcpProxy(echo.port) as proxy:
        clients = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(3)]
        for c in clients:
            c.sendall(b"hi")
            assert recv_exactly(c, 2) == b"hi"
        assert proxy.reset() == 3
        for c in clients:
            c.settimeout(2)
            with pytest.raises(ConnectionResetError):
                c.recv(1)
            c.close()
        assert proxy.active == 0 and proxy.resets == 3
        proxy.refuse_new(True)
        with socket.create_connection(("127.0.0.1", proxy.port)) as c:
            c.settimeout(2)
            with pytest.raises(ConnectionResetError):
                c.recv(1)
        proxy.refuse_new(False)
        with socket.create_connection(("127.0.0.1", proxy.port)) as c:  # and it serves again
            c.sendall(b"ok")
            assert recv_exactly(c, 2) == b"ok"


def test_black_hole_reads_everything_and_forwards_nothing(echo):
    with TcpProxy(echo.port) as proxy:
        proxy.black_hole()
        with socket.create_connection(("127.0.0.1", proxy.port)) as c:
            c.sendall(b"y" * 500_000)  # far more than the socket buffers: the proxy reads it all
            assert nothing_arrives(c, 0.5)
            wait_for(lambda: proxy.discarded >= 500_000, "500 kB read", timeout=5, poll=0.02)
            assert proxy.discarded == 500_000
            assert echo.connections == 0 and echo.received == 0  # never connected upstream


def test_stop_closes_every_connection_and_joins_its_thread(echo):
    proxy = TcpProxy(echo.port).start()
    c = socket.create_connection(("127.0.0.1", proxy.port))
    c.sendall(b"a")
    assert recv_exactly(c, 1) == b"a"
    proxy.pause()
    proxy.stop()
    assert not proxy._thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == f"tcp-proxy:{proxy.port}"]
    c.settimeout(2)
    assert c.recv(1) == b""  # closed, not left hanging
    c.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
