"""The dashboard's HLS player in a real browser, and the read-only viewer token (issue 10 #2, #4).

One stack (media-service with `--hls-js` and MEDIA_VIEWER_TOKEN) and one live stream (es, ca) with
an `hls` output, published in a loop so it is still live while the browser plays it. Headless
Chromium (Debian's, driven by playwright-core: tests/integration/browser/dashboard_hls.cjs) opens
the dashboard with the *viewer* token; hls.js (from npm, served by media-service) plays the
stream; the page's selectors list every audio language and the original and every subtitle
language; the test switches the audio to each other language (hls.js switches, fetches that
rendition, keeps decoding audio, the picture keeps moving) and the subtitles to Spanish then
Catalan (the browser's text track holds that language's cues, which are the service's own). The
same viewer token then reads everything over HTTP and is refused (403) for every change.

Needs `make setup` (scripts/bootstrap.sh installs chromium and the npm packages); without them
the test fails and names what is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from livedub_testkit import analysis
from livedub_testkit.services import http_get, http_json
from livedub_testkit.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".node" / "node_modules"
HLS_JS = NODE_MODULES / "hls.js" / "dist" / "hls.min.js"
CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).with_name("browser") / "dashboard_hls.cjs"
SID = "player"
VIEWER = "viewer-" + secrets.token_urlsafe(18)
SETUP = ("run `make setup` (scripts/bootstrap.sh installs the Debian package chromium and, from the npm "
         "registry, hls.js and playwright-core into .node/)")


def missing_prerequisites() -> list[str]:
    missing = [f"{p} ({what})" for p, what in ((CHROMIUM, "Debian package chromium"),
                                               (HLS_JS, "npm package hls.js"),
                                               (NODE_MODULES / "playwright-core" / "package.json",
                                                "npm package playwright-core")) if not p.exists()]
    node = shutil.which("node")
    if node is None:
        missing.append("node (Debian package nodejs)")
    else:
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if int(re.match(r"v(\d+)", version)[1]) < 20:
            missing.append(f"node >= 20 for playwright-core (this one is {version})")
    return missing


def get(stack, path: str, token: str, method: str = "GET", body: dict | None = None):
    return http_json(stack.media.url + path, method=method, body=body, token=token)


def fetch(stack, path: str, token: str) -> tuple[int, str, bytes]:
    return http_get(stack.media.url + path, token)


def segments(stack, rendition: str) -> list[str]:
    status, _, body = fetch(stack, f"/v1/streams/{SID}/hls/{rendition}/index.m3u8", stack.api_token)
    return re.findall(r"^(seg\d+\.(?:ts|vtt))$", body.decode(), re.M) if status == 200 else []


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    missing = missing_prerequisites()
    assert not missing, f"the browser test needs {missing}: {SETUP}"
    with LocalStack(workdir=tmp_path_factory.mktemp("stack"), media_args=("--hls-js", str(HLS_JS)),
                    media_env={"MEDIA_VIEWER_TOKEN": VIEWER}) as s:
        yield s


@pytest.fixture(scope="module")
def live(stack, short_media):
    """The stream, live: the clip published in a loop until the module's tests are done."""
    body = {"id": SID, "input_url": stack.url(f"{SID}/src"), "target_languages": ["es", "ca"],
            "outputs": [{"kind": "hls", "url": "hls://"}]}
    status, snap = get(stack, "/v1/streams", stack.api_token, "POST", body)
    assert status == 201, snap
    pub = analysis.publish(short_media.path, stack.url(f"{SID}/src"), loop=True)
    try:
        # hls.js starts 3 segments behind the live edge: wait for a window that deep, and a cue.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (len(segments(stack, "video")) >= 4
                                                   and len(segments(stack, "subs-es")) >= 2):
            time.sleep(0.5)
        assert len(segments(stack, "video")) >= 4, stack.media.logs(40)
        stack.wait_stream(SID, lambda s: s["counters"]["dubs_placed"] >= 1, timeout=20)
        yield pub
    finally:
        analysis.stop_process(pub)
        get(stack, f"/v1/streams/{SID}", stack.api_token, "DELETE")


def vtt_texts(stack, lang: str) -> str:
    status, ctype, body = fetch(stack, f"/v1/streams/{SID}/captions/{lang}.vtt", stack.api_token)
    assert status == 200 and ctype.startswith("text/vtt"), (status, ctype)
    return body.decode()


def test_dashboard_plays_hls_and_switches_audio_and_subtitles(stack, live, tmp_path):
    shot = tmp_path / "dashboard.png"
    env = {**os.environ, "LIVEDUB_NODE_MODULES": str(NODE_MODULES), "LIVEDUB_CHROMIUM": str(CHROMIUM)}
    started = time.monotonic()
    res = subprocess.run([shutil.which("node"), str(SCRIPT), stack.media.url + "/", VIEWER, SID, str(shot), "es", "ca"],
                         capture_output=True, text=True, timeout=120, env=env)
    took = time.monotonic() - started
    if res.returncode != 0:  # pytest.fail: the page's state in full, not cut like an assert's repr
        pytest.fail(f"browser run failed ({took:.1f} s):\n{res.stderr[-4000:]}\n{stack.media.logs(20)}")
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["errors"] == [], seen  # no page errors
    assert not [e for e in seen["hlsErrors"] if "fatal" in e], seen
    # Every language and the original, named as the master playlist names them; the first target plays first.
    assert seen["audio"] == [["es", "es"], ["ca", "ca"], ["en (original)", "en"]], seen
    assert seen["audioOptions"] == ["es", "ca", "en (original)"], seen
    assert seen["subtitleTracks"] == [["es", "es"], ["ca", "ca"], ["en", "en"]], seen
    assert seen["subtitleOptions"] == ["off", "es", "ca", "en"], seen
    assert seen["audioFirst"] == 0, seen
    # Each switch took, and what played next came from that rendition.
    assert [s["id"] for s in seen["audioSwitches"]] == [1, 2], seen
    for switch, rendition in zip(seen["audioSwitches"], ("audio-ca", "audio-original"), strict=True):
        assert switch["track"] == switch["id"], seen
        assert any(f.startswith(rendition + "/seg") and f.endswith(" 200") for f in switch["fetched"]), switch
    # Subtitles: the track shown is the one picked, alone, and its cues are that language's captions.
    texts = {}
    for index, lang in enumerate(("es", "ca")):
        sub = seen["subtitles"][lang]
        assert sub["track"] == index and sub["showing"] == 1, sub
        assert sub["cues"], sub
        served = vtt_texts(stack, lang)
        texts[lang] = {text for _, _, text in sub["cues"]}
        for start, end, text in sub["cues"]:
            assert end > start and text, sub
            assert all(line in served for line in text.split("\n")), (lang, text)
    assert not texts["es"] & texts["ca"], texts  # two languages, not one track twice
    # Still playing after all the switches.
    assert seen["advancedAtEnd"] > 1.0 and not seen["paused"], seen
    assert seen["previewHidden"], seen  # no RTMP output to preview: the player is the picture
    assert shot.stat().st_size > 10_000
    assert took < 60, f"the browser run took {took:.1f} s"


def test_viewer_token_reads_everything_and_changes_nothing(stack, live):
    base = f"/v1/streams/{SID}"
    # Reads: the stream list and snapshot, the playlists and a segment of each kind, captions, events.
    status, listing = get(stack, "/v1/streams", VIEWER)
    assert status == 200 and [s["id"] for s in listing["streams"]] == [SID], listing
    assert get(stack, base, VIEWER)[0] == 200
    for path in ("hls/master.m3u8", "hls/video/index.m3u8", f"hls/video/{segments(stack, 'video')[-1]}",
                 f"hls/audio-ca/{segments(stack, 'audio-ca')[-1]}", f"hls/subs-es/{segments(stack, 'subs-es')[-1]}",
                 "captions/es.vtt", "events?since=0"):
        status, ctype, body = fetch(stack, f"{base}/{path}", VIEWER)
        assert status == 200 and body, (path, status, body[:200])
    status, link = get(stack, f"{base}/captions/ca/link", VIEWER, "POST", {})
    assert status == 200 and "sig=" in link["vtt"], link  # a signed read link, as the dashboard asks
    # Changes: every one refused with 403 and a JSON error that says why.
    mix = get(stack, base, stack.api_token)[1]["mix"]
    for method, path, body in (("PATCH", base, {"mix": "passthrough"}), ("POST", f"{base}/bypass", {}),
                               ("DELETE", base, None), ("POST", "/v1/streams", {"id": "other", "input_url": "x"})):
        status, err = get(stack, path, VIEWER, method, body)
        assert status == 403, (method, path, status, err)
        assert err["error"]["code"] == "forbidden" and "read-only" in err["error"]["message"], err
    snap = get(stack, base, stack.api_token)[1]
    assert snap["mix"] == mix and snap["state"] == "running", snap  # nothing changed
    assert [s["id"] for s in get(stack, "/v1/streams", VIEWER)[1]["streams"]] == [SID]
    # The API token still changes things; a wrong token is 401, not 403.
    assert get(stack, base, stack.api_token, "PATCH", {"mix": "replace"})[1]["mix"] == "replace"
    assert get(stack, "/v1/streams", VIEWER + "x")[0] == 401
