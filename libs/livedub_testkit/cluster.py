"""Several media-service replicas on loopback behind one Redis (issue 23), as the cluster tests
and `bench/bench_scale.py` run them: redis-server, nginx-rtmp whose publish hooks reach the
replicas through one HTTP entry point (`HookFront`, as a Kubernetes Service would), sts-services
and media-services with `--redis-url`. Every process is stopped by `stop()` (by pid)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .loopback_http import LoopbackHttpServer, QuietHandler
from .redis_server import RedisServer
from .rtmp_server import NginxRtmpServer
from .services import MediaProcess, StsProcess, free_port


class HookFront:
    """One HTTP entry point for the replicas' hooks: each request goes to the first replica that
    answers (a Kubernetes Service or a compose DNS name does the same with its ready endpoints)."""

    def __init__(self, ports: list[int]):
        front = self
        self.ports = ports

        class Handler(QuietHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                for port in front.ports:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}{self.path}", data=body, method="POST",
                                                 headers={"Content-Type": self.headers.get("Content-Type", "")})
                    try:
                        with urllib.request.urlopen(req, timeout=10) as resp:  # nosec B310  # loopback
                            status, data = resp.status, resp.read()
                    except urllib.error.HTTPError as exc:
                        status, data = exc.code, exc.read()
                    except OSError:
                        continue  # that replica is down: the next one
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(502)
                self.end_headers()

        self.http = LoopbackHttpServer(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()


class LocalCluster:
    """`media` replicas (each pointed at sts-service `i % len(sts)`), started by `start()`."""

    def __init__(self, *, replicas: int = 3, sts: int = 2, workdir: str | Path | None = None,
                 media_args: tuple[str, ...] = (), media_env: dict[str, str] | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="livedub-cluster-"))
        self.redis = RedisServer(workdir=self.workdir / "redis")
        ports = [free_port() for _ in range(replicas)]
        self.front = HookFront(ports)
        self.api_token = secrets.token_urlsafe(24)
        hooks = f"{self.front.url}/v1/hooks/nginx"
        self.rtmp = NginxRtmpServer(on_publish_url=f"{hooks}/on_publish?token={self.api_token}",
                                    on_publish_done_url=f"{hooks}/on_publish_done?token={self.api_token}",
                                    prefix=self.workdir / "nginx", keep_prefix=True)
        sts_token = secrets.token_urlsafe(24)
        self.sts = [StsProcess(token=sts_token, log_dir=self.workdir / f"sts{i}") for i in range(sts)]
        self.media = [MediaProcess("--rtmp-base-url", f"rtmp://127.0.0.1:{self.rtmp.rtmp_port}",
                                   "--redis-url", self.redis.url, *media_args,
                                   sts_url=self.sts[i % sts].url, sts_token=sts_token, api_token=self.api_token,
                                   port=ports[i], env=media_env, log_dir=self.workdir / f"media{i}")
                      for i in range(replicas)]

    def start(self) -> LocalCluster:
        try:
            self.redis.start()
            self.rtmp.start()
            for s in self.sts:
                s.start(wait=0)
            for s in self.sts:
                s.wait_ready(240)
            for m in self.media:
                m.start(wait=60)
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> list[MediaProcess]:
        return [m for m in self.media if m.proc is not None and m.proc.poll() is None]

    def stop(self) -> None:
        for m in self.alive():
            os.kill(m.proc.pid, signal.SIGCONT)  # a paused replica must be able to stop
            m.proc.send_signal(signal.SIGTERM)  # all at once: their drains overlap
        for m in self.media:
            m.stop(timeout=20)
        for s in self.sts:
            s.stop()
        self.rtmp.stop()
        self.front.close()
        self.redis.stop()

    @staticmethod
    def local_streams(replica: MediaProcess) -> dict[str, dict]:
        """The streams this replica itself runs (a forwarded request is answered locally)."""
        req = urllib.request.Request(replica.url + "/v1/streams", headers={
            "Authorization": f"Bearer {replica.api_token}", "X-Livedub-Forwarded": "1"})
        with urllib.request.urlopen(req, timeout=5) as resp:  # nosec B310  # loopback
            return {s["id"]: s for s in json.loads(resp.read())["streams"] if s["state"] != "stopped"}

    def owners(self, replicas: list[MediaProcess] | None = None) -> dict[str, list[int]]:
        """stream id -> the ports of the replicas that run it."""
        out: dict[str, list[int]] = {}
        for r in replicas if replicas is not None else self.alive():
            for stream_id in self.local_streams(r):
                out.setdefault(stream_id, []).append(r.port)
        return out

    def busiest(self) -> tuple[MediaProcess, list[str]]:
        """The live replica with the most streams, and those streams."""
        where = self.owners()
        replica = max(self.alive(), key=lambda r: sum(1 for v in where.values() if v == [r.port]))
        return replica, sorted(s for s, v in where.items() if v == [replica.port])

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def writing(snap: dict) -> bool:
    """The stream's outputs are being written (dubbed output flowing)."""
    return snap.get("output", {}).get("state") == "writing" and snap["counters"]["audio_frames_out"] > 0
