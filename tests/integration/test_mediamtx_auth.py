"""MediaMTX users as deployed, checked by publishing through the real server (issue 22 #4).

deploy/mediamtx/publishers.py renders the users into the configuration file (environment overrides
mean different things in different MediaMTX releases). Here the file the tool wrote is what the
real MediaMTX runs: a broadcaster may publish its own input and nothing else, media-service's user
(its password from MEDIAMTX_MEDIA_PASS) reads inputs, publishes outputs and reads the API, nobody
gets in with a wrong password or none, and the template alone does not start.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from livedub_testkit.mediamtx import DEPLOY, MEDIA_USER, MISSING, MediaMtxError, MediaMtxServer, find_mediamtx

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(find_mediamtx() is None, reason=MISSING)]

MEDIA_PASS = "media-pass-of-this-test-0123456789"


def publishers(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY / "publishers.py"), "--file", str(tmp_path / "publishers.env"),
                           "--out", str(tmp_path / "mediamtx.rendered.yml"), "--env-file", str(tmp_path / "none.env"),
                           *args], capture_output=True, text=True, timeout=30,
                          env={"MEDIAMTX_MEDIA_PASS": MEDIA_PASS, "PATH": "/usr/bin:/bin"})


def password_of(added: subprocess.CompletedProcess) -> str:
    return added.stdout.split("&pass=", 1)[1].split()[0]


def ffmpeg_publish(url: str, seconds: float = 2.0, background: bool = False):
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac", "-f", "flv", url]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).returncode == 0


def ffprobe_reads(url: str) -> bool:
    proc = subprocess.run(["ffprobe", "-hide_banner", "-loglevel", "error", "-rw_timeout", "8000000",
                           "-show_entries", "stream=codec_name", "-of", "csv=p=0", url],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode == 0 and "h264" in proc.stdout


def test_the_template_alone_does_not_start(tmp_path):
    template = (DEPLOY / "mediamtx.yml").read_text()
    with pytest.raises(MediaMtxError, match="credential"):
        MediaMtxServer(config=template, workdir=tmp_path).start()


@pytest.mark.slow
def test_broadcasters_and_media_service_as_the_rendered_file_allows(tmp_path):
    added = publishers(tmp_path, "add", "studio-a")
    assert added.returncode == 0, added.stderr
    assert publishers(tmp_path, "add", "studio-b").returncode == 0
    password = password_of(added)
    rendered = (tmp_path / "mediamtx.rendered.yml").read_text()
    assert password not in rendered and MEDIA_PASS not in rendered, "the file holds hashes only"
    mtx = MediaMtxServer(config=rendered, workdir=tmp_path / "run")
    with mtx:
        # A broadcaster: its own input only, and only with its own password.
        assert not ffmpeg_publish(mtx.url("studio-a/in", "studio-a", "wrong-password-0123456789"))
        assert not ffmpeg_publish(mtx.url("studio-a/in"))
        assert not ffmpeg_publish(mtx.url("studio-b/in", "studio-a", password))
        assert not ffmpeg_publish(mtx.url("studio-a/out", "studio-a", password))
        publisher = ffmpeg_publish(mtx.url("studio-a/in", "studio-a", password), seconds=25, background=True)
        try:
            mtx.wait_ready_path("studio-a/in", timeout=20)
            # media-service: reads inputs and publishes outputs with its password; nobody else reads inputs
            assert ffprobe_reads(mtx.url("studio-a/in", MEDIA_USER, MEDIA_PASS))
            assert not ffprobe_reads(mtx.url("studio-a/in", MEDIA_USER, "wrong-password-0123456789"))
            assert not ffprobe_reads(mtx.url("studio-a/in"))
            assert not ffmpeg_publish(mtx.url("studio-a/out", MEDIA_USER, "wrong-password-0123456789"))
            out = ffmpeg_publish(mtx.url("studio-a/out", MEDIA_USER, MEDIA_PASS), seconds=15, background=True)
            try:
                mtx.wait_ready_path("studio-a/out", timeout=20)
                assert ffprobe_reads(mtx.url("studio-a/out")), "viewers read the dubbed outputs anonymously"
            finally:
                out.kill()
                out.wait()
        finally:
            publisher.kill()
            publisher.wait()
        # The control API: media-service's user from any address; without it, only loopback
        # (127.0.0.2 is a local address the loopback-only entry does not list).
        assert mtx.api("/v3/paths/list", auth=(MEDIA_USER, MEDIA_PASS), source="127.0.0.2")[0] == 200
        assert mtx.api("/v3/paths/list", auth=(MEDIA_USER, "wrong-password-0123456789"), source="127.0.0.2")[0] == 401
        assert mtx.api("/v3/paths/list", auth=("studio-a", password), source="127.0.0.2")[0] == 401
        assert mtx.api("/v3/paths/list", source="127.0.0.2")[0] == 401
        assert mtx.api("/v3/paths/list")[0] == 200  # the healthcheck, from loopback
