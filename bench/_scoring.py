"""What a viewer hears, scored against a fixture's reference: WER of the dubbed spans next to the
same ASR on whole sentences, and chrF of the dubs against reference translations.

The fixture's reference words carry times (the dense fixture spreads each clause's span over its
words by character count: an estimate). A stream's fragments are placed on fixture time by
:func:`timeline_origin`; a fragment *covers* the reference words whose midpoint lies in its span.
The words a stream is scored on are those from its first fragment to its last, less those of its
fallbacks (counted as fallbacks, not as word errors) and of a sentence the fixture's end cut short
(its words are an estimate of what was said before the cut: it is left out, with the fragments
that hold it). Words among them that no dubbed fragment
covers are *lost*: a fragment the ASR found no speech in, speech the segmenter never sent.

* **WER of the dubbed spans**: the transcripts of a stream's dubbed fragments, concatenated in time
  order, against those words (a lost word is a deletion). ``wer_covered_only`` leaves the lost words
  out, as bench_load counted before issue 25.
* **ASR-alone WER**, the baseline without cutting: every sentence of the fixture cut from the
  published file's audio (padded like a fragment) and transcribed whole, without a prompt, by the
  sts-service's ASR as it builds it when started with no flags. Its errors are charged to reference
  words by a minimal alignment (:func:`errors_per_reference_word`), so it is scored over exactly
  the stream's words, and the cost of cutting is one difference of two rates over one set of words.
* **chrF** (sacrebleu's chrF2, the quality bench's metric): each *segment* is a run of sentences that
  dubbed fragments link (a fragment holding the end of one sentence and the start of the next joins
  them); it counts when every word of its sentences is scored (none in a fallback) and every sentence
  has a reference translation (a sentence the fixture's end cut short has none). Its hypothesis is
  its dubs' text in order, its reference the sentences' reference translations. The same segments
  are scored for the whole-sentence pipeline (the ASR-alone transcripts through the service's
  translator) and for the translator alone (the reference English through it).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
from livedub_testkit.dense import REFERENCE_TRANSLATIONS, word_times
from livedub_testkit.speech import normalized_words

SEGMENT_PADDING_S = 0.15  # media-service --speech-padding-ms default: fragments start this much before speech
START_MATCH_S = 0.15  # a fragment start within this of (clause start - padding) counts as matching
ASR_RATE = 16000


# ------------------------------------------------------------------------------ the reference
@dataclass(frozen=True)
class RefWord:
    word: str  # normalized (speech.normalized_words): "children's" is two words, as WER counts it
    start: float  # fixture time, s
    end: float
    sentence: int  # index into Reference.sentences


@dataclass(frozen=True)
class Sentence:
    start: float
    end: float
    text: str
    translation: str | None  # the reference translation; None when none was written or the sentence is cut off


@dataclass(frozen=True)
class Reference:
    sentences: list[Sentence]
    words: list[RefWord]
    lang: str  # of the reference translations
    # Fixture time where a sentence cut short by the fixture's end starts (None: none is): its words
    # are estimates of how much was said before the cut, so it is scored neither way.
    cut_off_from: float | None = None


def reference_of(fx, lang: str = "es") -> tuple[Reference, list[float]]:
    """The fixture's sentences and timed words, and its clause starts (for :func:`timeline_origin`).

    The dense fixture groups its clauses by sentence; a fixture without that (the demo) has one
    sentence per speech span, with words spread over it.
    """
    refs = REFERENCE_TRANSLATIONS.get(lang, {})
    clauses = getattr(fx, "reference", None) or [
        {"start": a, "end": b, "text": t, "sentence": i, "words": word_times(t, a, b), "cut_off": False}
        for i, (a, b, t) in enumerate(fx.speech_spans)]
    order: list = []
    by_sentence: dict = {}
    for c in clauses:
        if c["sentence"] not in by_sentence:
            order.append(c["sentence"])
            by_sentence[c["sentence"]] = []
        by_sentence[c["sentence"]].append(c)
    sentences, words, cut_off_from = [], [], None
    for i, key in enumerate(order):
        parts = by_sentence[key]
        text = " ".join(c["text"] for c in parts)
        cut = any(c.get("cut_off") for c in parts)
        if cut and cut_off_from is None:
            cut_off_from = parts[0]["start"]
        sentences.append(Sentence(parts[0]["start"], parts[-1]["end"], text, None if cut else refs.get(text)))
        for c in parts:
            for w, s, e in c["words"]:
                words += [RefWord(t, s, e, i) for t in normalized_words(w)]
    return Reference(sentences, words, lang, cut_off_from), [c["start"] for c in clauses]


def timeline_origin(starts_s: list[float], clause_starts: list[float]) -> float | None:
    """Fixture time of a stream's timeline index 0, from its fragment starts (s on its timeline).

    A fragment that the segmenter opened on silence starts ``SEGMENT_PADDING_S`` before a clause;
    candidates are all (clause start - padding - fragment start); the one most fragments agree with
    (within ``START_MATCH_S``) wins, refined by the median residual of those that agree.
    """
    if not starts_s or not clause_starts:
        return None
    fr = np.asarray(sorted(starts_s))
    cl = np.asarray(sorted(clause_starts)) - SEGMENT_PADDING_S
    cands = (cl[None, :] - fr[:, None]).ravel()
    cands = cands[(cands > -2.0) & (cands < max(cl) + 2.0)]
    best, best_n = None, 0
    for c in np.unique(np.round(cands, 2)):
        res = _residuals(fr + c, cl)
        n = int(np.sum(np.abs(res) <= START_MATCH_S))
        if n > best_n:
            best, best_n = float(c), n
    if best is None:
        return None
    res = _residuals(fr + best, cl)
    return best + float(np.median(res[np.abs(res) <= START_MATCH_S]))


def _residuals(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Signed distance from each point to the nearest target (target - point)."""
    i = np.clip(np.searchsorted(targets, points), 1, len(targets) - 1)
    lo, hi = targets[i - 1], targets[i]
    return np.where(np.abs(lo - points) <= np.abs(hi - points), lo - points, hi - points)


def covered(words: list[RefWord], spans: list[tuple[float, float]]) -> np.ndarray:
    """For each reference word: does its midpoint lie in one of the spans ``[start, end)`` (fixture time)?"""
    mids = np.array([(w.start + w.end) / 2 for w in words], dtype=np.float64)
    out = np.zeros(len(words), dtype=bool)
    for a, b in spans:
        out |= (mids >= a) & (mids < b)
    return out


# ------------------------------------------------------------------------------ metrics
def errors_per_reference_word(ref: list[str], hyp: list[str]) -> list[int]:
    """Word errors of ``hyp`` against ``ref`` charged to the reference words, by one minimal alignment.

    A substitution or deletion is charged to its word, an insertion to the reference word before
    it (the first one for insertions at the start), so the charges sum to the edit distance and any
    subset of the reference words has its own share of the errors. With no reference words there is
    nothing to charge.
    """
    n, m = len(ref), len(hyp)
    d = [list(range(m + 1))] + [[i] + [0] * m for i in range(1, n + 1)]
    for i in range(1, n + 1):
        row, up = d[i], d[i - 1]
        for j in range(1, m + 1):
            row[j] = min(up[j] + 1, row[j - 1] + 1, up[j - 1] + (ref[i - 1] != hyp[j - 1]))
    errors = [0] * n
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            errors[i - 1] += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            errors[i - 1] += 1
            i -= 1
        else:
            if n:
                errors[max(0, i - 1)] += 1
            j -= 1
    return errors


def corpus_chrf(hyps: list[str], refs: list[str]) -> float | None:
    """sacrebleu's corpus chrF (chrF2, character 6-grams, its defaults) of parallel segments; None without any."""
    if not hyps:
        return None
    import sacrebleu

    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)


# ------------------------------------------------------------------------------ whole sentences
@dataclass(frozen=True)
class WholeSentences:
    """The no-cutting baseline of one fixture, per sentence and per reference word."""

    transcripts: list[str]  # each sentence transcribed whole by the service's ASR
    translations: list[str]  # those transcripts through the service's translator
    mt_of_reference: list[str]  # the reference English through the service's translator
    word_errors: np.ndarray  # per reference word: errors of its sentence's whole transcript charged to it
    asr: str  # engine names, for the report
    translator: str

    def summary(self) -> dict:
        n = len(self.word_errors)
        return {"asr": self.asr, "translator": self.translator, "sentences": len(self.transcripts),
                "wer": float(self.word_errors.sum()) / n if n else None, "transcripts": self.transcripts,
                "translations": self.translations}


def fixture_audio_16k(path) -> np.ndarray:
    """The published file's audio as the sts-service hears it: mono (the channels' mean), 16 kHz."""
    from livedub_testkit import analysis
    from livedub_testkit.speech import resample

    data, sr, _ = analysis.decode_audio(path)
    return resample(data.mean(axis=1).astype(np.float32), sr, ASR_RATE)


def service_engines():
    """The sts-service's ASR and translator as it builds them when started with no flags (its defaults
    and this environment's ``STS_*`` variables, as the bench's own sts-service gets them)."""
    from sts_service.config import parse_args
    from sts_service.engines import _asr
    from sts_service.translation.configure import build_translator

    cfg = parse_args(["--no-auth"])  # no token needed to build engines
    return _asr(cfg), build_translator(cfg)


def whole_sentences(ref: Reference, audio16: np.ndarray, asr, translator, source: str = "en") -> WholeSentences:
    """Transcribe each sentence whole (padded like a fragment) and translate it; see the module docstring."""
    transcripts, translations, mt_ref = [], [], []
    errors = np.zeros(len(ref.words), dtype=np.int64)
    for k, s in enumerate(ref.sentences):
        a = max(0, int((s.start - SEGMENT_PADDING_S) * ASR_RATE))
        b = min(len(audio16), int((s.end + SEGMENT_PADDING_S) * ASR_RATE))
        text = asr.transcribe(audio16[a:b]).text.strip()
        transcripts.append(text)
        translations.append(translator.translate(text, source, ref.lang) if text else "")
        mt_ref.append(translator.translate(s.text, source, ref.lang))
        mine = [i for i, w in enumerate(ref.words) if w.sentence == k]
        errors[mine] = errors_per_reference_word([ref.words[i].word for i in mine], normalized_words(text))
    return WholeSentences(transcripts, translations, mt_ref, errors, asr.name, translator.name)


def whole_sentence_baseline(fx, ref: Reference) -> WholeSentences:
    """:func:`whole_sentences` with the service's engines, loaded for this and released after."""
    asr, translator = service_engines()
    try:
        return whole_sentences(ref, fixture_audio_16k(fx.path), asr, translator)
    finally:
        close = getattr(translator, "close", None)
        if close:
            close()
        del asr
        gc.collect()


# ------------------------------------------------------------------------------ one stream
def score_stream(dubbed: list[dict], fallbacks: list[dict], origin: float | None, ref: Reference,
                 base: WholeSentences | None) -> dict:
    """WER (dubbed and ASR-alone, same words), words not dubbed, and the chrF segments of one stream.

    ``dubbed``/``fallbacks``: its events; ``origin``: fixture time of its timeline 0
    (:func:`timeline_origin`). A ``fallback`` event has a start but no length: the words after it
    that no dubbed fragment covers, up to the next fragment's start, are taken as its span. The
    stream's range runs from its first fragment to its last; *lost* words are in it but neither
    dubbed nor in a fallback (a no-speech result, speech the segmenter never sent).
    """
    out: dict = {"origin_s": origin, "fragments": len(dubbed), "ref_words": 0, "errors": 0, "wer": None,
                 "asr_alone_errors": None, "asr_alone_wer": None, "covered_words_share": 0.0,
                 "fallback_words": 0, "lost_words": 0, "covered_words": 0, "covered_errors": 0, "segments": []}
    if origin is None or not dubbed or not ref.words:
        return out
    frags = sorted((origin + d["start_ms"] / 1000, origin + (d["start_ms"] + d["duration_ms"]) / 1000,
                    d.get("transcript") or "", _dub_text(d, ref.lang)) for d in dubbed)
    fb_starts = sorted(origin + f["start_ms"] / 1000 for f in fallbacks)
    starts = sorted([a for a, _, _, _ in frags] + fb_starts)
    fb_spans = [(t, next((u for u in starts if u > t), np.inf)) for t in fb_starts]
    end = np.inf if fb_starts and fb_starts[-1] > frags[-1][0] else frags[-1][1]
    eligible = np.ones(len(ref.words), dtype=bool)
    if ref.cut_off_from is not None:  # the sentence the fixture's end cut short: neither side scores it
        frags = [f for f in frags if (f[0] + f[1]) / 2 < ref.cut_off_from - SEGMENT_PADDING_S]
        eligible = np.array([(w.start + w.end) / 2 < ref.cut_off_from for w in ref.words])
        if not frags:
            return out
    in_range = covered(ref.words, [(starts[0], end)]) & eligible
    mask = covered(ref.words, [(a, b) for a, b, _, _ in frags])
    fell_back = covered(ref.words, fb_spans) & ~mask
    scored = in_range & ~fell_back
    hyp = normalized_words(" ".join(t for _, _, t, _ in frags))
    out.update(covered_words_share=float(mask[eligible].mean()), fallback_words=int(fell_back.sum()),
               lost_words=int((scored & ~mask).sum()),
               sentences_dubbed=len({w.sentence for w, m in zip(ref.words, mask) if m}))
    n = int(scored.sum())
    if n:
        errors = sum(errors_per_reference_word([w.word for w, m in zip(ref.words, scored) if m], hyp))
        out.update(ref_words=n, errors=errors, wer=errors / n)
        if base is not None:
            base_errors = int(base.word_errors[scored].sum())
            out.update(asr_alone_errors=base_errors, asr_alone_wer=base_errors / n)
    # The dubbed fragments' own words only (lost words left out): how bench_load counted before issue 25.
    out["covered_words"] = int(mask.sum())
    out["covered_errors"] = sum(errors_per_reference_word([w.word for w, m in zip(ref.words, mask) if m], hyp))
    out["segments"] = chrf_segments(frags, scored, ref, base)
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _dub_text(event: dict, lang: str) -> str:
    return next((d.get("text") or "" for d in event.get("dubs", []) if d.get("language") == lang), "")


def chrf_segments(frags: list[tuple[float, float, str, str]], scorable: np.ndarray, ref: Reference,
                  base: WholeSentences | None) -> list[dict]:
    """The segments a stream's dubs are scored on (module docstring): sentences linked by a fragment,
    each with every word ``scorable`` (in the stream, not in a fallback) and a reference translation.
    A sentence no fragment dubbed is a segment of its own, with nothing said."""
    parent = list(range(len(ref.sentences)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    mids = np.array([(w.start + w.end) / 2 for w in ref.words])
    owner: list[int] = []  # each fragment's first sentence
    for a, b, _, _ in frags:
        inside = sorted({ref.words[i].sentence for i in np.nonzero((mids >= a) & (mids < b))[0]})
        if not inside:  # no reference word (a noise or music fragment): the nearest sentence takes its text
            inside = [min(range(len(ref.sentences)),
                          key=lambda k: max(ref.sentences[k].start - b, a - ref.sentences[k].end, 0.0))]
        for s in inside[1:]:
            parent[root(s)] = root(inside[0])
        owner.append(inside[0])
    whole = np.ones(len(ref.sentences), dtype=bool)
    for w, ok in zip(ref.words, scorable):
        whole[w.sentence] &= bool(ok)
    groups: dict[int, list[int]] = {}
    for s in range(len(ref.sentences)):
        groups.setdefault(root(s), []).append(s)
    out = []
    for r, sents in sorted(groups.items(), key=lambda g: g[1][0]):
        if not all(whole[s] and ref.sentences[s].translation for s in sents):
            continue
        seg = {"sentences": sents, "dubbed": " ".join(f[3] for f, o in zip(frags, owner) if root(o) == r).strip(),
               "reference": " ".join(ref.sentences[s].translation or "" for s in sents)}
        if base is not None:
            seg["whole"] = " ".join(base.translations[s] for s in sents)
            seg["mt_of_reference"] = " ".join(base.mt_of_reference[s] for s in sents)
        out.append(seg)
    return out


def chrf_of_segments(segments: list[dict]) -> dict:
    """Corpus chrF of the dubs, the whole-sentence pipeline and the translator alone over the same segments."""
    refs = [g["reference"] for g in segments]
    out = {"segments": len(segments), "sentences": sum(len(g["sentences"]) for g in segments),
           "dubbed": corpus_chrf([g["dubbed"] for g in segments], refs)}
    if segments and "whole" in segments[0]:
        out["whole"] = corpus_chrf([g["whole"] for g in segments], refs)
        out["mt_of_reference"] = corpus_chrf([g["mt_of_reference"] for g in segments], refs)
    return out


# ------------------------------------------------------------------------------ one run
def score_run(streams: dict[str, tuple[list[dict], list[dict]]], ref: Reference, clause_starts: list[float],
              base: WholeSentences | None) -> dict:
    """Every stream's ``(dubbed, fallback)`` events scored (:func:`score_stream`), and the run's totals.

    Rates are over all the streams' covered words (chrF over all their segments); the costs of
    cutting are in points: dubbed WER - ASR-alone WER, whole-sentence chrF - dubbed chrF.
    """
    per = {}
    for name, (dubbed, fallbacks) in streams.items():
        starts = [e["start_ms"] / 1000 for e in [*dubbed, *fallbacks]]
        per[name] = score_stream(dubbed, fallbacks, timeline_origin(starts, clause_starts), ref, base)
    words = sum(p["ref_words"] for p in per.values())
    errors = sum(p["errors"] for p in per.values())
    alone = sum(p["asr_alone_errors"] or 0 for p in per.values())
    out: dict = {"wer": errors / words if words else None, "wer_ref_words": words,
                 "lost_words": sum(p["lost_words"] for p in per.values()),
                 "fallback_words": sum(p["fallback_words"] for p in per.values()),
                 "wer_covered_only": _ratio(sum(p["covered_errors"] for p in per.values()),
                                            sum(p["covered_words"] for p in per.values())),
                 "asr_alone_wer": alone / words if words and base is not None else None}
    out["wer_cost_points"] = (None if out["asr_alone_wer"] is None
                              else (out["wer"] - out["asr_alone_wer"]) * 100)
    chrf = chrf_of_segments([g for p in per.values() for g in p["segments"]])
    chrf["cost_points"] = (chrf["whole"] - chrf["dubbed"]
                           if chrf.get("whole") is not None and chrf["dubbed"] is not None else None)
    out["chrf"] = chrf
    out["per_stream"] = per
    return out


@dataclass(frozen=True)
class FixtureScoring:
    """What the runs on one fixture are scored with: made once, before any stack starts."""

    ref: Reference
    clause_starts: list[float]
    base: WholeSentences | None  # None: the whole-sentence baseline was not run

    @classmethod
    def of(cls, fx, lang: str = "es", baseline: bool = True) -> FixtureScoring:
        ref, clause_starts = reference_of(fx, lang)
        return cls(ref, clause_starts, whole_sentence_baseline(fx, ref) if baseline else None)

    def summary(self) -> dict:
        out = {"sentences": len(self.ref.sentences), "words": len(self.ref.words), "lang": self.ref.lang,
               "sentences_with_reference_translation": sum(1 for s in self.ref.sentences if s.translation)}
        if self.base is not None:
            out["whole_sentences"] = self.base.summary()
        return out
