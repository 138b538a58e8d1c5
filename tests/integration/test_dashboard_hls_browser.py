"""The dashboard's HLS player in a real browser (issue 10 #2, #4): headless Chromium (Debian's) with
hls.js (from npm, installed by `make setup` into .node/ and served by media-service with --hls-js)
plays a stream's `hls` output over the API's bearer token, lists every audio language and the
original and every subtitle language, switches the audio to the original and the subtitles to
Spanish while it plays, and shows that rendition's cues.

playwright-core drives /usr/bin/chromium (tests/integration/browser/dashboard_hls.cjs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from livedub_testkit import analysis
from livedub_testkit.stack import LocalStack

pytestmark = pytest.mark.timeout(150)

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".node" / "node_modules"
HLS_JS = NODE_MODULES / "hls.js" / "dist" / "hls.min.js"
SCRIPT = Path(__file__).with_name("browser") / "dashboard_hls.cjs"
SID = "player"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    missing = [str(p) for p in (HLS_JS, NODE_MODULES / "playwright-core", Path("/usr/bin/chromium")) if not p.exists()]
    assert not missing, f"run `make setup` (scripts/bootstrap.sh installs chromium and the npm packages): {missing}"
    with LocalStack(workdir=tmp_path_factory.mktemp("stack"), media_args=("--hls-js", str(HLS_JS))) as s:
        yield s


def test_dashboard_plays_hls_and_switches_audio_and_subtitles(stack, short_media, tmp_path):
    body = {"id": SID, "input_url": stack.url(f"{SID}/src"), "target_languages": ["es", "ca"],
            "outputs": [{"kind": "hls", "url": "hls://"}]}
    status, snap = stack.media.api("POST", "/v1/streams", body)
    assert status == 201, snap
    pub = analysis.publish(short_media.path, stack.url(f"{SID}/src"), extra_args=["-t", "12"])
    try:
        pub.wait(timeout=60)
        stack.wait_stream(SID, lambda s: s["output"]["state"] == "idle" and s["counters"]["dubs_placed"] >= 1,
                          timeout=20)
        shot = tmp_path / "dashboard.png"
        env = {**os.environ, "LIVEDUB_NODE_MODULES": str(NODE_MODULES)}
        started = time.monotonic()
        res = subprocess.run([shutil.which("node"), str(SCRIPT), stack.media.url + "/", stack.api_token, SID, str(shot)],
                             capture_output=True, text=True, timeout=90, env=env)
        assert res.returncode == 0, (res.stdout, res.stderr[-3000:])
        seen = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        analysis.stop_process(pub)
        stack.media.api("DELETE", f"/v1/streams/{SID}")
    assert seen["errors"] == [], seen
    assert seen["audio"] == [["es", "es"], ["ca", "ca"], ["en (original)", "en"]], seen
    assert seen["subtitles"] == [["es", "es"], ["ca", "ca"], ["en", "en"]], seen
    assert seen["audioBefore"] == 0 and seen["audioAfter"] == 2, seen  # default: the first target
    assert seen["cues"]["language"] == "es" and seen["cues"]["texts"], seen
    assert seen["advanced"] > 0.5 and not seen["paused"], seen  # still playing after the switches
    assert shot.stat().st_size > 10_000
    assert time.monotonic() - started < 60
