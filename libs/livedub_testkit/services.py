"""Run the real services as child processes (tests, benchmarks and `make demo` share this)."""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range.

    A port from bind(0) is an ephemeral one: between this check and the service binding it, an
    outgoing connection (an ffmpeg client, an HTTP poll) may take it as its local port, and the
    service fails with "address already in use". Ports below the range are never handed out
    that way; each is handed out once per process.
    """
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, low) if low > 20100 else 0
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


def http_json(url: str, *, method: str = "GET", body: dict | None = None, token: str | None = None,
              timeout: float = 5.0) -> tuple[int, dict | str]:
    """Small blocking HTTP helper: returns (status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310  # the tests' own http:// URLs
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def http_get(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, str, bytes]:
    """GET as bytes: (status, Content-Type, body), for playlists, segments and captions."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310  # the tests' own http:// URLs
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def metric_value(text: str, name: str, **labels) -> float:
    """The value of one sample of a Prometheus text page (``/metrics``), by its full sample name
    and a subset of its labels; 0 when absent."""
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}\{{(.*)\}} ([0-9.e+-]+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


def process_resources(pid: int) -> dict[str, int]:
    """Threads, open file descriptors and child processes of a running process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    children = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += len((task / "children").read_text().split())
        except OSError:
            pass
    return {"threads": threads, "fds": len(os.listdir(f"/proc/{pid}/fd")), "children": children}


def settled_resources(pid: int, limit: dict[str, int], timeout: float = 10.0) -> dict[str, int]:
    """`process_resources` once no count is above `limit` (stopped threads and children end
    asynchronously), or as they are after `timeout`."""
    end = time.monotonic() + timeout
    now = process_resources(pid)
    while time.monotonic() < end and any(now[k] > limit[k] for k in limit):
        time.sleep(0.2)
        now = process_resources(pid)
    return now


class ServiceProcess:
    """A console-script service on a loopback port; logs to a file shown on failure."""

    ready_path = "/health"
    name = "service"

    def __init__(self, args: list[str], *, port: int | None = None, env: dict[str, str] | None = None,
                 log_dir: str | Path | None = None):
        self.port = port or free_port()
        self.args = args
        self.env = {**os.environ, **(env or {})}
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix=f"livedub-{self.name}-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 120.0) -> ServiceProcess:
        bindir = Path(sys.executable).parent
        exe = bindir / self.name
        cmd = [str(exe) if exe.exists() else self.name, "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready(wait)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                status, _ = http_json(self.url + self.ready_path, timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{self.logs()}")

    def logs(self, tail: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()


class StsProcess(ServiceProcess):
    """The real sts-service with the bundled models; ready once /ready answers 200."""

    name = "sts-service"
    ready_path = "/ready"

    def __init__(self, *args_: str, token: str | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, log_dir: str | Path | None = None):
        self.token = token or secrets.token_urlsafe(24)
        env = {"STS_AUTH_TOKEN": self.token, **(env or {})}
        super().__init__(list(args_), port=port, env=env, log_dir=log_dir)


class MediaProcess(ServiceProcess):
    """The real media-service pointed at an sts-service."""

    name = "media-service"

    def __init__(self, *args_: str, sts_url: str, sts_token: str, api_token: str | None = None,
                 port: int | None = None, env: dict[str, str] | None = None,
                 log_dir: str | Path | None = None):
        self.api_token = api_token or secrets.token_urlsafe(24)
        # Stacks are torn down while streams run: a short drain keeps teardown quick (the
        # default, 15 s, is tested in test_graceful_shutdown.py, which passes an empty value).
        env = {"STS_URL": sts_url, "STS_AUTH_TOKEN": sts_token, "MEDIA_SHUTDOWN_DRAIN": "2", **(env or {})}
        env["MEDIA_API_TOKEN"] = self.api_token
        super().__init__(list(args_), port=port, env=env, log_dir=log_dir)

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
        return http_json(self.url + path, method=method, body=body, token=self.api_token)
