"""A local nginx-rtmp server run as a child process, for tests, benchmarks and ``make demo``.

nginx is started in the foreground (``-g 'daemon off;'``) with a config written into a
temporary prefix directory, listening on 127.0.0.1 only: one free port for RTMP, one free
port for HTTP (``/health`` and the ``/stat`` XML page). The RTMP application is ``live``
(``live on; record off;``) with optional ``on_publish`` / ``on_publish_done`` HTTP callbacks.

Stream names with slashes (``demo/in``): the plain URL ``rtmp://127.0.0.1:PORT/live/demo/in`` does
NOT work with nginx-rtmp, because ffmpeg/PyAV (and librtmp) split an RTMP URL at the *last* slash:
app ``live/demo`` + stream ``in`` -> nginx answers "application not found" (verified). nginx-rtmp
strips a trailing ``/_definst_`` (and a trailing ``/``) from the app name, so these both give app
``live`` + stream name ``demo/in`` (verified with ffmpeg publish, ffprobe and PyAV play):

    rtmp://127.0.0.1:PORT/live/_definst_/demo/in      <- what ``url("demo/in")`` returns
    rtmp://127.0.0.1:PORT/live//demo/in

Names without a slash use the plain form ``rtmp://127.0.0.1:PORT/live/<name>``. OBS-style clients
that take "server" (``rtmp://127.0.0.1:PORT/live``) and "stream key" (``demo/in``) separately work
as-is. ``on_publish``/``on_publish_done`` hooks then receive ``app=live``, ``name=demo/in``.
``rtmp_url(host, port, app, name)`` builds such URLs for code that only knows app and name
(e.g. a hook handler building the input URL of a stream).

CLI: ``python -m livedub_testkit.rtmp_server [--rtmp-port N] [--http-port N]`` runs one until
Ctrl-C and prints its URLs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["NginxRtmpServer", "NginxRtmpError", "free_port", "find_rtmp_module", "rtmp_url"]

_MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
    "/usr/local/lib/nginx/modules/ngx_rtmp_module.so",
)
_INSTALL_HINT = "install the Debian packages: apt-get install nginx libnginx-mod-rtmp"


class NginxRtmpError(RuntimeError):
    """nginx could not be found, configured or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_rtmp_module() -> str | None:
    """Path of ``ngx_rtmp_module.so``, or None when nginx-rtmp is not installed as a dynamic module."""
    env = os.environ.get("LIVEDUB_NGINX_RTMP_MODULE")
    if env:
        return env if Path(env).exists() else None
    for cand in _MODULE_CANDIDATES:
        if Path(cand).exists():
            return cand
    return None


def rtmp_url(host: str, port: int, app: str, name: str) -> str:
    """An RTMP URL that ffmpeg/PyAV split into exactly (``app``, ``name``) on nginx-rtmp.

    ``name`` may contain slashes: they are preceded by ``/_definst_`` so that the client's
    split at the last slash still yields app ``app`` (nginx-rtmp strips ``/_definst_``).
    """
    name = name.strip("/")
    if "/" in name:
        return f"rtmp://{host}:{port}/{app}/_definst_/{name}"
    return f"rtmp://{host}:{port}/{app}/{name}"


def _find_nginx() -> str:
    env = os.environ.get("LIVEDUB_NGINX")
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise NginxRtmpError(f"LIVEDUB_NGINX={env!r} is not an executable nginx: {_INSTALL_HINT}")
        return env
    exe = shutil.which("nginx")
    if not exe:
        for cand in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
            if Path(cand).exists():
                exe = cand
                break
    if not exe:
        raise NginxRtmpError(f"nginx executable not found: {_INSTALL_HINT}")
    return exe


class NginxRtmpServer:
    """nginx + nginx-rtmp as a child process on 127.0.0.1.

    Usage::

        with NginxRtmpServer() as srv:
            url = srv.url("demo/in")   # rtmp://127.0.0.1:PORT/live/demo/in
    """

    APP = "live"

    def __init__(
        self,
        *,
        rtmp_port: int | None = None,
        http_port: int | None = None,
        on_publish_url: str | None = None,
        on_publish_done_url: str | None = None,
        prefix: str | os.PathLike | None = None,
        keep_prefix: bool = False,
        drop_idle_publisher_s: float = 5.0,
        ping_s: float = 3.0,
        ping_timeout_s: float = 2.0,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.host = "127.0.0.1"
        self.rtmp_port = rtmp_port or free_port()
        self.http_port = http_port or free_port()
        self.on_publish_url = on_publish_url
        self.on_publish_done_url = on_publish_done_url
        self._own_prefix = prefix is None
        self.prefix = Path(prefix) if prefix is not None else None
        self.keep_prefix = keep_prefix
        self.drop_idle_publisher_s = drop_idle_publisher_s
        self.ping_s = ping_s
        self.ping_timeout_s = ping_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self._out_file = None

    # ------------------------------------------------------------------ URLs
    @property
    def base_url(self) -> str:
        return f"rtmp://{self.host}:{self.rtmp_port}/{self.APP}"

    def url(self, name: str) -> str:
        """RTMP URL of stream ``name`` in app ``live``.

        ``rtmp://127.0.0.1:PORT/live/<name>``; for names with slashes (``demo/in``)
        ``rtmp://127.0.0.1:PORT/live/_definst_/demo/in`` (see the module docstring for why).
        """
        return rtmp_url(self.host, self.rtmp_port, self.APP, name)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def stat_url(self) -> str:
        return f"{self.http_url}/stat"

    @property
    def health_url(self) -> str:
        return f"{self.http_url}/health"

    # ------------------------------------------------------------------ config
    def config_text(self, module_path: str | None) -> str:
        def secs(v: float) -> str:
            return f"{max(1, int(round(v * 1000)))}ms"

        hooks = ""
        if self.on_publish_url:
            hooks += f"            on_publish {self.on_publish_url};\n"
        if self.on_publish_done_url:
            hooks += f"            on_publish_done {self.on_publish_done_url};\n"
        user = ""
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root nginx would switch workers to 'nobody'; stay the same user so the worker can
            # write logs/temp files in the prefix.
            user = "user root;\n"
        load = f"load_module {module_path};\n" if module_path else ""
        return f"""# written by livedub_testkit.rtmp_server
{load}{user}worker_processes 1;
pid nginx.pid;
# notice, not info: at info nginx-rtmp logs every notify URL, and the hook URLs carry ?token=.
error_log logs/error.log notice;
events {{ worker_connections 256; }}

rtmp {{
    server {{
        listen {self.host}:{self.rtmp_port};
        chunk_size 4096;
        ping {secs(self.ping_s)};
        ping_timeout {secs(self.ping_timeout_s)};
        timeout 15s;
        notify_method post;
        application {self.APP} {{
            live on;
            record off;
            drop_idle_publisher {secs(self.drop_idle_publisher_s)};
            wait_key on;
            wait_video off;
            sync 10ms;
            idle_streams on;
            publish_notify on;
{hooks}        }}
    }}
}}

http {{
    access_log logs/access.log;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {{
        listen {self.host}:{self.http_port};
        location = /health {{ default_type text/plain; return 200 "ok\\n"; }}
        location /stat {{ rtmp_stat all; }}
    }}
}}
"""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> NginxRtmpServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        exe = _find_nginx()
        module = find_rtmp_module()
        if module is None and "rtmp" not in subprocess.run(
            [exe, "-V"], capture_output=True, text=True
        ).stderr:
            raise NginxRtmpError(f"nginx RTMP module (ngx_rtmp_module.so) not found: {_INSTALL_HINT}")
        if self.prefix is None:
            self.prefix = Path(tempfile.mkdtemp(prefix="livedub-nginx-"))
        for sub in ("logs", "tmp", "conf"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "conf" / "nginx.conf"
        conf.write_text(self.config_text(module))
        self._out_file = open(self.prefix / "logs" / "stdout.log", "ab")  # noqa: SIM115
        cmd = [exe, "-p", str(self.prefix) + "/", "-c", str(conf), "-g", "daemon off;"]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._out_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready(self.startup_timeout_s)
        except Exception:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll the RTMP and HTTP TCP ports until both accept connections."""
        deadline = time.monotonic() + timeout
        pending = [self.rtmp_port, self.http_port]
        while pending:
            if self.proc is None:
                raise NginxRtmpError("nginx is not started")
            rc = self.proc.poll()
            if rc is not None:
                raise NginxRtmpError(f"nginx exited with code {rc} during startup.\n{self.logs()}")
            port = pending[0]
            try:
                with socket.create_connection((self.host, port), timeout=0.5):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise NginxRtmpError(
                    f"nginx did not listen on {self.host}:{port} within {timeout:.0f}s.\n{self.logs()}"
                )
            time.sleep(0.05)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                # SIGTERM on the master = fast shutdown (workers are told to exit too).
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout)
        if self._out_file is not None:
            self._out_file.close()
            self._out_file = None
        if self._own_prefix and not self.keep_prefix and self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def logs(self, max_chars: int = 6000) -> str:
        """Tail of nginx's stdout/stderr and error.log (for error messages)."""
        if self.prefix is None:
            return "(no logs)"
        parts = []
        for name in ("stdout.log", "error.log"):
            p = self.prefix / "logs" / name
            if p.exists():
                text = p.read_text(errors="replace")
                parts.append(f"--- {p} ---\n{text[-max_chars:]}")
        return "\n".join(parts) or "(no logs)"

    def stat_xml(self, timeout: float = 2.0) -> str:
        """The nginx-rtmp ``/stat`` XML page."""
        import urllib.request

        with urllib.request.urlopen(self.stat_url, timeout=timeout) as resp:  # nosec B310  # our own http:// URL
            return resp.read().decode("utf-8", "replace")

    def __enter__(self) -> NginxRtmpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort: never leave an nginx behind
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)  # master and workers
        except Exception:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m livedub_testkit.rtmp_server",
        description="Run a local nginx-rtmp server on 127.0.0.1 until Ctrl-C.",
    )
    ap.add_argument("--rtmp-port", type=int, default=1935)
    ap.add_argument("--http-port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--on-publish", default=None, help="on_publish hook URL")
    ap.add_argument("--on-publish-done", default=None, help="on_publish_done hook URL")
    ap.add_argument("--prefix", default=None, help="nginx prefix dir (default: a temp dir)")
    args = ap.parse_args(argv)
    srv = NginxRtmpServer(
        rtmp_port=args.rtmp_port or None,
        http_port=args.http_port or None,
        on_publish_url=args.on_publish,
        on_publish_done_url=args.on_publish_done,
        prefix=args.prefix,
        keep_prefix=args.prefix is not None,
    )
    try:
        srv.start()
    except NginxRtmpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"nginx-rtmp running (pid {srv.proc.pid}), prefix {srv.prefix}", flush=True)
    print(f"  publish/play: {srv.url('<name>')}   e.g. {srv.url('demo/in')}", flush=True)
    print(f"  stat:         {srv.stat_url}", flush=True)
    print(f"  health:       {srv.health_url}", flush=True)
    print("Ctrl-C to stop.", flush=True)
    stop = False

    def _sig(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _sig)
    try:
        while not stop and srv.is_running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        rc = srv.proc.poll() if srv.proc else None
        srv.stop()
    if rc is not None:
        print(f"nginx exited with code {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
