"""The whole local pipeline on loopback: an RTMP server (hooks to media-service), sts-service, media-service.

Used by the integration/e2e tests, the benchmarks and `make demo`, so all three run the
same real processes the same way. Tokens are generated per run; nothing is secret in the repo.

The RTMP server is nginx-rtmp (`rtmp="nginx"`, the default) or the real MediaMTX with the
deployment's configuration (`rtmp="mediamtx"`: per-broadcaster users, the hook script, media-service
with its own credentials and the API reconcile); `rtmp="auto"` takes MediaMTX when its binary is
there (`mediamtx.find_mediamtx`) and nginx-rtmp otherwise. `LIVEDUB_RTMP_SERVER` sets the default.

`replicas=N` (N > 1) runs N media-service processes as one cluster (issue 23, docs/scale-out.md):
a redis-server, every replica with `--redis-url`, the RTMP server's hooks through one entry point
(`cluster.HookFront`); `media` is the first replica, whose API answers for every stream.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import analysis
from .cluster import HookFront
from .mediamtx import MEDIA_USER, MediaMtxServer, find_mediamtx
from .redis_server import RedisServer
from .rtmp_server import NginxRtmpServer
from .services import MediaProcess, StsProcess, free_port

RTMP_SERVERS = ("nginx", "mediamtx", "auto")


def rtmp_kind(choice: str | None) -> str:
    """`nginx` or `mediamtx` for a LocalStack's `rtmp=` (None: LIVEDUB_RTMP_SERVER, else nginx)."""
    choice = choice or os.environ.get("LIVEDUB_RTMP_SERVER") or "nginx"
    if choice not in RTMP_SERVERS:
        raise ValueError(f"rtmp server must be one of {RTMP_SERVERS}, got {choice!r}")
    if choice == "auto":
        return "mediamtx" if find_mediamtx() else "nginx"
    return choice


class LocalStack:
    def __init__(self, *, workdir: str | Path | None = None, output_delay_s: float | None = None,
                 media_args: tuple[str, ...] = (), sts_args: tuple[str, ...] = (), hooks: bool = True,
                 start_sts: bool = True, api_token: str | None = None, media_env: dict[str, str] | None = None,
                 rtmp: str | None = None, publishers: tuple[str, ...] = (), replicas: int = 1):
        """`publishers`: broadcaster names that get their own MediaMTX user (`publish_url`);
        `replicas`: media-service processes (more than one: a cluster behind one Redis)."""
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="livedub-stack-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sts_token = secrets.token_urlsafe(24)
        self.api_token = api_token or secrets.token_urlsafe(24)  # the media API always has one
        self.hook_token = secrets.token_urlsafe(24)  # what the RTMP server holds: /v1/hooks/* only
        ports = [free_port() for _ in range(replicas)]
        self.media_port = ports[0]
        self.rtmp_kind = rtmp_kind(rtmp)
        env = {"MEDIA_HOOK_TOKEN": self.hook_token, **(media_env or {})}
        # One replica takes the hooks itself; several take them through one entry point.
        self.redis = RedisServer(workdir=self.workdir / "redis") if replicas > 1 else None
        self.front = HookFront(ports) if replicas > 1 else None
        hook_base = self.front.url if self.front else f"http://127.0.0.1:{self.media_port}"
        if self.rtmp_kind == "mediamtx":
            self.rtmp = MediaMtxServer(
                hook_url=f"{hook_base}/v1/hooks/mediamtx" if hooks else None,
                hook_token=self.hook_token, publishers={name: secrets.token_hex(24) for name in publishers},
                workdir=self.workdir / "mediamtx")
            rtmp_args = ["--mediamtx-api", self.rtmp.api_url]
            env.update({"MEDIA_RTMP_USER": MEDIA_USER, "MEDIA_RTMP_PASS": self.rtmp.media_pass})
        else:
            hook = f"{hook_base}/v1/hooks/nginx"
            suffix = f"?token={self.hook_token}"
            self.rtmp = NginxRtmpServer(on_publish_url=f"{hook}/on_publish{suffix}" if hooks else None,
                                        on_publish_done_url=f"{hook}/on_publish_done{suffix}" if hooks else None,
                                        prefix=self.workdir / "nginx", keep_prefix=True)
            rtmp_args = []
        self.sts = StsProcess(*sts_args, token=self.sts_token, log_dir=self.workdir)
        args = ["--rtmp-base-url", f"rtmp://127.0.0.1:{self.rtmp.rtmp_port}", *rtmp_args, *media_args]
        if output_delay_s is not None:
            args += ["--output-delay", str(output_delay_s)]
        if self.redis is not None:
            args += ["--redis-url", self.redis.url]
        self.replicas = [MediaProcess(*args, sts_url=self.sts.url, sts_token=self.sts_token, api_token=self.api_token,
                                      port=port, env=env, log_dir=self.workdir / f"media{i}" if i else self.workdir)
                         for i, port in enumerate(ports)]
        self.media = self.replicas[0]
        self._start_sts = start_sts

    def start(self) -> LocalStack:
        try:
            if self.redis is not None:
                self.redis.start()
            self.rtmp.start()
            if self._start_sts:
                self.sts.start(wait=180)
            for replica in self.replicas:
                replica.start(wait=60)
        except BaseException:
            self.stop()  # never leave half a stack running
            raise
        return self

    def stop(self) -> None:
        for part in (*self.replicas, self.sts):
            try:
                part.stop()
            except Exception:
                pass
        self.rtmp.stop()
        if self.front is not None:
            self.front.close()
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, name: str) -> str:
        """Where anyone reads `name` (dubbed outputs need no credentials on either server)."""
        return self.rtmp.url(name)

    def publish_url(self, name: str) -> str:
        """Where a broadcaster publishes `<stream>/in`: on MediaMTX with that stream's own user."""
        return self.rtmp.publish_url(name) if self.rtmp_kind == "mediamtx" else self.rtmp.url(name)

    def record(self, name: str, out_path, **kwargs):
        """`analysis.record_stream` of `name`, started once there is something to read: nginx-rtmp
        keeps a player waiting for a publisher, MediaMTX refuses a read of an unpublished path."""
        if self.rtmp_kind == "nginx":
            return analysis.record_stream(self.url(name), out_path, **kwargs)
        return RetryingRecorder(lambda: analysis.record_stream(self.url(name), out_path, **kwargs))

    def wait_stream(self, stream_id: str, predicate, timeout: float = 30.0, poll: float = 0.25) -> dict:
        """Poll GET /v1/streams/{id} until `predicate(snapshot)` holds; returns the snapshot."""
        deadline = time.monotonic() + timeout
        snap: dict | str = {}
        while time.monotonic() < deadline:
            status, snap = self.media.api("GET", f"/v1/streams/{stream_id}")
            if status == 200 and predicate(snap):
                return snap
            time.sleep(poll)
        raise TimeoutError(f"stream {stream_id} did not reach the expected state; last: {snap}\n"
                           f"{self.media.logs(30)}")


class RetryingRecorder:
    """A recorder started again until the server lets it read (MediaMTX refuses a read of a path
    nobody publishes yet, at once): it stands in for its Popen (`poll`, `send_signal`, `wait`,
    `kill`, `returncode`, `log_path`) for `analysis.stop_process`. Retrying from before the publish
    joins at the output's first keyframes, as nginx-rtmp's waiting player does."""

    CONNECTED_AFTER_S = 3.0  # a refused read ends well within this

    def __init__(self, spawn, give_up_s: float = 180.0):
        self._proc = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()

        def run():
            deadline = time.monotonic() + give_up_s
            while not self._stopped.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self._stopped.is_set():
                        return
                    self._proc = spawn()
                try:
                    self._proc.wait(self.CONNECTED_AFTER_S)
                except subprocess.TimeoutExpired:
                    return  # reading: it runs until stopped
                self._stopped.wait(0.05)

        self._thread = threading.Thread(target=run, name="retrying-recorder", daemon=True)
        self._thread.start()

    @property
    def returncode(self):
        return self._proc.returncode if self._proc is not None else None

    @property
    def log_path(self):
        return getattr(self._proc, "log_path", None)

    def poll(self):
        if self._thread.is_alive() or self._proc is None:
            return None  # still trying to connect
        return self._proc.poll()

    def send_signal(self, sig) -> None:
        with self._lock:
            self._stopped.set()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(sig)

    def wait(self, timeout=None):
        self._thread.join(timeout)
        return self._proc.wait(timeout) if self._proc is not None else None

    def kill(self) -> None:
        with self._lock:
            self._stopped.set()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
