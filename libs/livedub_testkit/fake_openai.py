"""A fake OpenAI-compatible model server on 127.0.0.1 (aiohttp, in its own thread), for testing
the engines that call ``/v1/chat/completions``, ``/v1/audio/transcriptions`` and
``/v1/audio/speech`` without a GPU box: it answers like one, records every request, and
misbehaves on demand (``fault[path] = "error" | "slow" | "garbage" | "trickle" | "drop" | "notjson"``).

    server = FakeOpenAI(api_key="sk-test").start()
    server.url              # http://127.0.0.1:PORT/v1
    server.chat = lambda body: "Buenas noches."      # the answer to a chat request
    server.fault["chat/completions"] = "slow"        # sleeps `slow_s` first
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web


def chat_speech(body: dict) -> str:
    """The speech a chat request asks to translate: what is between <speech> and </speech> in its
    last message (the LLM engine's delimiters), else that message whole."""
    content = body["messages"][-1]["content"]
    found = re.search(r"<speech>(.*?)</speech>", content, re.DOTALL)
    return found.group(1) if found else content


def tone_wav(seconds: float, rate: int = 22050, amplitude: float = 0.3) -> bytes:
    """A WAV of a 220 Hz tone: the fake server's "speech"."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (amplitude * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def raw_wav(rate: int, channels: int = 1, width: int = 2, frames: int = 1600, fmt: int = 1) -> bytes:
    """A PCM WAV whose header says whatever it is told (the wave module refuses to write most of
    these): what a broken or hostile speech server can send."""
    data = b"\x00\x10" * (frames * channels * width // 2)
    block = channels * width
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, (rate * block) & 0xFFFFFFFF, block, 8 * width)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav_seconds(blob: bytes) -> float:
    with wave.open(io.BytesIO(blob)) as w:
        return w.getnframes() / w.getframerate()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any  # the JSON body, or the form fields (files as bytes)


@dataclass
class FakeOpenAI:
    api_key: str | None = None  # when set, requests without `Authorization: Bearer <key>` get 401
    chat: Callable[[dict], str] = lambda body: "Buenas noches y bienvenidos."
    transcribe: Callable[[dict], dict] = lambda form: {"text": "Good evening and welcome."}
    speech: Callable[[dict], bytes] = lambda body: tone_wav(0.05 * len(body.get("input", "")) + 0.2)
    fault: dict[str, str] = field(default_factory=dict)
    slow_s: float = 3.0
    requests: list[Request] = field(default_factory=list)

    def start(self) -> FakeOpenAI:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/v1/{path:.*}", self._handle)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        async def down() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def of(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if request.content_type == "multipart/form-data":
            form = await request.post()
            body: Any = {k: (v.file.read() if hasattr(v, "file") else v) for k, v in form.items()}
        else:
            raw = await request.read()
            body = json.loads(raw) if raw else {}
        self.requests.append(Request(path, dict(request.headers), body))
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "invalid api key"}}, status=401)
        fault = self.fault.get(path, "")
        if fault == "error":
            return web.json_response({"error": {"message": "model crashed"}}, status=500)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault == "garbage":
            return web.Response(text="<html>gateway</html>", content_type="text/html")
        if fault == "notjson" and path != "audio/speech":
            return web.Response(text="{not json", content_type="application/json")
        if fault == "drop":
            request.transport.close()
            return web.Response()
        if fault == "trickle":  # headers at once, then a byte every 0.2 s for 10 s
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            for _ in range(50):
                await resp.write(b" ")
                await asyncio.sleep(0.2)
            return resp
        if path == "chat/completions":
            answer = self.chat(body)
            return web.json_response({"id": "x", "object": "chat.completion", "model": body.get("model"),
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": answer}}]})
        if path == "audio/transcriptions":
            return web.json_response(self.transcribe(body))
        if path == "audio/speech":
            if fault == "notjson":  # audio that is not audio
                return web.Response(body=b"ID3\x03garbage", content_type="audio/mpeg")
            return web.Response(body=self.speech(body), content_type="audio/wav")
        return web.json_response({"error": {"message": f"no route {path}"}}, status=404)
