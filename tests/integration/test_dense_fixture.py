"""The dense-speech fixture (livedub_testkit.dense) and the load benchmark that uses it.

The fixture is measured from the encoded file (decoded audio through the same Silero VAD the
media-service segments with, video frames and beeps through the testkit's analysis), not taken
from the generator's bookkeeping. The benchmark smoke test runs ``bench/bench_load.py --quick``
end to end on a 12 s fixture (about 30-40 s on 2 cores) and checks the report's shape and the
numbers that do not depend on the machine's speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from livedub_testkit import analysis
from livedub_testkit.dense import (
    GAP_RANGE,
    PAUSE_RANGE,
    VAD_WINDOW,
    VOICES,
    DenseFixtureInfo,
    make_dense_media,
    measure_speech,
    split_clauses,
    vad_activity,
)
from livedub_testkit.fixtures import BEEP_S

REPO = Path(__file__).resolve().parents[2]
WIN_S = VAD_WINDOW / 16000


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> DenseFixtureInfo:
    path = tmp_path_factory.mktemp("dense") / "dense-15s.mp4"
    return make_dense_media(path, seconds=15, width=640, height=360, seed=2)


def _mono(path) -> tuple[np.ndarray, int]:
    data, sr, t0 = analysis.decode_audio(path)
    assert abs(t0) < 0.001
    return data.mean(axis=1), sr


def test_split_clauses_keeps_the_punctuation_with_its_clause():
    assert split_clauses("One, two; three.") == ["One,", "two;", "three."]
    assert split_clauses("No comma here.") == ["No comma here."]


def test_speech_share_of_the_file_is_at_least_75_percent(dense):
    x, sr = _mono(dense.path)
    share, silences = measure_speech(x, sr, dense.markers)
    assert share >= 0.75, f"VAD speech share {share:.3f}"
    assert abs(share - dense.speech_share_measured) < 0.02  # the sidecar tells the truth
    assert dense.speech_share >= 0.75
    # Short pauses inside sentences and longer sentence gaps are both in the file. Piper samples
    # its durations, so a gap can be drawn at GAP_RANGE[0] exactly; the VAD's hangover may then
    # take up to two of its windows off the measured silence.
    assert any(s < PAUSE_RANGE[1] for s in silences), silences
    assert max(silences) >= GAP_RANGE[0] - 2 * WIN_S, silences


def test_gaps_and_pauses_follow_the_drawn_distribution(dense):
    assert len(dense.sentence_gaps) >= 2 and len(dense.clause_pauses) >= 2
    assert all(GAP_RANGE[0] <= g <= GAP_RANGE[1] for g in dense.sentence_gaps), dense.sentence_gaps
    assert all(PAUSE_RANGE[0] <= p <= PAUSE_RANGE[1] for p in dense.clause_pauses), dense.clause_pauses
    # The placed silences between consecutive clauses are exactly those pauses and gaps.
    ref = dense.reference
    between = [round(b["start"] - a["end"], 3) for a, b in zip(ref, ref[1:], strict=False)]
    inner = [d for a, b, d in zip(ref, ref[1:], between, strict=False) if a["sentence"] == b["sentence"]]
    outer = [d for a, b, d in zip(ref, ref[1:], between, strict=False) if a["sentence"] != b["sentence"]]
    assert np.allclose(sorted(inner), sorted(dense.clause_pauses), atol=0.002)
    assert np.allclose(sorted(outer), sorted(dense.sentence_gaps[1:]), atol=0.002)
    assert abs(ref[0]["start"] - dense.sentence_gaps[0]) < 0.002


def test_speech_is_where_the_reference_says(dense):
    """Each clause is mostly VAD speech and each sentence gap mostly not: the timings are usable for WER."""
    x, sr = _mono(dense.path)
    active = vad_activity(x, sr)

    def share(a: float, b: float) -> float:
        i, j = int(a / WIN_S), max(int(a / WIN_S) + 1, int(b / WIN_S))
        return float(active[i:j].mean())

    for r in dense.reference:
        assert share(r["start"], r["end"]) >= 0.6, r
        assert r["words"][0][1] == pytest.approx(r["start"], abs=0.002)
        if r["cut_off"]:  # the last clause, cut by the end of the stream, keeps its whole words
            assert r is dense.reference[-1] and r["words"][-1][2] <= r["end"]
        else:
            assert r["words"][-1][2] == pytest.approx(r["end"], abs=0.002)
        assert " ".join(w for w, _, _ in r["words"]) == r["text"]
    ref = dense.reference
    windows = []
    for a, b in zip(ref, ref[1:], strict=False):
        if a["sentence"] != b["sentence"]:
            gap = [(a["end"] + 0.1, b["start"] - 0.1)]
            beeps = [m for m in dense.markers if gap[0][0] <= m <= gap[0][1]]
            if beeps:  # leave the beep's windows out
                gap = [(gap[0][0], beeps[0] - WIN_S), (beeps[0] + BEEP_S + WIN_S, gap[0][1])]
            windows += [(lo, hi) for lo, hi in gap if hi - lo > 2 * WIN_S]
    # Sentence gaps are silence to the VAD: each mostly, and all of them together nearly all. (A
    # 0.3 s window is ten VAD frames, so a breath or a word's tail can flag three of them; the
    # Piper voices are not bit-reproducible, hence the per-gap margin.)
    for lo, hi in windows:
        assert share(lo, hi) <= 0.5, (lo, hi)
    total = sum(hi - lo for lo, hi in windows)
    assert sum(share(lo, hi) * (hi - lo) for lo, hi in windows) / total <= 0.2, windows


def test_several_voices_and_speeds(dense):
    used = [r["voice"] for r in dense.reference]
    sentences = len({r["sentence"] for r in dense.reference})
    assert len(set(used)) >= min(3, sentences), used
    assert set(used) <= set(VOICES)
    per_sentence = {r["sentence"]: r["voice"] for r in dense.reference}
    voices = [per_sentence[s] for s in sorted(per_sentence)]
    assert all(a != b for a, b in zip(voices, voices[1:], strict=False)), voices


def test_markers_are_detectable_and_fall_in_sentence_gaps(dense):
    assert len(dense.markers) >= 2
    flashes = analysis.detect_flashes(dense.path)
    assert np.allclose(flashes, dense.markers, atol=0.002), (flashes, dense.markers)
    offsets = analysis.av_offsets(dense.path)
    assert len(offsets) == len(dense.markers)
    assert max(abs(d) for _, d in offsets) < 0.001, offsets
    for m in dense.markers:  # clear of speech by more than a fragment's padding
        for a, b, _ in dense.speech_spans:
            assert m + BEEP_S + 0.3 <= a or m >= b + 0.3, (m, a, b)


def test_cached_fixture_is_reused(dense):
    again = make_dense_media(dense.path, seconds=15, width=640, height=360, seed=2)
    assert again.generation_seconds == dense.generation_seconds
    assert again.reference == dense.reference


@pytest.mark.slow
def test_bench_load_quick_smoke(tmp_path):
    """bench_load.py --quick end to end: one stream of 12 s at D = 3.5 s; the report is complete."""
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_load.py"), "--quick", "--seconds", "12", "--size", "640x360",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert any(line.startswith("dense fixture, D = 3.5 s") for line in lines), res.stdout
    out = json.loads(lines[-1])
    assert out["fixtures"]["dense"]["speech_share_measured"] >= 0.75
    (run,) = out["runs"]
    assert "error" not in run, run.get("error")
    assert (run["fixture"], run["delay_requested_s"], run["k"], run["streams_reported"]) == ("dense", 3.5, 1, 1)
    assert run["output_delay_s"] == 3.5  # the POSTed D reached the stream
    assert run["fragments_sent"] >= 2
    assert sum(run["fallbacks"].values()) == run["fallbacks_total"] <= run["fragments_sent"]
    assert run["events"] > 0 and "s0" in run["wer_per_stream"]
    assert run["wer_per_stream"]["s0"]["origin_s"] is not None
    # What cutting costs: the dubs and the whole-sentence baseline scored over the same words.
    scoring = out["fixtures"]["dense"]["scoring"]
    assert scoring["whole_sentences"]["asr"].startswith("faster-whisper")
    assert len(scoring["whole_sentences"]["transcripts"]) == scoring["sentences"] >= 2
    assert run["wer_ref_words"] > 0 and 0 <= run["wer"] and 0 <= run["asr_alone_wer"] <= 1
    assert run["wer_cost_points"] == pytest.approx((run["wer"] - run["asr_alone_wer"]) * 100)
    if run["chrf"]["segments"]:
        assert 0 <= run["chrf"]["dubbed"] <= 100 and 0 <= run["chrf"]["whole"] <= 100
    assert out["machine"]["cpus"] >= 1
    assert any(line.startswith("quality of the dubs") for line in lines), res.stdout
    # The original's markers survive dubbing or fallback alike: all found, in sync.
    assert run["av"]["expected"] >= 1 and run["av"]["matched"] == run["av"]["expected"]
    assert run["added_delay"]["matched"] > 0
    for service in ("media", "sts", "nginx"):
        assert run["resources"][service]["samples"] > 0
