"""bench/_scoring.py: the WER and chrF that bench_load.py reports, and how reference words are
placed in time and matched to the dubbed fragments. Pure logic on made-up events; no models."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from livedub_testkit.dense import REFERENCE_TRANSLATIONS, SENTENCE_PAIRS, SENTENCES, split_clauses
from livedub_testkit.speech import normalized_words, word_error_rate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _scoring import (  # noqa: E402
    SEGMENT_PADDING_S,
    WholeSentences,
    corpus_chrf,
    covered,
    errors_per_reference_word,
    reference_of,
    score_run,
    timeline_origin,
    whole_sentences,
)

S1 = "The river has risen sharply after the storm, and several roads in the valley are under water."
S2 = "The price of bread has gone up again, partly because of the poor harvest in the east."
S3 = "Officials say the bridge will stay closed for repairs, while engineers inspect the old steel frame."


def clause(sentence: int, text: str, start: float, end: float, cut_off: bool = False) -> dict:
    """A dense-fixture reference entry; words spread evenly (the fixture spreads them by length)."""
    words = text.split()
    step = (end - start) / len(words)
    return {"start": start, "end": end, "text": text, "sentence": sentence, "cut_off": cut_off,
            "words": [[w, start + i * step, start + (i + 1) * step] for i, w in enumerate(words)]}


def fixture() -> SimpleNamespace:
    """Three sentences: two whole ones (two clauses each), then one cut off by the end of the stream."""
    a1, a2 = split_clauses(S1)
    b1, b2 = split_clauses(S2)
    ref = [clause(0, a1, 1.0, 3.0), clause(0, a2, 3.3, 6.0), clause(1, b1, 7.0, 9.0), clause(1, b2, 9.2, 12.0),
           clause(2, "Officials say the", 13.0, 14.0, cut_off=True)]
    return SimpleNamespace(reference=ref, speech_spans=[(r["start"], r["end"], r["text"]) for r in ref])


def dubbed(start_s: float, end_s: float, transcript: str, text: str = "", origin: float = 0.0) -> dict:
    """A `dubbed` event as the media-service publishes it (times on the stream's timeline)."""
    return {"start_ms": (start_s - origin) * 1000, "duration_ms": (end_s - start_s) * 1000,
            "transcript": transcript, "dubs": [{"language": "es", "text": text}]}


class Perfect:
    """An ASR that hears each sentence right and a translator that returns the reference: the baseline's plumbing."""

    name = "perfect"

    def __init__(self, texts):
        self.texts = list(texts)

    def transcribe(self, audio):
        return SimpleNamespace(text=self.texts.pop(0))

    def translate(self, text, source, target):
        return REFERENCE_TRANSLATIONS[target].get(text, self.also.get(text, text))

    also: dict = {}


# ------------------------------------------------------------------------------ metrics
def test_errors_are_charged_to_reference_words_and_sum_to_the_edit_distance():
    ref = "the cat sat on the mat".split()
    assert errors_per_reference_word(ref, ref) == [0] * 6
    assert errors_per_reference_word(ref, "the cat sat on a mat".split()) == [0, 0, 0, 0, 1, 0]  # substitution
    assert errors_per_reference_word(ref, "the cat on the mat".split()) == [0, 0, 1, 0, 0, 0]  # deletion
    assert errors_per_reference_word(ref, "the cat sat down on the mat".split()) == [0, 0, 1, 0, 0, 0]  # insertion
    assert errors_per_reference_word(ref, "so the cat sat on the mat".split()) == [1, 0, 0, 0, 0, 0]  # at the start
    assert errors_per_reference_word([], ["noise"]) == []
    assert errors_per_reference_word(["a", "b"], []) == [1, 1]
    rng = np.random.default_rng(3)
    vocab = ["a", "b", "c", "d"]
    for _ in range(200):  # the charges always add up to the WER's edit distance
        r = list(rng.choice(vocab, rng.integers(1, 9)))
        h = list(rng.choice(vocab, rng.integers(0, 9)))
        assert sum(errors_per_reference_word(r, h)) == round(word_error_rate(" ".join(r), " ".join(h)) * len(r))


def test_chrf_is_sacrebleus_corpus_chrf():
    import sacrebleu

    hyps, refs = ["El río ha crecido mucho.", "Sube el pan."], ["El río ha crecido bruscamente.", "El pan sube."]
    assert corpus_chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert corpus_chrf(refs, refs) == pytest.approx(100.0)
    assert corpus_chrf([], []) is None


# ------------------------------------------------------------------------------ reference in time
def test_every_dense_sentence_has_a_hand_written_spanish_reference():
    assert [en for en, _ in SENTENCE_PAIRS] == SENTENCES and len(set(SENTENCES)) == len(SENTENCES) == 40
    es = REFERENCE_TRANSLATIONS["es"]
    assert set(es) == set(SENTENCES)
    for en, ref in es.items():
        assert " ".join(split_clauses(en)) == en  # a sentence's clauses, joined, find its reference
        assert ref.strip() == ref and ref[-1] == "." and ref != en
        assert 0.8 <= len(ref) / len(en) <= 1.6, (en, ref)  # a translation, not a fragment or a note


def test_reference_groups_clauses_into_sentences_and_keeps_their_translations():
    ref, clause_starts = reference_of(fixture(), "es")
    assert [s.text for s in ref.sentences] == [S1, S2, "Officials say the"]
    assert [s.translation for s in ref.sentences] == [REFERENCE_TRANSLATIONS["es"][S1],
                                                      REFERENCE_TRANSLATIONS["es"][S2], None]  # cut off: none
    assert (ref.sentences[0].start, ref.sentences[0].end) == (1.0, 6.0)
    assert clause_starts == [1.0, 3.3, 7.0, 9.2, 13.0]
    assert [w.word for w in ref.words] == normalized_words(f"{S1} {S2} Officials say the")
    assert {w.sentence for w in ref.words} == {0, 1, 2}


def test_a_fixture_without_sentences_has_one_per_speech_span():
    fx = SimpleNamespace(speech_spans=[(0.5, 2.0, "Good morning and welcome."), (3.0, 4.0, "Thank you.")])
    ref, starts = reference_of(fx, "es")
    assert [s.text for s in ref.sentences] == ["Good morning and welcome.", "Thank you."]
    assert [s.translation for s in ref.sentences] == [None, None]  # no reference written for these
    assert starts == [0.5, 3.0] and ref.words[0].start == 0.5 and ref.words[-1].end == pytest.approx(4.0)


def test_a_word_belongs_to_the_span_holding_its_midpoint():
    ref, _ = reference_of(fixture(), "es")
    first = ref.words[:3]  # "the" 1.0-1.25, "river" 1.25-1.5, "has" 1.5-1.75
    assert covered(first, [(0.9, 1.3)]).tolist() == [True, False, False]
    assert covered(first, [(1.125, 1.375)]).tolist() == [True, False, False]  # [start, end)
    assert covered(first, [(1.0, 1.1), (1.6, 2.0)]).tolist() == [False, False, True]
    assert covered(first, []).tolist() == [False, False, False]


def test_timeline_origin_matches_fragment_starts_to_clause_starts():
    clause_starts = [1.0, 3.3, 7.0, 9.2, 13.0]
    origin = 0.8  # the stream's timeline 0 is fixture time 0.8
    starts = [c - SEGMENT_PADDING_S - origin for c in clause_starts]
    assert timeline_origin(starts, clause_starts) == pytest.approx(origin)
    jitter = [0.03, -0.05, 0.0, 0.02, 0.09]  # the VAD opens a little early or late
    noisy = [s + j for s, j in zip(starts, jitter)] + [4.4]  # and one fragment cut at the maximum length
    assert timeline_origin(noisy, clause_starts) == pytest.approx(origin - 0.02, abs=0.03)
    assert timeline_origin([], clause_starts) is None


# ------------------------------------------------------------------------------ a run
def test_perfect_dubs_score_zero_wer_and_full_chrf():
    fx = fixture()
    ref, clause_starts = reference_of(fx, "es")
    es = REFERENCE_TRANSLATIONS["es"]
    base = whole_sentences(ref, np.zeros(16000 * 15, np.float32), Perfect([S1, S2, "Officials say the"]),
                           Perfect([]))
    assert base.word_errors.sum() == 0 and base.translations[:2] == [es[S1], es[S2]]
    origin = 0.5
    events = [dubbed(0.85, 6.1, S1, es[S1], origin), dubbed(6.85, 12.1, S2, es[S2], origin),
              dubbed(12.85, 14.1, "Officials say the", "Los oficiales dicen", origin)]
    fallbacks = []
    out = score_run({"s0": (events, fallbacks)}, ref, clause_starts, base)
    s0 = out["per_stream"]["s0"]
    assert s0["origin_s"] == pytest.approx(origin, abs=0.01)
    assert out["wer"] == 0 and out["asr_alone_wer"] == 0 and out["wer_cost_points"] == 0
    assert out["wer_ref_words"] == len(ref.words) - 3 and s0["covered_words_share"] == 1.0  # not the cut-off 3
    assert [g["sentences"] for g in s0["segments"]] == [[0], [1]]  # the cut-off sentence has no reference
    assert out["chrf"]["dubbed"] == pytest.approx(100.0) and out["chrf"]["whole"] == pytest.approx(100.0)
    assert out["chrf"]["sentences"] == 2 and out["chrf"]["cost_points"] == pytest.approx(0.0)


def test_cut_dubs_are_scored_against_the_same_words_as_the_whole_sentences():
    """A sentence cut in two, a word lost at the cut; the next sentence falls back in part."""
    fx = fixture()
    ref, clause_starts = reference_of(fx, "es")
    heard = [S1.replace("sharply", "sharp"), S2, "Officials say the"]  # the whole-sentence ASR: one error in S1
    mt = Perfect([])
    mt.also = {heard[0]: REFERENCE_TRANSLATIONS["es"][S1].replace("bruscamente", "brusco")}
    base = whole_sentences(ref, np.zeros(16000 * 15, np.float32), Perfect(heard), mt)
    a1, a2 = split_clauses(S1)
    b1, _ = split_clauses(S2)
    events = [dubbed(0.85, 3.15, a1.replace("storm,", ""), "El río ha crecido bruscamente tras la"),  # lost "storm"
              dubbed(3.15, 6.1, a2, "y varias carreteras del valle están bajo el agua."),
              dubbed(6.85, 9.1, b1, "El precio del pan ha vuelto a subir,")]
    fallbacks = [{"start_ms": 9050, "duration_ms": 3000}]  # the rest of S2 played the original
    out = score_run({"s0": (events, fallbacks)}, ref, clause_starts, base)
    n = len(normalized_words(S1)) + len(normalized_words(b1))
    assert out["wer_ref_words"] == n  # the fallen-back clause and the cut-off sentence are not scored
    assert out["wer"] == pytest.approx(1 / n) and out["asr_alone_wer"] == pytest.approx(1 / n)
    assert out["wer_cost_points"] == pytest.approx(0.0)
    segs = out["per_stream"]["s0"]["segments"]
    assert [g["sentences"] for g in segs] == [[0]]  # S2 was not dubbed whole: no chrF for it
    assert segs[0]["dubbed"].startswith("El río ha crecido bruscamente tras la y varias")
    assert out["chrf"]["dubbed"] < out["chrf"]["whole"] and out["chrf"]["cost_points"] > 0


def test_a_fragment_across_two_sentences_joins_them_into_one_segment():
    fx = fixture()
    ref, clause_starts = reference_of(fx, "es")
    es = REFERENCE_TRANSLATIONS["es"]
    a1, a2 = split_clauses(S1)
    b1, b2 = split_clauses(S2)
    events = [dubbed(0.85, 3.15, a1, "uno"), dubbed(3.15, 8.0, f"{a2} {b1[:20]}", "dos"),
              dubbed(8.0, 12.1, b1[20:] + " " + b2, "tres"), dubbed(12.85, 14.1, "Officials say the", "cuatro")]
    out = score_run({"s0": (events, [])}, ref, clause_starts, None)
    segs = out["per_stream"]["s0"]["segments"]
    assert [g["sentences"] for g in segs] == [[0, 1]]
    assert segs[0]["dubbed"] == "uno dos tres" and segs[0]["reference"] == f"{es[S1]} {es[S2]}"
    assert out["asr_alone_wer"] is None and "whole" not in out["chrf"]  # no baseline run


def test_streams_add_up_over_their_words():
    fx = fixture()
    ref, clause_starts = reference_of(fx, "es")
    good = [dubbed(0.85, 6.1, S1), dubbed(6.85, 12.1, S2)]
    bad = [dubbed(0.85, 6.1, "nothing like it"), dubbed(6.85, 12.1, S2)]
    n1, n2 = len(normalized_words(S1)), len(normalized_words(S2))
    out = score_run({"s0": (good, []), "s1": (bad, [])}, ref, clause_starts, None)
    e1 = round(word_error_rate(S1, "nothing like it") * n1)
    assert out["wer_ref_words"] == 2 * (n1 + n2)
    assert out["wer"] == pytest.approx(e1 / (2 * (n1 + n2)))
    assert out["per_stream"]["s1"]["errors"] == e1


def test_a_stream_without_dubs_scores_nothing():
    ref, clause_starts = reference_of(fixture(), "es")
    out = score_run({"s0": ([], [{"start_ms": 850, "duration_ms": 5000}])}, ref, clause_starts, None)
    assert out["wer"] is None and out["wer_ref_words"] == 0 and out["chrf"]["dubbed"] is None


def test_whole_sentences_are_cut_with_the_fragment_padding():
    ref, _ = reference_of(fixture(), "es")
    seen = []

    class Recorder(Perfect):
        def transcribe(self, audio):
            seen.append(len(audio) / 16000)
            return super().transcribe(audio)

    audio = np.zeros(int(16000 * 13.5), np.float32)  # the stream ends inside the last sentence
    base = whole_sentences(ref, audio, Recorder(["x"] * 3), Perfect([]))
    assert seen == pytest.approx([5.0 + 2 * SEGMENT_PADDING_S, 5.0 + 2 * SEGMENT_PADDING_S, 0.5 + SEGMENT_PADDING_S],
                                 abs=1e-3)
    assert isinstance(base, WholeSentences) and base.transcripts == ["x", "x", "x"]


def test_words_neither_dubbed_nor_fallen_back_are_lost_and_count_as_deletions():
    """A clause's fragment came back as no speech (no event): its words are deletions, its sentence is
    still scored for chrF (with what was said); a fallback's words are left out of both."""
    fx = fixture()
    ref, clause_starts = reference_of(fx, "es")
    es = REFERENCE_TRANSLATIONS["es"]
    a1, a2 = split_clauses(S1)
    events = [dubbed(0.85, 3.15, a1, "El río ha crecido bruscamente tras la tormenta,"),
              dubbed(12.85, 14.1, "Officials say the", "Los oficiales dicen")]  # S1's 2nd clause: no speech
    fallbacks = [{"start_ms": 6850}]  # S2 fell back whole (a fallback event has no length)
    out = score_run({"s0": (events, fallbacks)}, ref, clause_starts, None)
    s0 = out["per_stream"]["s0"]
    n_a1, n_a2, n_b = (len(normalized_words(t)) for t in (a1, a2, S2))
    assert s0["lost_words"] == n_a2 and s0["fallback_words"] == n_b
    # The cut-off sentence's three words are not scored (test_the_sentence_cut_off_by_the_end_is_not_scored).
    assert out["wer_ref_words"] == n_a1 + n_a2 and out["wer"] == pytest.approx(n_a2 / (n_a1 + n_a2))
    assert out["wer_covered_only"] == 0.0  # the old count did not see the lost clause
    assert [g["sentences"] for g in s0["segments"]] == [[0]]
    assert s0["segments"][0]["dubbed"] == "El río ha crecido bruscamente tras la tormenta,"
    assert s0["segments"][0]["reference"] == es[S1]


def test_a_sentence_nothing_was_dubbed_in_is_a_segment_with_nothing_said():
    fx = fixture()
    ref, clause_starts = reference_of(fx, "es")
    events = [dubbed(0.85, 6.1, S1, "uno"), dubbed(12.85, 14.1, "Officials say the", "dos")]  # S2: no speech
    out = score_run({"s0": (events, [])}, ref, clause_starts, None)
    segs = out["per_stream"]["s0"]["segments"]
    assert [(g["sentences"], g["dubbed"]) for g in segs] == [([0], "uno"), ([1], "")]
    assert out["lost_words"] == len(normalized_words(S2))


def test_the_sentence_cut_off_by_the_end_is_not_scored():
    """The fixture's end cuts its last sentence short: how many of its words were said before the cut
    is an estimate, so a transcript that heard more than the estimate must not count as insertions,
    nor one that heard less as deletions."""
    fx = fixture()
    ref, clause_starts = reference_of(fx, "es")
    assert ref.cut_off_from == 13.0
    for last in ("Officials say the bridge will be", "Officials", ""):
        events = [dubbed(0.85, 6.1, S1), dubbed(6.85, 12.1, S2)] + ([dubbed(12.85, 14.1, last)] if last else [])
        out = score_run({"s0": (events, [])}, ref, clause_starts, None)
        assert out["wer"] == 0 and out["wer_ref_words"] == len(normalized_words(S1 + " " + S2)), last
        assert out["lost_words"] == 0
