"""A small fake of MediaMTX's control API on 127.0.0.1 (`GET /v3/paths/list`, paginated like the
real one), for tests of what media-service does with the path list (reconcile)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from .loopback_http import LoopbackHttpServer, QuietHandler


class FakeMediaMtxApi:
    """Serves `items` (name -> ready) as MediaMTX does, two items per page; `status` can fail it."""

    def __init__(self):
        self.items: dict[str, bool] = {}
        self.status = 200
        self.requests = 0
        fake = self

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                fake.requests += 1
                url = urlsplit(self.path)
                if url.path != "/v3/paths/list" or fake.status != 200:
                    self.send_response(404 if url.path != "/v3/paths/list" else fake.status)
                    self.end_headers()
                    return
                page = int(parse_qs(url.query).get("page", ["0"])[0])
                names = sorted(fake.items)
                body = {"pageCount": max(1, (len(names) + 1) // 2),
                        "items": [{"name": n, "ready": fake.items[n]} for n in names[page * 2:page * 2 + 2]]}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = LoopbackHttpServer(Handler)
        self.url = self.http.url

    def close(self):
        self.http.close()
