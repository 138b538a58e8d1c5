"""A Docker engine for the deployment test: the one that answers, else a dockerd the test owns.

The deployment test needs an engine but must not depend on one being set up by hand. When neither
``DOCKER_HOST`` nor the default socket answers, :func:`engine` starts Debian's ``dockerd``
(package ``docker.io``; ``make setup`` installs it) with everything it owns under the test's
control: its socket, exec root and pidfile in a fresh directory under /tmp (short, because unix
socket paths are limited to 107 bytes), and its data root in a stable cache directory
(``$LIVEDUB_DOCKER_CACHE`` or ``~/.cache/livedub-docker``) so that images built by one run are
reused by the next. It runs without a default bridge and without iptables rules: the compose
project creates its own network, builds use the host network, and published ports go through
docker's userland proxy, so the host's firewall is never touched.

overlay2 is tried first (fast, shares layers); vfs (a full copy per layer, slow but works on any
filesystem) when overlay2 cannot start. Each driver has its own data root, so a cache made with
one is never read by the other.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DRIVERS = ("overlay2", "vfs")
START_TIMEOUT_S = 60.0


class EngineUnavailable(RuntimeError):
    """No engine answers and none could be started; the message says why (a skip reason)."""


def cache_dir() -> Path:
    return Path(os.environ.get("LIVEDUB_DOCKER_CACHE") or Path.home() / ".cache" / "livedub-docker")


def unmount_under(root: Path) -> None:
    """Unmount every filesystem mounted inside `root`, deepest first, before anything deletes it."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _client(base_url: str | None, timeout: float = 600):
    import docker

    if base_url is None:
        return docker.from_env(timeout=timeout)
    return docker.DockerClient(base_url=base_url, timeout=timeout)


def _answers(base_url: str | None) -> bool:
    try:
        client = _client(base_url, timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # docker.errors.DockerException, connection refused, missing socket
        return False


@dataclass
class Engine:
    """A reachable engine. ``process`` is set only when this object started it (and must stop it)."""

    base_url: str | None  # None: the environment's (DOCKER_HOST or the default socket)
    storage_driver: str
    process: subprocess.Popen | None = None
    run_dir: Path | None = None
    log_path: Path | None = None
    _lock: object | None = field(default=None, repr=False)

    def client(self, timeout: float = 600):
        return _client(self.base_url, timeout=timeout)

    def env(self) -> dict[str, str]:
        """The environment for docker CLI commands (compose) to reach this engine."""
        env = dict(os.environ)
        if self.base_url is not None:
            env["DOCKER_HOST"] = self.base_url
        return env

    def stop(self) -> None:
        """Stop the engine if this object started it (its containers stop with it)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=45)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            self.process = None
            if self.log_path is not None:
                (self.log_path.parent / "engine.pid").unlink(missing_ok=True)
        if self.run_dir is not None:
            unmount_under(self.run_dir)  # dockerd leaves its exec root's netns/default mounted
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        if self._lock is not None:
            self._lock.close()  # releases the data root for the next session
            self._lock = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _storage_driver(base_url: str | None) -> str:
    client = _client(base_url, timeout=10)
    try:
        return client.info().get("Driver", "?")
    finally:
        client.close()


def _start(dockerd: str, driver: str, root: Path) -> Engine:
    """Start dockerd with one storage driver; raise EngineUnavailable with its log when it fails."""
    # mkdtemp: a private 0700 directory; /tmp itself because TMPDIR may be too long for a socket path
    run_dir = Path(tempfile.mkdtemp(prefix="livedub-docker-", dir="/tmp"))  # nosec B108
    base_url = f"unix://{run_dir}/docker.sock"
    log_path = root / f"dockerd-{driver}.log"
    data_root = root / driver
    data_root.mkdir(parents=True, exist_ok=True)
    cmd = [
        dockerd,
        f"--data-root={data_root}",
        f"--exec-root={run_dir}/exec",
        f"--pidfile={run_dir}/docker.pid",
        f"--host={base_url}",
        f"--storage-driver={driver}",
        "--bridge=none",       # no docker0: compose makes the project's own network
        "--iptables=false",    # leave the host's firewall alone; ports go through docker-proxy
        "--ip-masq=false",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if _answers(base_url):
            got = _storage_driver(base_url)
            engine = Engine(base_url, got, proc, run_dir, log_path)
            if got != driver:
                engine.stop()
                raise EngineUnavailable(f"dockerd started with storage driver {got!r} instead of {driver!r}")
            return engine
        time.sleep(0.5)
    Engine(base_url, driver, proc, run_dir, log_path).stop()
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    raise EngineUnavailable(f"dockerd --storage-driver={driver} did not start: " + " | ".join(tail))


def _stop_orphan(root: Path) -> None:
    """Stop a dockerd that a killed session left running on this data root (the lock says that
    session is gone): two engines on one data root would corrupt it."""
    pid_file = root / "engine.pid"
    try:
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except (OSError, ValueError):
        return
    if not cmdline or not cmdline[0].endswith(b"dockerd") or not any(str(root).encode() in a for a in cmdline):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 45
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.5)
    if os.path.exists(f"/proc/{pid}"):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def engine(root: Path | None = None) -> Engine:
    """The engine that answers (DOCKER_HOST or the default socket), else one started here."""
    if _answers(None):
        return Engine(None, _storage_driver(None))
    dockerd = shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None)
    if dockerd is None:
        raise EngineUnavailable("no Docker engine answers and dockerd is not installed "
                                "(Debian package docker.io; `make setup` installs it)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers and starting dockerd needs root "
                                "(start one, or set DOCKER_HOST)")
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    lock = open(root / "engine.lock", "w")  # noqa: SIM115 - held for the engine's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise EngineUnavailable(f"another session's dockerd is using {root}") from None
    _stop_orphan(root)
    reasons = []
    for driver in DRIVERS:
        try:
            started = _start(dockerd, driver, root)
        except EngineUnavailable as exc:
            reasons.append(str(exc))
            continue
        started._lock = lock
        (root / "engine.pid").write_text(str(started.process.pid))
        return started
    lock.close()
    raise EngineUnavailable("; ".join(reasons))


def build_image(client, context: Path, target: str, tag: str, *, log=None) -> float:
    """Build one Dockerfile target with the engine's layer cache; seconds taken.

    The build uses the host network: the engine has no NAT (no iptables rules), and the build
    fetches Debian and PyPI packages the way the host does. `log` receives every progress line.
    """
    import docker

    started = time.monotonic()
    lines: list[str] = []
    for chunk in client.api.build(path=str(context), dockerfile="Dockerfile", target=target, tag=tag,
                                  network_mode="host", rm=True, forcerm=True, decode=True):
        text = chunk.get("stream") or chunk.get("status") or ""
        if "error" in chunk:
            detail = "\n".join(lines[-30:])
            raise docker.errors.BuildError(f"{target}: {chunk['error']}\n{detail}", lines)
        for line in text.splitlines():
            if line.strip():
                lines.append(line)
                if log is not None:
                    log(line)
    return time.monotonic() - started
