"""An HTTP stand-in on 127.0.0.1: a request handler class served from a thread, for the fakes of
HTTP services that tests talk to (MediaMTX's API, a hook entry point, a listener that must stay
silent). The fakes hold only their handler; starting, the free port and the clean stop live here.

    with LoopbackHttpServer(Handler) as http:
        urllib.request.urlopen(http.url + "/v1/x")
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["LoopbackHttpServer", "QuietHandler"]


class QuietHandler(BaseHTTPRequestHandler):
    """A handler base that keeps http.server's per-request access log off the test's stderr."""

    def log_message(self, *args) -> None:
        pass


class LoopbackHttpServer:
    """Serves `handler` (a `BaseHTTPRequestHandler` subclass) on a free loopback port from a thread
    this object owns, one thread a request. `close()`, or leaving the `with` block, stops serving,
    closes the listening socket and joins the thread; it may be called more than once."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port: int = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"loopback-http:{self.port}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()  # returns at once when serving has already stopped
        self.server.server_close()
        self._thread.join()

    def __enter__(self) -> LoopbackHttpServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
