"""A small blocking client for OpenAI-compatible model servers (vLLM, llama.cpp, Ollama,
faster-whisper-server/speaches, Kokoro-FastAPI, LocalAI, ...), shared by the ASR, MT and TTS engines.

Why not urllib: a call must end within the fragment's deadline, and urllib's timeout bounds each
socket operation, not the call (a server that trickles bytes would hold a worker for minutes).
Here the socket http.client sees gives every send and every read (status line and headers too)
what is left of the call's one budget, and the call fails and closes the socket once it is spent.
Response bodies are capped (``limit``); http.client caps the header lines. No proxy variables are read (a model
server is addressed directly), the key goes in ``Authorization: Bearer`` only and is replaced by
``***`` in every message, and the base URL is shown without userinfo or query.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

MAX_JSON_BYTES = 2 * 1024 * 1024
MAX_AUDIO_BYTES = 64 * 1024 * 1024


def safe_url(url: str) -> str:
    """`url` without userinfo and query (what logs and messages show)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


class OpenAIClient:
    """POSTs to ``<base_url>/<path>``; `base_url` ends in ``/v1`` (added when missing)."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float, engine: str,
                 error: type[Exception]) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise error(f"{engine}: the server URL must be http(s)://host[:port][/v1], got "
                        f"{safe_url(base_url)!r}")
        path = parts.path.rstrip("/")
        self._path = path if path.endswith("/v1") else path + "/v1"
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._key = api_key or ""
        self.timeout, self.engine, self.error = timeout, engine, error
        self.url = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{self._path}"

    def _safe(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _fail(self, message: str, timed_out: bool = False) -> Exception:
        """The engine's error; `timed_out` marks a call that ran out of its budget (the pipeline
        reports that as `deadline_exceeded` when the budget came from the fragment's deadline)."""
        exc = self.error(self._safe(f"{self.engine}: {message}"))
        exc.timed_out = timed_out
        return exc

    def post(self, path: str, body: bytes, content_type: str, *, timeout: float | None = None,
             limit: int = MAX_JSON_BYTES) -> tuple[bytes, str]:
        """(response body, its content type); any failure -> the engine's error. `timeout` (s)
        bounds the whole call: connect, every send, every read (headers included); the body is
        refused past `limit` bytes."""
        budget = self.timeout if timeout is None else min(self.timeout, timeout)
        if budget <= 0:
            raise self._fail("no time left for the request", timed_out=True)
        end = time.monotonic() + budget
        headers = {"Content-Type": content_type, "Accept": "*/*", "Content-Length": str(len(body))}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        conn_cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        kwargs = {"context": ssl.create_default_context()} if self._https else {}
        conn = conn_cls(self._host, self._port, timeout=budget, **kwargs)
        try:
            conn.connect()
            conn.sock = _DeadlineSocket(conn.sock, end)
            conn.request("POST", f"{self._path}/{path.lstrip('/')}", body=body, headers=headers)
            resp = conn.getresponse()
            data = bytearray()
            while True:
                chunk = resp.read1(65536)  # what has arrived: read() would wait for all 64 KiB
                if not chunk:
                    break
                data += chunk
                if len(data) > limit:
                    raise self._fail(f"response larger than {limit} bytes")
        except TimeoutError:
            raise self._fail(f"no answer within {budget:.2f} s", timed_out=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._fail(f"request to {self.url} failed: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        if resp.status >= 400:
            detail = bytes(data[:300]).decode("utf-8", "replace").strip()
            raise self._fail(f"HTTP {resp.status} {resp.reason}: {detail}".rstrip(": "))
        return bytes(data), resp.getheader("Content-Type", "")

    def post_json(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        raw, _ = self.post(path, json.dumps(body).encode("utf-8"), "application/json", timeout=timeout)
        return self._json(raw)

    def post_form(self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes, str]], *,
                  timeout: float | None = None) -> dict[str, Any]:
        """multipart/form-data: `files` maps a field to (file name, bytes, content type)."""
        boundary = uuid.uuid4().hex
        out = bytearray()
        for key, value in fields.items():
            out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n').encode()
        for key, (name, blob, ctype) in files.items():
            out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{name}"\r\n'
                    f"Content-Type: {ctype}\r\n\r\n").encode() + blob + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        raw, _ = self.post(path, bytes(out), f"multipart/form-data; boundary={boundary}", timeout=timeout)
        return self._json(raw)

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError:
            raise self._fail("response is not JSON") from None
        if not isinstance(data, dict):
            raise self._fail("response is not a JSON object")
        return data


class _DeadlineSocket:
    """The connection's socket as http.client uses it (``sendall``, ``makefile``, ``close``):
    every send and every receive gets what is left until `end` as its timeout, and TimeoutError
    once nothing is, so no sequence of slow but not idle operations outlives the call."""

    def __init__(self, sock: socket.socket, end: float) -> None:
        self._sock, self._end = sock, end

    def _arm(self) -> None:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self._sock.settimeout(left)

    def sendall(self, data) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer, nbytes: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        return io.BufferedReader(_Receiver(self))

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str):  # anything else http.client may ask of a socket
        return getattr(self._sock, name)


class _Receiver(io.RawIOBase):
    """The raw stream under the response's buffered reader: reads through the deadline."""

    def __init__(self, sock: _DeadlineSocket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)
