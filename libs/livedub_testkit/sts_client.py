"""A small Socket.IO client of the sts-service for tests and benchmarks.

It speaks the wire contract through livedub_protocol's models and collects what the server
sends (results, backpressure, errors, connect errors), so tests can assert on them.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import socketio
from livedub_protocol import (
    FRAGMENT_DATA,
    FRAGMENT_PROCESSED,
    NAMESPACE,
    STREAM_BACKPRESSURE,
    STREAM_INIT,
    FragmentProcessed,
    float_to_pcm16,
    parse,
)


class StsTestClient:
    """A Socket.IO client that collects fragment:processed and backpressure events."""

    def __init__(self, url: str, token: str | None):
        self.sio = socketio.AsyncClient(reconnection=False)
        self.url, self.token = url, token
        self.processed: dict[str, FragmentProcessed] = {}
        self.backpressure: list[dict] = []
        self.errors: list[dict] = []
        self._arrived = asyncio.Event()

        @self.sio.on(FRAGMENT_PROCESSED, namespace=NAMESPACE)
        async def _processed(data):
            msg = parse(FragmentProcessed, data)
            self.processed[msg.fragment_id] = msg
            self._arrived.set()

        @self.sio.on(STREAM_BACKPRESSURE, namespace=NAMESPACE)
        async def _bp(data):
            self.backpressure.append(data)

        @self.sio.on("error", namespace=NAMESPACE)
        async def _err(data):
            self.errors.append(data)

        self.connect_errors: list = []

        @self.sio.on("connect_error", namespace=NAMESPACE)
        async def _connect_error(data):
            self.connect_errors.append(data)

    async def connect(self):
        auth = {"token": self.token} if self.token is not None else None
        await self.sio.connect(self.url, namespaces=[NAMESPACE], transports=["websocket"], auth=auth,
                               wait_timeout=10)
        return self

    async def call(self, event, data, timeout=30):
        return await self.sio.call(event, data, namespace=NAMESPACE, timeout=timeout)

    async def init(self, stream_id, targets=("es",), **extra):
        return await self.call(STREAM_INIT, {"stream_id": stream_id, "source_language": "en",
                                             "target_languages": list(targets),
                                             "audio": {"encoding": "pcm_s16le", "sample_rate_hz": 16000,
                                                       "channels": 1}, **extra})

    async def send(self, stream_id, seq, audio: np.ndarray, start_ms=0.0, fragment_id=None, deadline_ms=None,
                   late_start_ms=None, continues=None):
        payload = {"stream_id": stream_id, "fragment_id": fragment_id or f"{stream_id}-{seq}",
                   "sequence_number": seq, "start_ms": start_ms, "duration_ms": len(audio) / 16.0,
                   "audio": float_to_pcm16(audio)}
        if deadline_ms is not None:
            payload["deadline_ms"] = deadline_ms
        if late_start_ms is not None:
            payload["late_start_ms"] = late_start_ms
        if continues is not None:
            payload["continues"] = continues
        return await self.call(FRAGMENT_DATA, payload)

    async def wait_for(self, fragment_ids, timeout=90):
        deadline = time.monotonic() + timeout
        while not set(fragment_ids) <= set(self.processed):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = set(fragment_ids) - set(self.processed)
                raise AssertionError(f"no fragment:processed for {sorted(missing)}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
        return [self.processed[f] for f in fragment_ids]

    async def close(self):
        await self.sio.disconnect()
