"""What a stream may open (issue 12 #2, issue 9 #1): files only under --media-root, no foreign
protocols, no listener sockets, no path tricks in ids and languages.

Real media-service process and real HTTP requests; the positive case records a real file input
to a real file output (the STS is absent, so the original audio is kept).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from livedub_testkit import analysis
from livedub_testkit.services import MediaProcess

pytestmark = pytest.mark.timeout(120)

RTMP_OUT = "rtmp://127.0.0.1:1/live/x/out"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("media-root")


@pytest.fixture(scope="module")
def media(tmp_path_factory, root):
    proc = MediaProcess("--media-root", str(root), sts_url="http://127.0.0.1:9", sts_token="sts-token-for-this-test",
                        log_dir=tmp_path_factory.mktemp("media-logs"))
    proc.start(wait=60)
    yield proc
    proc.stop()


def refused(media, **body) -> str:
    body = {k: v for k, v in {"input_url": "rtmp://127.0.0.1:1/live/x/in", "output_url": RTMP_OUT, **body}.items()
            if v is not None}
    status, answer = media.api("POST", "/v1/streams", body)
    assert status == 400, (body, status, answer)
    assert media.api("GET", "/v1/streams")[1]["streams"] == [], "a refused request must start nothing"
    return answer["error"]["message"]


def test_files_outside_the_media_root_are_refused(media, root, tmp_path):
    assert "outside the media root" in refused(media, input_url="/etc/shadow")
    assert "outside the media root" in refused(media, output_url="file:///root/x.flv")
    assert "outside the media root" in refused(media, output_url=f"{root}/../escape.flv")
    outside = tmp_path / "secret.flv"
    outside.write_bytes(b"FLV")
    os.symlink(outside, root / "link.flv")
    assert "outside the media root" in refused(media, input_url=f"file://{root}/link.flv")
    assert "outside the media root" in refused(media, input_url=str(root))


def test_foreign_protocols_and_listener_sockets_are_refused(media):
    assert "absolute path" in refused(media, input_url="file://http://169.254.169.254/latest/meta-data/")
    assert "another URL scheme" in refused(media, input_url="file:///gopher://127.0.0.1:70/x")
    for url in ("http://127.0.0.1:9/x", "gopher://127.0.0.1/x", "unix:///run/x.sock", "data:,x", "tcp://127.0.0.1:9"):
        assert "unsupported URL" in refused(media, input_url=url)
    assert "unsupported URL" in refused(media, output_url="srt://127.0.0.1:9000")
    assert "mode must be caller" in refused(media, input_url="srt://127.0.0.1:9000?mode=listener")
    assert "'localaddr' is not allowed" in refused(media, input_url="srt://127.0.0.1:9000?localaddr=0.0.0.0")
    assert "whitespace" in refused(media, input_url="rtmp://127.0.0.1/live/x in")
    assert "at most 2048" in refused(media, input_url="rtmp://127.0.0.1/" + "a" * 2048)


def test_listener_options_cannot_hide_behind_a_fragment(media):
    """FFmpeg reads srt/udp options from the first `?` anywhere; these were accepted with 201 (issue 24 #1)."""
    for url in ("srt://127.0.0.1:9000#?mode=listener", "udp://127.0.0.1:9#?localport=53&localaddr=127.0.0.1"):
        assert "may not contain `#`" in refused(media, output_url=None, outputs=[{"kind": "srt", "url": url}])
    assert "second `?`" in refused(media, input_url="srt://127.0.0.1:9000?latency=20?mode=listener")


def test_ids_and_languages_cannot_carry_paths(media):
    for bad_id in (".", "..", "-x", "_x"):
        assert "starting with a letter or digit" in refused(media, id=bad_id)
    assert "target_languages.0" in refused(media, target_languages=["../../etc"], output_url=f"{RTMP_OUT}_{{lang}}")
    assert "source_language" in refused(media, source_language="en/../x")


@pytest.mark.slow
def test_a_file_under_the_media_root_is_read_and_recorded(media, root, short_media):
    shutil.copy(short_media.path, root / "show.mp4")
    status, snap = media.api("POST", "/v1/streams", {"id": "recorded", "input_url": f"file://{root}/show.mp4",
                                                     "output_url": f"{root}/show-es.flv"})
    assert status == 201, snap
    out = root / "show-es.flv"
    deadline = time.monotonic() + 30
    while not (out.exists() and out.stat().st_size > 200_000):
        assert time.monotonic() < deadline, media.api("GET", "/v1/streams/recorded")
        time.sleep(0.5)
    assert media.api("DELETE", "/v1/streams/recorded")[0] in (200, 204)
    info = analysis.probe(out)
    assert info["video"]["codec"] == "h264" and info["audio"]["codec"] == "aac"
