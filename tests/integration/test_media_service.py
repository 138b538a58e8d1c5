"""media-service with real nginx-rtmp, ffmpeg publishers/recorders and the real sts-service.

Each scenario runs in real time (publish -> dub -> record), so they share one stack per module.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from livedub_testkit import analysis
from livedub_testkit.fixtures import make_no_audio_video
from livedub_testkit.services import http_json
from livedub_testkit.stack import LocalStack
from media_service.config import MediaConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DELAY = MediaConfig.model_fields["output_delay_s"].default  # the local stack runs with the default D


@pytest.fixture(scope="module")
def stack(local_stack):
    return local_stack


def run_published(stack, media_path, name, *, tmp_path, extra_wait=DELAY + 3.0, during=None):
    """Record live/<name>/out, publish media to live/<name>/in (hook starts the worker), wait to the end."""
    out = tmp_path / f"{name}-out.flv"
    rec = analysis.record_stream(stack.url(f"{name}/out"), out)
    pub = analysis.publish(media_path, stack.url(f"{name}/in"))
    if during:
        during(pub)
    pub.wait(timeout=300)
    time.sleep(extra_wait)
    analysis.stop_process(rec)
    return out


def audio_packet_times(path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return np.array([float(p.pts * p.time_base) for p in c.demux(stream) if p.pts is not None])


def packet_alignment(src, out):
    """Index in `src` of `out`'s first video packet, and whether `out` follows `src` byte for byte.

    The recording's very last packet may be cut short by stopping the recorder: it is not compared.
    """
    src_payloads = [p for _, p in src]
    first = src_payloads.index(out[0][1])
    same = all(o[1] == s for o, s in zip(out[:-1], src_payloads[first:]))
    return first, same


@pytest.fixture(scope="module")
def dubbed(stack, short_media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dubbed")
    out = run_published(stack, short_media.path, "news", tmp_path=tmp)
    status, snap = stack.media.api("GET", "/v1/streams/news")
    return short_media, out, snap


def test_hook_started_worker_reports_its_work(stack, dubbed):
    info, out, snap = dubbed
    assert snap["id"] == "news" and snap["sts"]["state"] == "connected"
    c = snap["counters"]
    assert c["fragments_sent"] >= len(info.speech_spans) - 1
    missed = analysis.timing_misses(c["fallbacks"])
    assert c["fragments_processed"]["ok"] >= len(info.speech_spans) - 1 - missed
    assert c["dubs_placed"] == c["fragments_processed"]["ok"]
    assert abs(snap["output_delay_measured_s"] - DELAY) < 0.25
    assert abs(snap["av_offset_ms"]) < 1.0
    spanish = " ".join(d["text"] for r in snap["recent"] for d in r["dubs"])
    assert spanish and "the" not in spanish.lower().split(), spanish
    _, metrics = http_json(stack.media.url + "/metrics")
    assert 'media_fragments_processed_total{status="ok",stream="news"}' in metrics
    # the metric counts exactly what the snapshot counts (no fallback, or the one timing miss allowed)
    fallback_samples = [line for line in metrics.splitlines()
                        if line.startswith("media_fallback_total{") and 'stream="news"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in fallback_samples) == missed, fallback_samples


def test_output_video_is_the_input_video_byte_for_byte(dubbed):
    info, out, _ = dubbed
    src, got = analysis.video_packets(info.path), analysis.video_packets(out)
    first, same = packet_alignment(src, got)
    assert same, "output H.264 packets differ from the input's"
    # A hook-started worker joins the live stream at its next keyframe (GOP = 2 s = 60 frames).
    assert first <= 60 and len(got) >= len(src) - first - 2, (first, len(got), len(src))


def test_av_sync_at_every_marker(dubbed):
    info, out, _ = dubbed
    offsets = analysis.av_offsets(out)
    assert len(offsets) >= len(info.markers) - 1, (offsets, info.markers)
    worst = max(abs(o) for _, o in offsets)
    assert worst <= 0.020, offsets
    drift = offsets[-1][1] - offsets[0][1]
    assert abs(drift) <= 0.005, offsets


def spectral_similarity(a: np.ndarray, b: np.ndarray, sr: int = 48000) -> float:
    """Correlation of two clips' log band energies (20 ms frames, 24 bands 100 Hz-6 kHz).

    Insensitive to the millisecond-scale alignment of FLV timestamps, sensitive to what is said.
    """
    n = min(len(a), len(b))
    edges = np.geomspace(100, 6000, 25)

    def bands(x):
        win, hop = 960, 480
        frames = np.array([x[i:i + win] * np.hanning(win) for i in range(0, len(x) - win, hop)])
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        freqs = np.fft.rfftfreq(win, 1 / sr)
        cols = [power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])]
        return np.log10(np.array(cols).T + 1e-9)

    return float(np.corrcoef(bands(a[:n]).ravel(), bands(b[:n]).ravel())[0, 1])


def test_speech_is_dubbed_and_background_kept(dubbed):
    info, out, _ = dubbed
    src, got = analysis.video_packets(info.path), analysis.video_packets(out)
    first, _ = packet_alignment(src, got)
    shift = got[0][0] - src[first][0]  # output time of source time 0
    sx, sr, s0 = analysis.decode_audio(info.path)
    ox, orate, o0 = analysis.decode_audio(out)
    assert sr == orate == 48000
    end_out = o0 + len(ox) / sr

    def clip(x, t0, a, b):
        i, j = int((a - t0) * sr), int((b - t0) * sr)
        return x[i:j].mean(axis=1) if x.ndim == 2 else x[i:j]

    def level(x):
        return 20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-9)

    dubbed_spans = 0
    for a, b, _text in info.speech_spans:
        if a + shift < o0 or b + shift > end_out:
            continue
        s_, o_ = clip(sx, s0, a, b), clip(ox, o0, a + shift, b + shift)
        sim = spectral_similarity(s_, o_)
        assert sim < 0.92, f"speech {a:.1f}-{b:.1f}s was not dubbed (similarity {sim:.3f})"
        assert level(o_) > -35 and abs(level(o_) - level(s_)) < 10, (level(s_), level(o_))
        dubbed_spans += 1
    assert dubbed_spans >= len(info.speech_spans) - 1
    # Between sentences (music bed and sync markers) the output is the original.
    pauses = [(b1 + 0.3, a2 - 0.3) for (_, b1, _), (a2, _, _) in zip(info.speech_spans, info.speech_spans[1:])]
    checked = 0
    for a, b in pauses:
        if b - a < 0.3 or a + shift < o0 or b + shift > end_out:
            continue
        s_, o_ = clip(sx, s0, a, b), clip(ox, o0, a + shift, b + shift)
        sim = spectral_similarity(s_, o_)
        assert sim > 0.95, f"pause {a:.1f}-{b:.1f}s should be the original audio (similarity {sim:.3f})"
        assert abs(level(o_) - level(s_)) < 1.5
        checked += 1
    assert checked >= 2


def test_sts_absent_killed_and_back(stack, short_media, tmp_path):
    """Output never stops: STS missing at start, killed mid-stream, restarted: fallback then dubbing."""
    stack.sts.stop()
    out = tmp_path / "resilient.flv"
    rec = analysis.record_stream(stack.url("resilient/out"), out)
    pub = analysis.publish(short_media.path, stack.url("resilient/in"), loop=True)
    try:
        snap = stack.wait_stream("resilient", lambda s: s["counters"]["fallbacks"].get("sts_unavailable", 0) >= 1,
                                 timeout=40)
        assert snap["sts"]["state"] in ("reconnecting", "connecting") and snap["state"] == "running"
        stack.sts.start(wait=180)
        snap = stack.wait_stream("resilient", lambda s: s["counters"]["dubs_placed"] >= 1, timeout=60)
        placed = snap["counters"]["dubs_placed"]
        stack.sts.kill()
        snap = stack.wait_stream("resilient", lambda s: s["sts"]["state"] != "connected", timeout=20)
        fallbacks = sum(snap["counters"]["fallbacks"].values())
        snap = stack.wait_stream("resilient", lambda s: sum(s["counters"]["fallbacks"].values()) > fallbacks,
                                 timeout=40)
        stack.sts.start(wait=180)
        stack.wait_stream("resilient", lambda s: s["counters"]["dubs_placed"] > placed, timeout=60)
    finally:
        analysis.stop_process(pub)
        time.sleep(DELAY + 2)
        analysis.stop_process(rec)
        stack.media.api("DELETE", "/v1/streams/resilient")
        if stack.sts.proc is None or stack.sts.proc.poll() is not None:
            stack.sts.start(wait=180)
    # No hole in the output audio: AAC packets follow each other without gaps, over the whole run
    # (the four phases take ~10 s of output at D = 2.5 s: more than 200 packets of 21.3 ms).
    pts = audio_packet_times(out)
    gaps = np.diff(pts)
    assert len(pts) > 200 and gaps.max() < 0.030, f"{len(pts)} packets, largest gap {gaps.max() * 1000:.0f} ms"
    # And never silent: the music bed is under everything.
    levels = [db for _, db in analysis.audio_rms_series(out, 0.5)[1:-2]]
    assert min(levels) > -50, min(levels)


def test_publisher_restart_recovers(stack, short_media, tmp_path):
    pub = analysis.publish(short_media.path, stack.url("comeback/in"))
    stack.wait_stream("comeback", lambda s: s["counters"]["video_packets_in"] > 90, timeout=30)
    analysis.stop_process(pub)
    stack.wait_stream("comeback", lambda s: s["state"] == "reconnecting_input", timeout=20)
    pub = analysis.publish(short_media.path, stack.url("comeback/in"))
    try:
        snap = stack.wait_stream("comeback", lambda s: s["input"]["sessions"] == 2 and s["state"] == "running",
                                 timeout=20)
        before = snap["counters"]["video_packets_out"]
        snap = stack.wait_stream("comeback", lambda s: s["counters"]["video_packets_out"] > before + 60,
                                 timeout=DELAY + 10)
        assert snap["output"]["state"] == "writing"
    finally:
        analysis.stop_process(pub)
        stack.media.api("DELETE", "/v1/streams/comeback")


def test_input_without_audio_passes_video_and_says_why(stack, tmp_path):
    path = make_no_audio_video(tmp_path / "silent.mp4", seconds=12, width=320, height=180)
    path = path.path
    out = run_published(stack, path, "mute", tmp_path=tmp_path, extra_wait=DELAY + 2)
    _, snap = stack.media.api("GET", "/v1/streams/mute")
    assert "no audio" in snap["input"]["warning"]
    assert snap["counters"]["fragments_sent"] == 0 and snap["counters"]["video_packets_out"] > 200
    src, got = analysis.video_packets(path), analysis.video_packets(out)
    assert packet_alignment(src, got)[1]


def test_rest_api_errors_are_clear_and_harmless(stack):
    api = stack.media.api
    status, body = http_json(stack.media.url + "/v1/streams", method="POST", body=None, token=stack.api_token)
    assert status == 400
    status, body = api("POST", "/v1/streams", {"output_url": "rtmp://127.0.0.1/x"})
    assert status == 400 and "input_url" in body["error"]["message"]
    status, body = api("POST", "/v1/streams", {"input_url": "http://example/x", "output_url": "rtmp://127.0.0.1/x"})
    assert status == 400 and "unsupported URL" in body["error"]["message"]
    status, body = api("POST", "/v1/streams", {"input_url": "rtmp://127.0.0.1:1/live/x", "output_url":
                                               "rtmp://127.0.0.1:1/live/y", "mix": "loud"})
    assert status == 400 and "mix" in body["error"]["message"]
    status, body = api("POST", "/v1/streams", {"input_url": "rtmp://127.0.0.1:1/live/x", "output_url":
                                               "rtmp://127.0.0.1:1/live/y", "output_delay_s": 1.5})
    assert status == 400 and "output_delay_s: 1.5 s is too short" in body["error"]["message"]
    assert api("GET", "/v1/streams/nope")[0] == 404
    assert api("DELETE", "/v1/streams/nope")[0] == 404
    # An unreachable input: the stream exists, says why, and nothing else is disturbed.
    req = {"id": "nowhere", "input_url": "rtmp://127.0.0.1:1/live/x", "output_url": "rtmp://127.0.0.1:1/live/y"}
    status, body = api("POST", "/v1/streams", req)
    assert status == 201 and body["id"] == "nowhere"
    assert api("POST", "/v1/streams", req)[0] == 200  # idempotent
    snap = stack.wait_stream("nowhere", lambda s: "connection refused" in s["reason"], timeout=15)
    assert snap["state"] == "waiting_input"
    status, body = api("POST", "/v1/streams", {**req, "input_url": "rtmp://127.0.0.1:2/live/x"})
    assert status == 409
    status, body = api("PATCH", "/v1/streams/nowhere", {"mix": "passthrough"})
    assert status == 200 and body["mix"] == "passthrough"
    assert api("PATCH", "/v1/streams/nowhere", {"mix": "loud"})[0] == 400
    assert api("POST", "/v1/streams/nowhere/bypass")[1]["mix"] == "passthrough"
    assert api("DELETE", "/v1/streams/nowhere")[0] == 200
    assert api("GET", "/v1/streams/nowhere")[0] == 404
    status, body = api("GET", "/v1/events?since=0&stream=nowhere")
    kinds = [e["type"] for e in body["events"]]
    assert kinds[0] == "started" and "mix" in kinds and kinds[-1] == "stopped"


def test_api_token_is_required_when_set(tmp_path):
    s = LocalStack(workdir=tmp_path, api_token="s3cret-test-token", start_sts=False, hooks=False)
    try:
        s.start()
        assert http_json(s.media.url + "/v1/streams")[0] == 401
        assert http_json(s.media.url + "/v1/streams", token="wrong")[0] == 401
        assert http_json(s.media.url + "/v1/streams", token="s3cret-test-token")[0] == 200
        assert http_json(s.media.url + "/health")[0] == 200
    finally:
        s.stop()


def test_publish_query_selects_languages_and_each_gets_an_output(stack, short_media, tmp_path):
    """`live/duo/in?lang=es,ca` -> one worker, one ASR pass, outputs live/duo/es and live/duo/ca."""
    recs = {lang: analysis.record_stream(stack.url(f"duo/{lang}"), tmp_path / f"duo-{lang}.flv")
            for lang in ("es", "ca")}
    pub = analysis.publish(short_media.path, stack.url("duo/in") + "?lang=es,ca")
    try:
        pub.wait(timeout=120)
        snap = stack.wait_stream("duo", lambda s: s["output"]["state"] == "idle", timeout=DELAY + 15)
    finally:
        for rec in recs.values():
            analysis.stop_process(rec)
        stack.media.api("DELETE", "/v1/streams/duo")
    assert snap["target_languages"] == ["es", "ca"]
    assert set(snap["outputs"]) == {"es", "ca"}  # URLs redacted (…/live/***): the recordings of duo/es, duo/ca check them
    langs = {d["language"] for r in snap["recent"] for d in r["dubs"]}
    assert langs == {"es", "ca"}
    analysis.timing_misses(snap["counters"]["fallbacks"])
    es, ca = (analysis.decode_audio(tmp_path / f"duo-{lang}.flv") for lang in ("es", "ca"))
    a, b, _ = short_media.speech_spans[-1]
    n = min(len(es[0]), len(ca[0]))
    assert n > 48000 * 10
    sim = spectral_similarity(es[0][:n].mean(axis=1), ca[0][:n].mean(axis=1))
    assert sim < 0.97, "the Spanish and Catalan outputs must carry different dubs"
    for path in recs:
        assert analysis.probe(tmp_path / f"duo-{path}.flv")["video"]["codec"] == "h264"


def test_nginx_hook_passes_publish_query_fields(stack):
    form = {"call": "publish", "app": "live", "name": "formcheck/in", "addr": "127.0.0.1",
            "lang": "ca", "mix": "replace"}
    import urllib.error
    import urllib.parse
    import urllib.request

    hook = stack.media.url + "/v1/hooks/nginx/on_publish"
    body = urllib.parse.urlencode(form).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:  # the hook needs the token like any route
        urllib.request.urlopen(urllib.request.Request(hook, data=body, method="POST"), timeout=5)
    assert refused.value.code == 401
    req = urllib.request.Request(f"{hook}?token={stack.api_token}", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    status, snap = stack.media.api("GET", "/v1/streams/formcheck")
    assert status == 200 and snap["target_languages"] == ["ca"] and snap["mix"] == "replace"
    assert snap["input_url"].endswith("/live/***")  # redacted; the mapping: test_config.py
    metrics = urllib.request.Request(stack.media.url + "/metrics",
                                     headers={"Authorization": f"Bearer {stack.api_token}"})
    with urllib.request.urlopen(metrics, timeout=5) as resp:
        assert 'stream="formcheck"' in resp.read().decode()
    assert stack.media.api("DELETE", "/v1/streams/formcheck")[0] == 200
    with urllib.request.urlopen(metrics, timeout=5) as resp:  # no series left behind (issue 12 #10)
        assert 'stream="formcheck"' not in resp.read().decode()


def test_44k_mono_input_is_resampled_onto_the_timeline_in_sync(stack, short_media, tmp_path):
    """Inputs are not always 48 kHz stereo: a 44.1 kHz mono AAC publisher is dubbed and stays in sync."""
    out = tmp_path / "cd-out.flv"
    rec = analysis.record_stream(stack.url("cd/out"), out)
    pub = analysis.publish(short_media.path, stack.url("cd/in"),
                           extra_args=["-c:a", "aac", "-ar", "44100", "-ac", "1", "-b:a", "96k"])
    try:
        pub.wait(timeout=120)
        snap = stack.wait_stream("cd", lambda s: s["output"]["state"] == "idle", timeout=DELAY + 15)
    finally:
        analysis.stop_process(rec)
        stack.media.api("DELETE", "/v1/streams/cd")
    missed = analysis.timing_misses(snap["counters"]["fallbacks"])
    assert snap["counters"]["dubs_placed"] >= len(short_media.speech_spans) - 1 - missed
    offsets = analysis.av_offsets(out)
    assert len(offsets) >= len(short_media.markers) - 1
    assert max(abs(o) for _, o in offsets) <= 0.020, offsets
    assert analysis.probe(out)["audio"]["sample_rate"] == 48000


def test_bypass_applies_at_render_time_even_to_dubs_already_placed(stack, short_media, tmp_path):
    """The emergency bypass switches the output back to the original audio from the next frame."""
    out = tmp_path / "bypass-out.flv"
    rec = analysis.record_stream(stack.url("bypass/out"), out)
    pub = analysis.publish(short_media.path, stack.url("bypass/in"))
    try:
        snap = stack.wait_stream("bypass", lambda s: s["counters"]["dubs_placed"] >= 1, timeout=30)
        assert snap["counters"]["audio_frames_out"] == 0, "the switch must come before the dub is played"
        status, snap = stack.media.api("POST", "/v1/streams/bypass/bypass")
        assert status == 200 and snap["mix"] == "passthrough"
        pub.wait(timeout=120)
        snap = stack.wait_stream("bypass", lambda s: s["output"]["state"] == "idle", timeout=DELAY + 15)
    finally:
        analysis.stop_process(rec)
        stack.media.api("DELETE", "/v1/streams/bypass")
    assert snap["counters"]["dubs_placed"] >= 2
    src, got = analysis.video_packets(short_media.path), analysis.video_packets(out)
    first, _ = packet_alignment(src, got)
    shift = got[0][0] - src[first][0]
    sx, sr, s0 = analysis.decode_audio(short_media.path)
    ox, _, o0 = analysis.decode_audio(out)
    checked = 0
    for a, b, _ in short_media.speech_spans:
        if a + shift < o0:
            continue
        i, j = int((a - s0) * sr), int((b - s0) * sr)
        k = int((a + shift - o0) * sr)
        sim = spectral_similarity(sx[i:j].mean(axis=1), ox[k:k + (j - i)].mean(axis=1))
        assert sim > 0.95, f"bypassed speech {a:.1f}-{b:.1f}s must be the original (similarity {sim:.3f})"
        checked += 1
    assert checked >= len(short_media.speech_spans) - 1
