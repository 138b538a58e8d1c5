"""The whole local pipeline on loopback: nginx-rtmp (hooks to media-service), sts-service, media-service.

Used by the integration/e2e tests, the benchmarks and `make demo`, so all three run the
same real processes the same way. Tokens are generated per run; nothing is secret in the repo.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

from .rtmp_server import NginxRtmpServer
from .services import MediaProcess, StsProcess, free_port


class LocalStack:
    def __init__(self, *, workdir: str | Path | None = None, output_delay_s: float | None = None,
                 media_args: tuple[str, ...] = (), sts_args: tuple[str, ...] = (), hooks: bool = True,
                 start_sts: bool = True, api_token: str | None = None, media_env: dict[str, str] | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="livedub-stack-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sts_token = secrets.token_urlsafe(24)
        self.api_token = api_token or secrets.token_urlsafe(24)  # the media API always has one
        self.media_port = free_port()
        hook = f"http://127.0.0.1:{self.media_port}/v1/hooks/nginx"
        suffix = f"?token={self.api_token}"
        self.rtmp = NginxRtmpServer(on_publish_url=f"{hook}/on_publish{suffix}" if hooks else None,
                                    on_publish_done_url=f"{hook}/on_publish_done{suffix}" if hooks else None,
                                    prefix=self.workdir / "nginx", keep_prefix=True)
        self.sts = StsProcess(*sts_args, token=self.sts_token, log_dir=self.workdir)
        args = ["--rtmp-base-url", f"rtmp://127.0.0.1:{self.rtmp.rtmp_port}", *media_args]
        if output_delay_s is not None:
            args += ["--output-delay", str(output_delay_s)]
        self.media = MediaProcess(*args, sts_url=self.sts.url, sts_token=self.sts_token, api_token=self.api_token,
                                  port=self.media_port, env=media_env, log_dir=self.workdir)
        self._start_sts = start_sts

    def start(self) -> LocalStack:
        try:
            self.rtmp.start()
            if self._start_sts:
                self.sts.start(wait=180)
            self.media.start(wait=60)
        except BaseException:
            self.stop()  # never leave half a stack running
            raise
        return self

    def stop(self) -> None:
        for part in (self.media, self.sts):
            try:
                part.stop()
            except Exception:
                pass
        self.rtmp.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, name: str) -> str:
        return self.rtmp.url(name)

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
