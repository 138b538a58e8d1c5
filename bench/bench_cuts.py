"""Where the media-service's forced cuts land: a clause pause first vs the quietest point only.

The dense fixture (``livedub_testkit.dense``: news sentences split into clauses by 0.15-0.4 s
pauses, five voices, music bed) is decoded to the segmenter's 16 kHz mono and run through
``SpeechSegmenter`` twice per D, with the fragment limits ``budget.fragment_limits`` gives at
that D and a round trip of ``--rtt`` s: once with ``cut_pause_ms = 0`` (the quietest point of the
last third only) and once with the default (a clause pause first). For each forced cut: whether
it lies inside a clause (the fixture's clause spans are exact) and inside a word (by the
fixture's word times, estimated by character count, so a rough count; the music bed is too
loud for an energy test of the cut). With ``--asr`` (the
default) every fragment is transcribed as the sts-service would (tiny.en, ``WhisperASR``) and
the WER is taken over the stream: the fragments' transcripts in order against the reference words
whose estimated midpoint lies in a fragment; also how many forced-cut fragments the ASR ended with
final punctuation all the same (``final.``: the sts-service's CTranslate2 engines continue a
sentence only after a fragment without it). ``--context`` names what each fragment is heard
behind (the sts-service's asr/left_context.py): ``none`` (cold), ``cuts`` (after a forced cut,
with the word at the cut handed over) and ``all`` (also after a pause, the default); ``behind``
counts the fragments heard so, ``empty`` those with reference words whose transcript came back
empty (their words lost).
``--pauses long`` draws the pauses inside sentences from 0.4-1.2 s (a speaker who pauses for
effect) instead of 0.15-0.4 s.

Run: .venv/bin/python bench/bench_cuts.py [--seconds 60] [--delays 2.5,3.5,5] [--rtt 0.6] [--no-asr]
[--context none,cuts,all] [--pauses clause|long] [--policies quietest,pause].
Prints a table, then one JSON line. Progress on stderr. Never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time

import numpy as np
from _common import log
from livedub_testkit.dense import LONG_PAUSE_RANGE, PAUSE_RANGE, cached_dense_media
from livedub_testkit.speech import word_error_rate
from media_service.audio.segmenter import SAMPLE_RATE, SegmenterConfig, SpeechSegmenter
from media_service.stream.budget import fragment_limits
from sts_service.config import StsConfig

SR = SAMPLE_RATE
MAX_FRAGMENT_CAP_MS = 5000  # the media-service's defaults (--max-fragment-ms, --min-silence-ms)
MIN_SILENCE_CAP_MS = 300
PAUSE_S = StsConfig.model_fields["asr_left_context_pause_s"].default  # --context all: the sts-service default


def decode(path: str) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vn", "-ac", "1", "-ar", str(SR), "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4").copy()


def segment(audio: np.ndarray, max_ms: float, silence_ms: float, cut_pause_ms: int):
    cfg = SegmenterConfig(max_fragment_ms=MAX_FRAGMENT_CAP_MS, min_silence_ms=MIN_SILENCE_CAP_MS,
                          cut_pause_ms=cut_pause_ms)
    seg = SpeechSegmenter(cfg)
    seg.set_limits(max_ms, silence_ms)
    out = []
    for i in range(0, len(audio), 4096):  # the capture's VAD block
        out += seg.feed(audio[i:i + 4096])
    return out + seg.flush()


def judge_cuts(segments, reference) -> dict:
    cuts = [g.span.end / SR for g in segments if g.forced_cut]
    in_clause = [t for t in cuts if any(r["start"] < t < r["end"] for r in reference)]
    words = [w for r in reference for w in r["words"]]
    in_word = [t for t in cuts if any(a + 0.02 < t < b - 0.02 for _, a, b in words)]
    return {"forced": len(cuts), "in_clause": len(in_clause), "in_word_est": len(in_word)}


def fragment_wer(asr, segments, reference, context: str = "none") -> dict:
    """WER of the fragments' transcripts, in order, against the reference words they cover.

    ``context`` is what a fragment is heard behind (the sts-service's asr/left_context.py):
    ``none``, every fragment cold; ``cuts``, a fragment after a forced cut hears the cut one, whose
    last word it takes over (``--asr-left-context-pause 0``); ``all``, also a fragment after a pause
    of up to ``PAUSE_S``, the pause as silence, where that costs no wider encoder window (the
    default). The words before always arrive in time here (one fragment after the other)."""
    from sts_service.asr.left_context import LeftContext, ends_in_pause, hand_over
    from sts_service.asr.whisper import LeftAudio
    from sts_service.translation.ct2 import ends_sentence

    async def run() -> tuple[list[str], list[str], int, int]:  # Heard's futures need an event loop
        memory = LeftContext(0.0 if context == "none" else 5.0, PAUSE_S if context == "all" else 0.0)
        refs, hyps, final, heard_behind, empty = [], [], 0, 0, 0
        for seq, g in enumerate(segments):
            a, b = g.span.start / SR, g.span.end / SR
            words = [w for r in reference for w, ws, we in r["words"] if a <= (ws + we) / 2 < b]
            refs += words
            prev = memory.before(seq, a * 1000.0)
            entry = memory.add(seq, a * 1000.0, (b - a) * 1000.0, g.audio, g.speech_goes_on)
            left = None
            if prev is not None and prev.text.result():
                left = LeftAudio(prev.lead_in(a * 1000.0), prev.text.result())
                wider = asr.window_frames(len(left.audio) + len(g.audio)) > asr.window_frames(len(g.audio))
                if not prev.continues and wider:  # as pipeline._left_audio
                    left = None
            heard_behind += left is not None
            hyp = asr.transcribe(g.audio, left=left).text.strip()
            if entry.continues:
                hyp, _ = hand_over(hyp, not ends_in_pause(g.audio))
            entry.commit(hyp)
            final += g.forced_cut and ends_sentence(hyp)
            empty += bool(words) and not hyp
            hyps.append(hyp)
        return refs, hyps, final, heard_behind, empty

    refs, hyps, final, heard_behind, empty = asyncio.run(run())
    return {"wer": word_error_rate(" ".join(refs), " ".join(hyps)) if refs else None, "ref_words": len(refs),
            "forced_final_punct": final, "heard_behind": heard_behind, "empty": empty}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--delays", default="2.5,3.5,5")
    ap.add_argument("--rtt", type=float, default=0.6, help="service time the fragment limits assume, s")
    ap.add_argument("--no-asr", action="store_true", help="cut positions only, no transcription")
    ap.add_argument("--context", default="none",
                    help="comma-separated: none, cuts (left context after forced cuts), all (also after pauses)")
    ap.add_argument("--pauses", choices=("clause", "long"), default="clause",
                    help="pauses inside sentences: clause = 0.15-0.4 s (default), long = 0.4-1.2 s")
    ap.add_argument("--policies", default="quietest,pause", help="comma-separated forced-cut policies")
    args = ap.parse_args()
    contexts = args.context.split(",")
    if any(c not in ("none", "cuts", "all") for c in contexts):
        ap.error(f"--context takes none, cuts and/or all, not {args.context!r}")
    pauses = PAUSE_RANGE if args.pauses == "clause" else LONG_PAUSE_RANGE
    info = cached_dense_media(seconds=args.seconds, width=640, height=360, pause_range=pauses)
    audio = decode(info.path)
    ref = [r for r in info.reference if not r.get("cut_off")]
    asr = None
    if not args.no_asr:
        from sts_service.asr.whisper import WhisperASR

        asr = WhisperASR(cpu_threads=2)
        asr.transcribe(audio[: 2 * SR])  # warm-up
    rows = []
    for d in (float(v) for v in args.delays.split(",")):
        limits = fragment_limits(d, args.rtt, cap_ms=MAX_FRAGMENT_CAP_MS, min_silence_cap_ms=MIN_SILENCE_CAP_MS)
        policies = {"quietest": 0, "pause": SegmenterConfig().cut_pause_ms}
        for policy in args.policies.split(","):
            pause_ms = policies[policy]
            t0 = time.perf_counter()
            segs = segment(audio, limits.max_fragment_ms, limits.min_silence_ms, pause_ms)
            seg_ms = (time.perf_counter() - t0) * 1000.0
            base = {"D": d, "max_fragment_ms": round(limits.max_fragment_ms), "min_silence_ms": limits.min_silence_ms,
                    "policy": policy, "fragments": len(segs), "segment_ms": round(seg_ms),
                    **judge_cuts(segs, ref)}
            for context in contexts if asr is not None else ["-"]:
                row = {**base, "context": context}
                if asr is not None:
                    log(f"D {d:g} {policy}, context {context}: transcribing {len(segs)} fragments ...")
                    t0 = time.perf_counter()
                    row.update(fragment_wer(asr, segs, ref, context))
                    row["asr_s"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
    print(f"Forced cuts on the dense fixture ({args.seconds:g} s, {len(ref)} clauses, pauses inside sentences "
          f"{pauses[0]:g}-{pauses[1]:g} s), fragment limits from D with a {args.rtt:g} s service time; WER of "
          f"tiny.en over each stream's fragments in order, with the left context named")
    print(f"{'D':>4} {'maxfrag':>7} {'pause':>5} {'policy':>9} {'frags':>5} {'forced':>6} {'in clause':>9} "
          f"{'in word~':>8} {'context':>7} {'behind':>6} {'empty':>5} {'WER %':>6} {'final.':>6} {'ASR s':>6}")
    for r in rows:
        wer = "-" if r.get("wer") is None else f"{100 * r['wer']:.1f}"
        print(f"{r['D']:>4g} {r['max_fragment_ms']:>7} {r['min_silence_ms']:>5g} {r['policy']:>9} {r['fragments']:>5} "
              f"{r['forced']:>6} {r['in_clause']:>9} {r['in_word_est']:>8} {r['context']:>7} "
              f"{r.get('heard_behind', '-'):>6} {r.get('empty', '-'):>5} {wer:>6} {r.get('forced_final_punct', '-'):>6} {r.get('asr_s', '-'):>6}")
    print(json.dumps({"bench": "cuts", "seconds": args.seconds, "rtt": args.rtt, "pause_range": list(pauses),
                      "rows": rows}))


if __name__ == "__main__":
    main()
