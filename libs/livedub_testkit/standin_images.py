"""Local stand-ins for the images that docker-compose.yml and the Dockerfile name but that cannot be
pulled here, each tagged with the exact name the real files use so that both run unchanged.

* The Python base (``python:3.11-slim-bookworm``): a debootstrapped Debian bookworm (minbase) with
  Debian's python3.11 and pip, the host's CA bundle and apt sources (builds reach the same package
  sources the host does), Debian's EXTERNALLY-MANAGED marker removed and ``python``/``pip`` in
  /usr/local/bin, where the official image has them.
* MediaMTX: the shared binary (``../shared/bin/mediamtx``) as ``/mediamtx``, the official image's
  entrypoint and config path, a static busybox for the shell, and ``wget`` for the hooks and the
  healthcheck (the ``-ffmpeg`` variant is Alpine, with busybox's sh and wget).
* Prometheus: Debian's ``prometheus`` binary with the ``prom/prometheus`` entrypoint, command,
  user (nobody), working directory and volume, and the same shell and ``wget`` (healthcheck).
* Redis: Debian's ``redis-server`` and ``redis-cli`` where the official image has them
  (/usr/local/bin), its user (redis, 999), working directory, volume and an entrypoint that runs
  the command as the official one does for a non-root user.
* nginx: Debian's ``nginx`` as /usr/sbin/nginx with the official image's user (nginx, 101),
  entrypoint and command (`docker import` takes no STOPSIGNAL), and the shell and ``wget`` its
  Alpine variant has.

A stand-in is made only when the name is neither present nor pullable, and carries the label
``org.livedub.standin`` with a digest of what it was made from: it is remade when that changes, and
a real image of the same name is never replaced.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from .docker_engine import unmount_under

LABEL = "org.livedub.standin"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = "/bin/busybox"  # Debian busybox-static
DEBIAN_PACKAGES = "python3,python3-pip,python3-venv,ca-certificates"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
NOBODY = 65534


class StandinUnavailable(RuntimeError):
    """What a stand-in needs is missing on this machine (the message is a skip reason)."""


def split_name(name: str) -> tuple[str, str]:
    repo, _, tag = name.rpartition(":")
    if not repo or "/" in tag:
        return name, "latest"
    return repo, tag


def _digest(*parts: bytes | str | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _log(msg: str, log: Callable[[str], None] | None) -> None:
    if log is not None:
        log(msg)


def ensure(client, name: str, recipe: str, make: Callable[[Path], Path], *, changes: list[str],
           log: Callable[[str], None] | None = None, pull_timeout: float = 30) -> str:
    """Make sure `name` exists: as it is, pulled, or made by `make(tmpdir) -> rootfs tar` and imported.

    Returns "present", "pulled", "cached stand-in" or "stand-in".
    """
    import docker

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        image = None
    if image is not None:
        made_from = (image.labels or {}).get(LABEL)
        if made_from is None:
            return "present"  # a real image: never replaced
        if made_from == recipe:
            return "cached stand-in"
        _log(f"{name}: stand-in made from something else, making it again", log)  # the tag moves to the new one
    else:
        repo, tag = split_name(name)
        try:
            docker.APIClient(base_url=client.api.base_url, timeout=pull_timeout).pull(repo, tag=tag)
            return "pulled"
        except Exception as exc:  # no registry reachable: make it here
            _log(f"{name}: cannot be pulled ({type(exc).__name__}), making a local stand-in", log)
    with tempfile.TemporaryDirectory(prefix="livedub-standin-") as tmp:
        rootfs = make(Path(tmp))
        repo, tag = split_name(name)
        client.api.import_image_from_file(str(rootfs), repository=repo, tag=tag,
                                          changes=[*changes, f'LABEL {LABEL}="{recipe}"'])
    return "stand-in"


# ------------------------------------------------------------------------------ python base
def _debian_mirror() -> str:
    """The host's Debian mirror (first deb822 URIs or sources.list line), else deb.debian.org."""
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split()
                if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                    return words[1]
                if words[:1] == ["deb"] and len(words) > 2 and "security" not in line:
                    return words[1] if not words[1].startswith("[") else words[2]
    return "http://deb.debian.org/debian"


def python_base_recipe() -> str:
    return _digest("python-bookworm-2", DEBIAN_PACKAGES, Path(HOST_CA_BUNDLE), _debian_mirror())


def make_python_base(tmp: Path, cache: Path) -> Path:
    """debootstrap bookworm into tmp/rootfs, adjust it like the official image, tar it."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.access(debootstrap, os.X_OK):
        raise StandinUnavailable("debootstrap is not installed (Debian package debootstrap; `make setup` installs it)")
    rootfs = tmp / "rootfs"
    debs = cache / "debootstrap-debs"  # downloaded packages, kept for the next stand-in
    debs.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={DEBIAN_PACKAGES}", f"--cache-dir={debs}",
             "bookworm", str(rootfs), _debian_mirror()],
            capture_output=True, text=True, timeout=900)
    finally:
        unmount_under(rootfs)  # debootstrap mounts /proc (and /sys) inside; a failed run leaves them
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise StandinUnavailable("debootstrap bookworm failed: " + " | ".join(tail))
    shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    host_sources = Path("/etc/apt/sources.list.d/debian.sources")
    if host_sources.exists():
        shutil.copyfile(host_sources, rootfs / "etc/apt/sources.list.d/debian.sources")
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    elif Path("/etc/apt/sources.list").exists():
        shutil.copyfile("/etc/apt/sources.list", rootfs / "etc/apt/sources.list")
    for marker in (rootfs / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for link, target in (("python", "/usr/bin/python3"), ("python3", "/usr/bin/python3"), ("pip", "/usr/bin/pip3"),
                         ("pip3", "/usr/bin/pip3")):
        (rootfs / "usr/local/bin" / link).symlink_to(target)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (rootfs / junk).glob("*"):
            if p.is_file():
                p.unlink()
    # "slim": like Debian's slim images (which the official one is made from), no documentation,
    # manual pages or translations; the copyright files stay.
    for docs in ("usr/share/man", "usr/share/info", "usr/share/locale"):
        shutil.rmtree(rootfs / docs, ignore_errors=True)
        (rootfs / docs).mkdir()
    for p in (rootfs / "usr/share/doc").rglob("*"):
        if p.is_file() and p.name != "copyright":
            p.unlink()
    tar = tmp / "rootfs.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar), "."], check=True, timeout=600)
    shutil.rmtree(rootfs, ignore_errors=True)
    return tar


PYTHON_BASE_CHANGES = [f"ENV {PATH_ENV}", "ENV LANG=C.UTF-8", 'CMD ["python3"]']


# ------------------------------------------------------------------------------ tar helpers
class _Rootfs:
    """A small root filesystem written straight into a tar (no files on disk, owners explicit)."""

    def __init__(self, path: Path):
        self.tar = tarfile.open(path, "w")
        self.dirs: set[str] = set()
        self.files: set[str] = set()

    def dir(self, path: str, uid: int = 0, mode: int = 0o755) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p in self.dirs:
                continue
            self.dirs.add(p)
            info = tarfile.TarInfo(p)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode if i == len(parts) else 0o755, uid, uid
            self.tar.addfile(info)

    def file(self, path: str, src: str | Path | None = None, data: bytes | None = None, mode: int = 0o644) -> None:
        self.dir(str(Path(path).parent))
        self.files.add(path.strip("/"))
        if data is None:
            data = Path(src).read_bytes()
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))

    def link(self, path: str, target: str) -> None:
        self.dir(str(Path(path).parent))
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self.tar.addfile(info)

    def program(self, binary: Path, dest: str) -> None:
        """A dynamically linked host program and the shared libraries it loads, at their host paths."""
        self.file(dest, binary, mode=0o755)
        for lib in _shared_libs(binary):
            if lib.as_posix().lstrip("/") not in self.files:
                self.file(str(lib), lib.resolve(), mode=0o755)

    def busybox(self, users: tuple[tuple[str, int], ...] = ()) -> None:
        """Static busybox with its applets linked in /bin (sh, ...), and GNU wget as `wget`: Debian's
        static busybox crashes in `wget -T` (the hooks' timeout), Alpine's (the real images') does not.
        `users`: (name, uid) of the image's own service user besides root and nobody."""
        if not os.access(BUSYBOX, os.X_OK):
            raise StandinUnavailable("busybox is not installed (Debian package busybox-static; `make setup` installs it)")
        self.file("/bin/busybox", BUSYBOX, mode=0o755)
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet not in ("busybox", "wget"):
                self.link(f"/bin/{applet}", "busybox")
        self.program(_host_program("wget"), "/usr/bin/wget")
        accounts = (("root", 0), *users, ("nobody", NOBODY))
        self.file("/etc/passwd", data="".join(f"{name}:x:{uid}:{uid}:{name}:/{'root' if uid == 0 else 'home'}:"
                                              f"{'/bin/sh' if uid == 0 else '/bin/false'}\n"
                                              for name, uid in accounts).encode())
        self.file("/etc/group", data="".join(f"{name}:x:{uid}:\n" for name, uid in accounts).encode())
        self.file("/etc/ssl/certs/ca-certificates.crt", HOST_CA_BUNDLE)
        # The image's /tmp (an entry of the tar), not a file of this host.
        self.dir("/tmp", mode=0o1777)  # nosec B108
        self.dir("/root", mode=0o700)

    def close(self) -> None:
        self.tar.close()


# ------------------------------------------------------------------------------ mediamtx
MEDIAMTX_CHANGES = [f"ENV {PATH_ENV}", 'ENTRYPOINT ["/mediamtx"]']


def mediamtx_recipe(binary: Path) -> str:
    return _digest("mediamtx-2", binary, *_tools_digest())


def make_mediamtx(tmp: Path, binary: Path) -> Path:
    tar = tmp / "rootfs.tar"
    fs = _Rootfs(tar)
    fs.busybox()
    fs.file("/mediamtx", binary, mode=0o755)
    fs.close()
    return tar


# ------------------------------------------------------------------------------ prometheus
PROMETHEUS_CHANGES = [
    f"ENV {PATH_ENV}",
    f"USER {NOBODY}",
    "WORKDIR /prometheus",
    "EXPOSE 9090",
    'VOLUME ["/prometheus"]',
    'ENTRYPOINT ["/bin/prometheus"]',
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]',
]


def _host_program(name: str, package: str | None = None) -> Path:
    path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)),
                                      f"/usr/bin/{name}")
    if not os.access(path, os.X_OK):
        raise StandinUnavailable(f"{name} is not installed (Debian package {package or name}; "
                                 "`make setup` installs it)")
    return Path(path)


def _shared_libs(binary: Path) -> list[Path]:
    """The shared libraries a dynamically linked binary loads (from ldd), loader included."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0] if words else ""
        if path.startswith("/"):
            libs.append(Path(path))
    return libs


def _tools_digest() -> list[Path]:
    """What `_Rootfs.busybox` puts in an image (its part of a recipe)."""
    wget = _host_program("wget")
    return [Path(BUSYBOX), wget, *_shared_libs(wget)]


def prometheus_recipe() -> str:
    binary = _host_program("prometheus")
    return _digest("prometheus-2", binary, *_tools_digest(), *_shared_libs(binary))


def make_prometheus(tmp: Path) -> Path:
    tar = tmp / "rootfs.tar"
    fs = _Rootfs(tar)
    fs.busybox()
    fs.program(_host_program("prometheus"), "/bin/prometheus")
    fs.file("/etc/prometheus/prometheus.yml", data=b"scrape_configs: []\n")
    fs.dir("/prometheus", uid=NOBODY, mode=0o755)
    fs.close()
    return tar


# ------------------------------------------------------------------------------ redis
REDIS_UID = 999
# The official image's entrypoint, as it behaves for a non-root user: options alone run redis-server.
_EXEC_ENTRYPOINT = b"""#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
exec "$@"
"""
REDIS_CHANGES = [
    f"ENV {PATH_ENV}",
    "WORKDIR /data",
    'VOLUME ["/data"]',
    "EXPOSE 6379",
    'ENTRYPOINT ["docker-entrypoint.sh"]',
    'CMD ["redis-server"]',
]


def redis_recipe() -> str:
    server, cli = _host_program("redis-server"), _host_program("redis-cli", "redis-tools")
    return _digest("redis-1", _EXEC_ENTRYPOINT, server.resolve(), cli.resolve(), *_tools_digest(),
                   *_shared_libs(server), *_shared_libs(cli))


def make_redis(tmp: Path) -> Path:
    tar = tmp / "rootfs.tar"
    fs = _Rootfs(tar)
    fs.busybox(users=(("redis", REDIS_UID),))
    fs.program(_host_program("redis-server"), "/usr/local/bin/redis-server")
    fs.program(_host_program("redis-cli", "redis-tools"), "/usr/local/bin/redis-cli")
    fs.file("/usr/local/bin/docker-entrypoint.sh", data=_EXEC_ENTRYPOINT, mode=0o755)
    fs.dir("/data", uid=REDIS_UID, mode=0o755)
    fs.close()
    return tar


# ------------------------------------------------------------------------------ nginx
NGINX_UID = 101
NGINX_CHANGES = [
    f"ENV {PATH_ENV}",
    "EXPOSE 80",
    'ENTRYPOINT ["/docker-entrypoint.sh"]',
    'CMD ["nginx", "-g", "daemon off;"]',
]


def nginx_recipe() -> str:
    binary = _host_program("nginx")
    return _digest("nginx-1", _EXEC_ENTRYPOINT, binary, *_tools_digest(), *_shared_libs(binary))


def make_nginx(tmp: Path) -> Path:
    tar = tmp / "rootfs.tar"
    fs = _Rootfs(tar)
    fs.busybox(users=(("nginx", NGINX_UID),))
    fs.program(_host_program("nginx"), "/usr/sbin/nginx")
    fs.file("/docker-entrypoint.sh", data=_EXEC_ENTRYPOINT, mode=0o755)
    fs.close()
    return tar
