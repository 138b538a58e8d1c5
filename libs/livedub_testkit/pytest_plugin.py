"""pytest fixtures shared by livedub tests.

Registered through the ``pytest11`` entry point of the livedub-testkit distribution
(libs/livedub_testkit/pyproject.toml): pytest loads this module wherever that distribution is
installed, with no ``pytest_plugins`` line (``-p no:livedub_testkit`` turns it off).

* ``livedub_cache_dir`` (session): ``$LIVEDUB_CACHE`` or ``~/.cache/livedub``.
* ``rtmp_server`` (function): a started :class:`~livedub_testkit.rtmp_server.NginxRtmpServer`
  (no hooks; build your own ``NginxRtmpServer(on_publish_url=...)`` for hook tests).
* ``redis_server`` (function): a started :class:`~livedub_testkit.redis_server.RedisServer`
  (Debian's redis-server, no persistence: ``.restart()`` brings it back empty).
* ``demo_media`` (session): :class:`~livedub_testkit.fixtures.FixtureInfo` of the 60 s 1280x720
  demo MP4 (``.path``, ``.markers``, ``.speech_spans``, ...), generated once and cached on disk.
* ``short_media`` (session): the same for a 20 s 640x360 MP4.
* ``local_stack`` (module): a started :class:`~livedub_testkit.stack.LocalStack` (nginx-rtmp with
  publish hooks, sts-service, media-service at the default output delay), shared by a module's tests.

The media files are cached across sessions (sidecar JSON with the generation parameters);
concurrent sessions (e.g. pytest-xdist) are serialised by a lock file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .fixtures import FixtureInfo, cached_demo_media, default_cache_dir
from .redis_server import RedisServer
from .rtmp_server import NginxRtmpServer
from .stack import LocalStack


@pytest.fixture(scope="session")
def livedub_cache_dir() -> Path:
    return default_cache_dir()


@pytest.fixture
def rtmp_server():
    srv = NginxRtmpServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def redis_server():
    """A real redis-server on a loopback port, empty, without persistence (`.restart()` empties it)."""
    srv = RedisServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def demo_media(livedub_cache_dir) -> FixtureInfo:
    return cached_demo_media(livedub_cache_dir)


@pytest.fixture(scope="session")
def short_media(livedub_cache_dir) -> FixtureInfo:
    return cached_demo_media(livedub_cache_dir, seconds=20, width=640, height=360)


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    stack = LocalStack(workdir=tmp_path_factory.mktemp("stack"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
