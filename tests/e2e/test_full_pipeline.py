"""End to end: a 60 s 720p30 broadcast through the RTMP server, media-service and the real sts-service.

The RTMP server is the real MediaMTX with the deployment's configuration when ../shared/bin/mediamtx
is there (the broadcaster's own user, the hook script, media-service with its own credentials),
else nginx-rtmp; LIVEDUB_RTMP_SERVER=nginx|mediamtx chooses. The stream is published the way a
broadcaster would (ffmpeg -> RTMP); nothing is started by hand: the publish hook starts the dubbing
worker. Every claim is checked on the recorded output.
"""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from livedub_testkit import analysis
from livedub_testkit.services import http_json
from livedub_testkit.speech import word_error_rate
from livedub_testkit.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STREAM = "broadcast"


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample family filtered by labels."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def run(demo_media, tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    with LocalStack(workdir=work, rtmp=os.environ.get("LIVEDUB_RTMP_SERVER") or "auto", publishers=(STREAM,)) as stack:
        out = work / "out.flv"
        rec = stack.record(f"{STREAM}/out", out)
        pub = analysis.publish(demo_media.path, stack.publish_url(f"{STREAM}/in"))
        started = time.monotonic()
        worker_seen = None
        while pub.poll() is None:
            status, _ = stack.media.api("GET", f"/v1/streams/{STREAM}")
            if status == 200 and worker_seen is None:
                worker_seen = time.monotonic() - started
            time.sleep(0.5)
        assert pub.returncode == 0, open(pub.log_path).read()
        # Play out the buffered output (the output closes itself once everything was written).
        stack.wait_stream(STREAM, lambda s: s["output"]["state"] == "idle", timeout=30)
        analysis.stop_process(rec)
        _, snap = stack.media.api("GET", f"/v1/streams/{STREAM}")
        _, events = stack.media.api("GET", f"/v1/events?stream={STREAM}")
        _, media_metrics = http_json(stack.media.url + "/metrics")
        _, sts_metrics = http_json(stack.sts.url + "/metrics")
        secrets = {"STS token": stack.sts_token, "API token": stack.api_token, "hook token": stack.hook_token}
        if stack.rtmp_kind == "mediamtx":
            secrets |= {"media-service's MediaMTX password": stack.rtmp.media_pass,
                        "the broadcaster's password": stack.rtmp.publishers[STREAM]}
    # Every log line of the run: both services, the RTMP server (nginx's error and access logs and
    # stdout, or MediaMTX's), the ffmpeg publisher and recorder. (nginx.conf holds the hook URLs'
    # ?token= by necessity: not a log.)
    logs = {p.relative_to(work): p.read_text(errors="replace") for p in work.rglob("*.log") if p.is_file()}
    return {"info": demo_media, "out": out, "snap": snap, "events": events["events"], "rtmp": stack.rtmp_kind,
            "media_metrics": media_metrics, "sts_metrics": sts_metrics, "worker_seen": worker_seen,
            "logs": logs, "secrets": secrets}


def matched_video(run) -> tuple[list, list, int, float]:
    """Source and output video packets, the index of the source packet the output starts with, and
    the output's time shift. Through MediaMTX packets are compared without SEI/SPS/PPS (it re-packs
    what it relays: `analysis.h264_slices`)."""
    src, got = analysis.video_packets(run["info"].path), analysis.video_packets(run["out"])
    if run["rtmp"] == "mediamtx":
        src = [(t, analysis.h264_slices(p)) for t, p in src]
        got = [(t, analysis.h264_slices(p)) for t, p in got]
    first = [p for _, p in src].index(got[0][1])
    return src, got, first, got[0][0] - src[first][0]


def test_fixture_is_what_the_test_expects(demo_media):
    info = analysis.probe(demo_media.path)
    assert abs(info["duration"] - 60.0) < 0.2
    assert info["video"]["codec"] == "h264" and (info["video"]["width"], info["video"]["height"]) == (1280, 720)
    assert abs(info["video"]["fps"] - 30) < 0.01
    assert info["audio"]["codec"] == "aac" and info["audio"]["sample_rate"] == 48000
    assert len(demo_media.speech_spans) >= 12 and len(demo_media.markers) >= 12
    assert max(np.diff(demo_media.markers)) <= 6.0
    offsets = analysis.av_offsets(demo_media.path)
    assert len(offsets) == len(demo_media.markers) and max(abs(o) for _, o in offsets) < 0.002


def test_publish_starts_a_worker_connected_to_sts(run):
    assert run["worker_seen"] is not None and run["worker_seen"] < 5.0
    kinds = [e["type"] for e in run["events"]]
    assert kinds[0] == "started" and "hook_publish" in kinds and "input_open" in kinds
    assert any(e["type"] == "sts_state" and e["data"]["state"] == "connected" for e in run["events"])
    assert run["snap"]["sts"]["state"] == "connected"


# One timing miss is tolerated (analysis.timing_misses says why); every other span must be dubbed.
def fallbacks(run) -> list[dict]:
    return [e["data"] for e in run["events"] if e["type"] == "fallback"]


def test_every_speech_span_went_through_the_real_sts(run):
    info, events = run["info"], run["events"]
    dubbed = [e["data"] for e in events if e["type"] == "dubbed"]
    missed = fallbacks(run)
    first_out = min(d["start_ms"] for d in dubbed) / 1000
    covered, words, errors = 0, 0, 0.0
    for a, b, text in info.speech_spans:
        # Timeline time 0 is the worker's first audio sample, which is input time ~0 here.
        parts = [d for d in dubbed if d["start_ms"] / 1000 < b and (d["start_ms"] + d["duration_ms"]) / 1000 > a]
        if b < first_out:
            continue
        if any(a - 0.3 <= f["start_ms"] / 1000 < b for f in missed):
            continue  # counted and explained in test_metrics_show_the_work_and_at_most_one_timing_miss
        assert parts, f"no dub for {a:.1f}-{b:.1f}s: {text!r}"
        heard = " ".join(p["transcript"] for p in parts)
        # A sentence longer than the fragment limit at this D is cut; the sts-service hears the
        # second piece behind the first (left context), so its first word is no longer misheard
        # ("She opened" as "Gee open" heard cold). On a busy machine the first piece's words may
        # come too late for the second's deadline, which is then heard cold by design and may lose
        # the words at the cut ("cheese and a" as "T's in the"): a sentence may lose a clause,
        # never more, and the run as a whole must stay close to what the model does on whole
        # sentences.
        wer = word_error_rate(text, heard)
        assert wer <= 1 / 3, (text, heard)
        n = len(text.split())
        words, errors = words + n, errors + wer * n
        spanish = " ".join(dub["text"] for p in parts for dub in p["dubs"] if dub["language"] == "es")
        assert spanish and spanish.lower() != heard.lower()
        covered += 1
    assert covered >= len(info.speech_spans) - 1 - len(missed), (covered, missed)
    assert errors / words <= 0.10, f"WER over every dubbed sentence {errors / words:.3f}"
    all_spanish = " ".join(dub["text"] for d in dubbed for dub in d["dubs"]).lower()
    assert len(re.findall(r"\b(el|la|de|y|en|los|las|una|un)\b", all_spanish)) > 20, all_spanish


def test_output_stream_is_h264_aac_of_the_expected_duration(run):
    info = analysis.probe(run["out"])
    assert info["video"]["codec"] == "h264" and info["audio"]["codec"] == "aac"
    assert info["audio"]["sample_rate"] == 48000 and (info["video"]["width"], info["video"]["height"]) == (1280, 720)
    src, got, first, shift = matched_video(run)
    payloads = [p for _, p in src]
    # nginx-rtmp keeps the recorder waiting, so it joins at the first or second keyframe (2 s GOP).
    # MediaMTX refuses a read until the output is published and keeps no GOP for late readers; the
    # output relay's first seconds arrive at once (its input probe), so the recorder joins later.
    assert first <= (300 if run["rtmp"] == "mediamtx" else 60), first
    assert all(o[1] == s for o, s in zip(got[:-1], payloads[first:])), "video must be passed through untouched"
    # The output covers the input from the worker's first sample (audio may start before the
    # first keyframe) to its end.
    starts = analysis.first_pts(run["out"])
    expected = run["info"].duration - (min(starts["audio"], starts["video"]) - shift)
    assert abs(info["duration"] - expected) <= 1.0, (info["duration"], expected)


def test_av_sync_within_20ms_at_every_marker(run):
    info = run["info"]
    offsets = analysis.av_offsets(run["out"])
    _, got, _, shift = matched_video(run)
    expected = [m + shift for m in info.markers if m + shift >= got[0][0]]
    assert len(offsets) >= len(expected) - 1, (offsets, expected)
    worst = max(abs(o) for _, o in offsets)
    assert worst <= 0.020, offsets
    first_half = np.mean([o for _, o in offsets[: len(offsets) // 2]])
    second_half = np.mean([o for _, o in offsets[len(offsets) // 2:]])
    assert abs(second_half - first_half) < 0.003, "A/V offset must not grow over time"


def test_dubbed_audio_energy_is_sane(run):
    info = run["info"]
    _, got, _, shift = matched_video(run)
    checked = 0
    for a, b, _ in info.speech_spans:
        if a + shift < got[0][0]:
            continue
        level_in = analysis.audio_rms_dbfs(info.path, a, b)
        level_out = analysis.audio_rms_dbfs(run["out"], a + shift, b + shift)
        assert -32 < level_out < -6 and abs(level_out - level_in) < 8, (a, level_in, level_out)
        checked += 1
    # the spans before the recorder joined (see test_output_stream_is_h264_aac_of_the_expected_duration)
    assert checked >= len(info.speech_spans) - (3 if run["rtmp"] == "mediamtx" else 1)


def test_metrics_show_the_work_and_at_most_one_timing_miss(run):
    spans = len(run["info"].speech_spans)
    mm, sm = run["media_metrics"], run["sts_metrics"]
    n = analysis.timing_misses(run["snap"]["counters"]["fallbacks"])
    assert len(fallbacks(run)) == n
    assert metric(mm, "media_fragments_sent_total", stream=STREAM) >= spans - 1
    assert metric(mm, "media_fragments_processed_total", stream=STREAM, status="ok") >= spans - 1 - n
    assert metric(mm, "media_fallback_total", stream=STREAM) == n
    assert metric(mm, "media_fragment_roundtrip_seconds_count", stream=STREAM) >= spans - 1 - n
    assert metric(sm, "sts_fragments_total", status="ok") >= spans - 1 - n
    # a failure the STS reports is a deadline it could not meet, never an engine error
    assert metric(sm, "sts_fragments_total", status="failed") == metric(sm, "sts_deadline_exceeded_total") <= n
    assert metric(sm, "sts_stage_duration_seconds_count", stage="asr") >= spans - 1 - n
    # The fixture's longer sentences exceed the fragment limit at this D: their second pieces were
    # heard behind the first (sts-service left context: `used` after a cut inside speech, protocol
    # 1.5 `continues`; `used_after_pause` after a cut in a pause, or a pause in the speech).
    heard_behind = sum(metric(sm, "sts_asr_left_context_total", outcome=o) for o in ("used", "used_after_pause"))
    assert heard_behind >= 1



def test_no_token_appears_in_any_log(run):
    """Issue 9 #3: the shared STS token and the API token never reach a log, an event or a snapshot."""
    assert any("media-service" in str(p) for p in run["logs"]) and len(run["logs"]) >= 4, sorted(run["logs"])
    exposed = {"events": str(run["events"]), "snapshot": str(run["snap"])}
    for path, text in {**{str(p): t for p, t in run["logs"].items()}, **exposed}.items():
        for name, secret in run["secrets"].items():
            assert secret not in text, f"the {name} appears in {path}"
