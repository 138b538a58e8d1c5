"""The real MediaMTX as a child process on loopback, run with the deployment's own configuration.

Why: the compose deployment puts MediaMTX in front of media-service (hooks, per-user credentials,
the control API that reconcile reads); tests of those paths need the server users run, not a fake.
The binary is `../shared/bin/mediamtx` from the project root (CI lays shared/ beside the clone) or
`$LIVEDUB_MEDIAMTX`; `find_mediamtx()` returns None when neither exists and `MISSING` says so.

The configuration is deploy/mediamtx/mediamtx.yml rendered by deploy/mediamtx/publishers.py (the
same users, permissions and hook commands as deployed), with only what a shared test machine needs
changed: RTMP, API and metrics on free loopback ports, RTSP off (its fixed RTP/RTCP ports), and the
hook script's path in the repository instead of the container's /livedub.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from .services import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mediamtx"
HOOK_SCRIPT = DEPLOY / "livedub-hook.sh"
CONTAINER_HOOK_SCRIPT = "/livedub/livedub-hook.sh"
MEDIA_USER = "media-service"
MISSING = ("MediaMTX binary not found: expected ../shared/bin/mediamtx beside the project root (CI lays "
           "shared/ there) or a path in LIVEDUB_MEDIAMTX")


class MediaMtxError(RuntimeError):
    """MediaMTX could not be found, configured or started."""


def find_mediamtx() -> str | None:
    """Path of the MediaMTX binary, or None."""
    env = os.environ.get("LIVEDUB_MEDIAMTX")
    candidate = Path(env) if env else ROOT.parent / "shared" / "bin" / "mediamtx"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def publishers_tool():
    """deploy/mediamtx/publishers.py as a module (it is a standalone script, not a package)."""
    spec = importlib.util.spec_from_file_location("livedub_deploy_publishers", DEPLOY / "publishers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replace_once(text: str, pattern: str, repl: str, count: int = 1) -> str:
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n != count:
        raise MediaMtxError(f"deploy/mediamtx/mediamtx.yml: expected {count} match(es) of {pattern!r}, found {n}")
    return new


def for_loopback(text: str, *, rtmp_port: int, api_port: int, metrics_port: int,
                 hook_script: Path = HOOK_SCRIPT) -> str:
    """A configuration written for the container (rendered or not) made fit for this machine."""
    text = _replace_once(text, r"^rtmpAddress: :1935$", f"rtmpAddress: 127.0.0.1:{rtmp_port}")
    text = _replace_once(text, r"^apiAddress: :9997$", f"apiAddress: 127.0.0.1:{api_port}")
    text = _replace_once(text, r"^metricsAddress: :9998$", f"metricsAddress: 127.0.0.1:{metrics_port}")
    text = _replace_once(text, r"^rtsp: true$", "rtsp: false")
    return _replace_once(text, re.escape(CONTAINER_HOOK_SCRIPT), str(hook_script), count=2)


def rendered_config(media_pass: str, publishers: dict[str, str]) -> str:
    """The deployed configuration as publishers.py renders it (publishers: name -> password)."""
    tool = publishers_tool()
    return tool.render(tool.TEMPLATE.read_text(), tool.credential(media_pass),
                       {name: tool.credential(pw) for name, pw in publishers.items()})


class MediaMtxServer:
    """MediaMTX on 127.0.0.1 with the deployment's configuration.

    `hook_url` / `hook_token` become MEDIA_HOOK_URL / MEDIA_HOOK_TOKEN of the MediaMTX process (the
    hook script reads them); `publishers` maps broadcaster names to passwords. `config` is a
    configuration to run instead of the one rendered from those (e.g. the file publishers.py
    wrote, or the bare template): only its addresses and the hook script's path are changed.
    """

    APP = "live"

    def __init__(self, *, hook_url: str | None = None, hook_token: str | None = None,
                 media_pass: str | None = None, publishers: dict[str, str] | None = None,
                 workdir: str | os.PathLike | None = None, env: dict[str, str] | None = None,
                 config: str | None = None, startup_timeout_s: float = 15.0):
        self.host = "127.0.0.1"
        self.rtmp_port, self.api_port, self.metrics_port = free_port(), free_port(), free_port()
        self.media_pass = media_pass or base64.b16encode(os.urandom(24)).decode().lower()
        self.publishers = dict(publishers or {})
        self.hook_url, self.hook_token = hook_url, hook_token
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="livedub-mediamtx-"))
        self.extra_env = dict(env or {})
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self._log = None

    # ------------------------------------------------------------------ URLs
    @property
    def base_url(self) -> str:
        """What media-service's --rtmp-base-url is (MediaMTX takes plain paths: no `_definst_`)."""
        return f"rtmp://{self.host}:{self.rtmp_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mediamtx.log"

    def url(self, name: str, user: str | None = None, password: str | None = None) -> str:
        """`rtmp://127.0.0.1:PORT/live/<name>`, with MediaMTX's `?user=&pass=` when given."""
        url = f"{self.base_url}/{self.APP}/{name.strip('/')}"
        return f"{url}?{urlencode({'user': user, 'pass': password or ''})}" if user else url

    def publish_url(self, name: str) -> str:
        """The URL broadcaster `<stream>` publishes `<stream>/in` to, with its own credentials."""
        stream = name.strip("/").rsplit("/", 1)[0]
        if stream not in self.publishers:
            raise KeyError(f"no MediaMTX publisher {stream!r} in this server (give it in publishers=)")
        return self.url(name, stream, self.publishers[stream])

    def media_url(self, name: str) -> str:
        """`name` as media-service reaches it (its own user)."""
        return self.url(name, MEDIA_USER, self.media_pass)

    # ------------------------------------------------------------------ lifecycle
    def config_text(self) -> str:
        text = self.config if self.config is not None else rendered_config(self.media_pass, self.publishers)
        return for_loopback(text, rtmp_port=self.rtmp_port, api_port=self.api_port, metrics_port=self.metrics_port)

    def start(self) -> MediaMtxServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        binary = find_mediamtx()
        if binary is None:
            raise MediaMtxError(MISSING)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mediamtx.yml"
        config.write_text(self.config_text())
        # Nothing from the caller's environment may reconfigure it (MTX_*, the legacy RTSP_* prefix).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MTX_", "RTSP_"))}
        env.update(self.extra_env)
        for key, value in (("MEDIA_HOOK_URL", self.hook_url), ("MEDIA_HOOK_TOKEN", self.hook_token)):
            if value:
                env[key] = value
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([binary, str(config)], cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        for port in (self.rtmp_port, self.api_port):
            while True:
                if self.proc.poll() is not None:
                    raise MediaMtxError(f"MediaMTX exited with {self.proc.returncode} at start:\n{self.logs()}")
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise MediaMtxError(f"MediaMTX did not listen on {port}:\n{self.logs()}") from None
                    time.sleep(0.05)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # MediaMTX stops its hooks too
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self, max_chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ control API
    def api(self, path: str, *, auth: tuple[str, str] | None = None, source: str | None = None,
            timeout: float = 5.0) -> tuple[int, dict | str]:
        """GET the control API; `auth` as HTTP basic auth, `source` the local address to connect
        from (127.0.0.2: a loopback client that the loopback-only API entry does not cover)."""
        import http.client

        conn = http.client.HTTPConnection(self.host, self.api_port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, body

    def ready_paths(self) -> set[str]:
        """Names of the paths that have a publisher."""
        status, body = self.api("/v3/paths/list?itemsPerPage=1000", auth=(MEDIA_USER, self.media_pass))
        if status != 200:
            raise MediaMtxError(f"MediaMTX API answered {status}: {body}")
        return {item["name"] for item in body.get("items") or [] if item.get("ready")}

    def wait_ready_path(self, name: str, timeout: float = 30.0) -> None:
        path = f"{self.APP}/{name.strip('/')}"
        deadline = time.monotonic() + timeout
        while path not in self.ready_paths():
            if time.monotonic() > deadline:
                raise TimeoutError(f"MediaMTX path {path} not published after {timeout:.0f}s:\n{self.logs(2000)}")
            time.sleep(0.1)

    def __enter__(self) -> MediaMtxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

