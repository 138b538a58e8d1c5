"""Live JPEG preview of a stream's output: one upstream decoder shared by any number of viewers.

A `PreviewBroadcaster` owns one pump thread per source URL (the dubbed output, e.g.
`rtmp://.../live/<name>/out`). The pump reads the output with PyAV, decodes only the video, keeps at
most `fps` frames a second, scales them to `width` (aspect kept) and JPEG-encodes them; each JPEG is
handed to the event loop with `loop.call_soon_threadsafe` and fanned out to the subscribers'
bounded queues. A subscriber whose queue is full (a slow viewer) is dropped: its queue is emptied
and gets the `UPSTREAM_GONE` sentinel, so neither the pump nor the other viewers ever wait for it.
The latest frame is kept so that a new viewer gets a picture at once.

The upstream is retried every `retry_s` while anyone watches (the output may not be published
yet). When the last viewer leaves, the upstream is torn down after `grace_s` unless someone
subscribes again; a torn-down broadcaster is stopped for good and `PreviewRegistry` replaces it.

The frame source is injectable (`source(url, stop_event) -> iterator of JPEG bytes`, run in the
pump thread) so the fan-out logic is testable without any network.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

from ..redaction import redact, redact_url
from ..targets import protocol_whitelist

log = logging.getLogger(__name__)

QUEUE_SIZE = 2
DEFAULT_FPS = 5.0
DEFAULT_WIDTH = 480
DEFAULT_GRACE_S = 5.0
DEFAULT_RETRY_S = 1.0
JOIN_TIMEOUT_S = 12.0  # a pump blocked in a read returns within rw_timeout (5 s)

UPSTREAM_GONE = object()  # queued to a subscriber that was dropped or whose broadcaster stopped

FrameSource = Callable[[str, threading.Event], Iterator[bytes]]


class BroadcasterStopped(RuntimeError):
    """subscribe() on a broadcaster that was torn down: ask the registry for a fresh one."""


# --------------------------------------------------------------------------- the real source


def av_jpeg_source(fps: float = DEFAULT_FPS, width: int = DEFAULT_WIDTH) -> FrameSource:
    """A frame source that reads `url` with PyAV and yields JPEGs of its video (blocking; pump thread)."""

    def source(url: str, stop: threading.Event) -> Iterator[bytes]:
        import av

        container = av.open(url, options={"rw_timeout": "5000000", "protocol_whitelist": protocol_whitelist(url)},
                            timeout=(5, 5))
        try:
            if not container.streams.video:
                raise RuntimeError(f"{redact_url(url)} has no video stream")
            stream = container.streams.video[0]
            encoder = None
            interval = 1.0 / fps
            next_at = 0.0
            seen_key = False
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                if packet.size == 0:
                    continue
                seen_key = seen_key or packet.is_keyframe
                if not seen_key:  # P-frames before the first keyframe decode to garbage
                    continue
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    log.debug("preview %s: decode error %s", redact_url(url), exc)
                    continue
                for frame in frames:
                    now = time.monotonic()
                    if now < next_at:
                        continue  # decoded (references need it) but not shown
                    next_at = now + interval
                    if encoder is None:
                        w = min(width, frame.width) // 2 * 2
                        h = max(2, round(frame.height * w / frame.width / 2) * 2)
                        encoder = av.CodecContext.create("mjpeg", "w")
                        encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuvj420p"
                        encoder.time_base = Fraction(1, max(1, round(fps)))
                        encoder.bit_rate = 1_000_000
                        pts = 0
                    small = frame.reformat(width=encoder.width, height=encoder.height, format="yuvj420p")
                    small.pts, small.time_base = pts, encoder.time_base
                    pts += 1
                    jpeg = b"".join(bytes(p) for p in encoder.encode(small))
                    if jpeg:
                        yield jpeg
        finally:
            container.close()

    return source


# --------------------------------------------------------------------------- broadcaster


@dataclass
class PreviewStats:
    pumps_started: int = 0  # pump threads (one per broadcaster lifetime)
    upstream_attempts: int = 0  # times the source was opened (retries included)
    upstreams_opened: int = 0  # attempts that produced at least one frame
    frames: int = 0  # JPEGs decoded and fanned out
    dropped_subscribers: int = 0  # slow viewers disconnected
    subscribers_total: int = 0
    last_error: str | None = None

    def add(self, other: PreviewStats) -> None:
        for name in ("pumps_started", "upstream_attempts", "upstreams_opened", "frames",
                     "dropped_subscribers", "subscribers_total"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.last_error = other.last_error or self.last_error


class PreviewBroadcaster:
    def __init__(self, url: str, *, source: FrameSource | None = None, fps: float = DEFAULT_FPS,
                 width: int = DEFAULT_WIDTH, grace_s: float = DEFAULT_GRACE_S, retry_s: float = DEFAULT_RETRY_S,
                 queue_size: int = QUEUE_SIZE, name: str = ""):
        self.url, self.name = url, redact(name or url)  # the name is logged
        self._source = source or av_jpeg_source(fps, width)
        self.grace_s, self.retry_s, self.queue_size = grace_s, retry_s, queue_size
        self.stats = PreviewStats()
        self.latest: bytes | None = None
        self.stopped = False
        self._subs: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._grace_task: asyncio.Task | None = None
        self._lock = threading.Lock()  # guards stats written by the pump thread

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @property
    def pump_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ subscribers (event loop only)

    def subscribe(self) -> asyncio.Queue:
        """A bounded queue of JPEG bytes (then `UPSTREAM_GONE`); starts the pump on first use."""
        if self.stopped:
            raise BroadcasterStopped(f"preview of {self.name} was stopped")
        if self._grace_task is not None:
            self._grace_task.cancel()  # back inside the grace window: keep the same pump
            self._grace_task = None
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.queue_size)
        if self.latest is not None:
            queue.put_nowait(self.latest)
        self._subs.add(queue)
        self.stats.subscribers_total += 1
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._pump_done = asyncio.Event()
            self._thread = threading.Thread(target=self._pump, name=f"preview:{self.name}", daemon=True)
            self.stats.pumps_started += 1
            self._thread.start()
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> int:
        """Remove a subscriber (idempotent); returns how many remain. The last one starts the grace window."""
        if queue in self._subs:
            self._subs.discard(queue)
            self._maybe_grace()
        return len(self._subs)

    async def frames(self, queue: asyncio.Queue, *, alive: Callable[[], bool] = lambda: True,
                     poll_s: float = 1.0) -> AsyncIterator[bytes]:
        """JPEGs for one subscriber until it is dropped, the broadcaster stops or `alive()` turns false.

        `alive` is checked at least every `poll_s` (e.g. the HTTP client went away while no frame came).
        Always unsubscribes on the way out.
        """
        try:
            while alive():
                try:
                    item = await asyncio.wait_for(queue.get(), poll_s)
                except TimeoutError:
                    continue
                if item is UPSTREAM_GONE:
                    return
                yield item
        finally:
            self.unsubscribe(queue)

    def _maybe_grace(self) -> None:
        if not self._subs and not self.stopped and self._grace_task is None:
            self._grace_task = asyncio.get_running_loop().create_task(self._grace())

    async def _grace(self) -> None:
        await asyncio.sleep(self.grace_s)
        if not self._subs:
            self._grace_task = None  # we are the stopper now; stop() must not cancel us
            log.info("preview %s: no viewers for %.1fs, closing the upstream", self.name, self.grace_s)
            await self.stop()

    def _drop(self, queue: asyncio.Queue) -> None:
        self._subs.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(UPSTREAM_GONE)

    def _deliver(self, jpeg: bytes) -> None:
        """On the event loop: keep the frame and fan it out; full queues are dropped, never awaited."""
        if self.stopped:
            return
        self.latest = jpeg
        for queue in list(self._subs):
            try:
                queue.put_nowait(jpeg)
            except asyncio.QueueFull:
                self._drop(queue)
                self.stats.dropped_subscribers += 1
                log.info("preview %s: dropped a slow viewer", self.name)
        self._maybe_grace()

    # ------------------------------------------------------------ pump (its own thread)

    def _post(self, fn, *args) -> bool:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:  # the loop is closed: nobody to deliver to
            self._stop.set()
            return False

    def _pump(self) -> None:
        try:
            self._pump_loop()
        finally:
            self._post(self._pump_done.set)

    def _pump_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.stats.upstream_attempts += 1
            produced = False
            try:
                for jpeg in self._source(self.url, self._stop):
                    if self._stop.is_set():
                        break
                    with self._lock:
                        self.stats.frames += 1
                        if not produced:
                            self.stats.upstreams_opened += 1
                            self.stats.last_error = None
                    produced = True
                    if not self._post(self._deliver, jpeg):
                        return
            except Exception as exc:  # noqa: BLE001 - any upstream failure means "retry"
                with self._lock:
                    self.stats.last_error = redact(f"{type(exc).__name__}: {exc}")
                log.debug("preview %s: upstream failed: %s", self.name, exc)
            if self._stop.wait(self.retry_s):
                return

    # ------------------------------------------------------------ teardown

    async def stop(self) -> None:
        """Stop for good: subscribers get `UPSTREAM_GONE`, the grace task and pump thread are awaited."""
        self.stopped = True
        self._stop.set()
        for queue in list(self._subs):
            self._drop(queue)
        task, self._grace_task = self._grace_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        thread = self._thread
        if thread is not None:
            try:
                await asyncio.wait_for(self._pump_done.wait(), JOIN_TIMEOUT_S)
            except TimeoutError:
                log.warning("preview %s: pump thread still blocked after %.0fs", self.name, JOIN_TIMEOUT_S)
            else:
                thread.join(timeout=1.0)  # it has posted its last call: returning now

    def snapshot(self) -> dict:
        with self._lock:
            s = self.stats
            return {"url": self.url, "subscribers": len(self._subs), "running": self.pump_running,
                    "pumps_started": s.pumps_started, "upstream_attempts": s.upstream_attempts,
                    "upstreams_opened": s.upstreams_opened, "frames": s.frames,
                    "dropped_subscribers": s.dropped_subscribers, "last_error": s.last_error}


# --------------------------------------------------------------------------- registry


class PreviewRegistry:
    """Broadcasters by stream id (one per output URL of the stream); replaces stopped ones."""

    def __init__(self, *, source: FrameSource | None = None, fps: float = DEFAULT_FPS, width: int = DEFAULT_WIDTH,
                 grace_s: float = DEFAULT_GRACE_S, retry_s: float = DEFAULT_RETRY_S, queue_size: int = QUEUE_SIZE):
        self._opts = {"source": source, "fps": fps, "width": width, "grace_s": grace_s, "retry_s": retry_s,
                      "queue_size": queue_size}
        self._by_key: dict[tuple[str, str], PreviewBroadcaster] = {}
        self._retired: dict[str, PreviewStats] = {}  # counters of replaced broadcasters, per stream
        self.closed = False

    def get_or_create(self, stream_id: str, url: str) -> PreviewBroadcaster:
        if self.closed:
            raise BroadcasterStopped("the preview registry is closed")
        key = (stream_id, url)
        bc = self._by_key.get(key)
        if bc is None or bc.stopped:
            if bc is not None:
                self._retired.setdefault(stream_id, PreviewStats()).add(bc.stats)
            bc = PreviewBroadcaster(url, name=f"{stream_id} {url}", **self._opts)
            self._by_key[key] = bc
        return bc

    def subscribe(self, stream_id: str, url: str) -> tuple[PreviewBroadcaster, asyncio.Queue]:
        bc = self.get_or_create(stream_id, url)
        return bc, bc.subscribe()  # never stopped here: get_or_create just replaced a stopped one

    def viewers(self, stream_id: str | None = None) -> int:
        """Subscribed viewers of one stream, or of all streams."""
        return sum(bc.subscriber_count for (sid, _), bc in self._by_key.items()
                   if stream_id is None or sid == stream_id)

    def broadcasters(self, stream_id: str) -> list[PreviewBroadcaster]:
        return [bc for (sid, _), bc in self._by_key.items() if sid == stream_id]

    def stats(self, stream_id: str) -> dict:
        """Counters of the stream's previews since start (replaced broadcasters included)."""
        total = PreviewStats()
        if stream_id in self._retired:
            total.add(self._retired[stream_id])
        live = self.broadcasters(stream_id)
        for bc in live:
            with bc._lock:
                total.add(bc.stats)
        return {"subscribers": sum(bc.subscriber_count for bc in live),
                "running": sum(1 for bc in live if bc.pump_running),
                "pumps_started": total.pumps_started, "upstream_attempts": total.upstream_attempts,
                "upstreams_opened": total.upstreams_opened, "frames": total.frames,
                "dropped_subscribers": total.dropped_subscribers, "last_error": total.last_error}

    async def forget(self, stream_id: str) -> None:
        """Stop and drop a removed stream's broadcasters and counters (nothing kept per stream)."""
        keys = [k for k in self._by_key if k[0] == stream_id]
        bcs = [self._by_key.pop(k) for k in keys]
        self._retired.pop(stream_id, None)
        await asyncio.gather(*(bc.stop() for bc in bcs), return_exceptions=True)

    async def close(self) -> None:
        self.closed = True
        bcs = list(self._by_key.values())
        self._by_key.clear()
        await asyncio.gather(*(bc.stop() for bc in bcs), return_exceptions=True)

