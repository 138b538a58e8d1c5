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
the WER is taken against the reference words whose estimated midpoint lies in the fragment;
also how many forced-cut fragments the ASR ended with final punctuation all the same (``final.``:
the sts-service's CTranslate2 engines continue a sentence only after a fragment without it).

Run: .venv/bin/python bench/bench_cuts.py [--seconds 60] [--delays 2.5,3.5,5] [--rtt 0.6] [--no-asr].
Prints a table, then one JSON line. Progress on stderr. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np
from _common import log
from livedub_testkit.dense import cached_dense_media
from livedub_testkit.speech import word_error_rate
from media_service.audio.segmenter import SAMPLE_RATE, SegmenterConfig, SpeechSegmenter
from media_service.stream.budget import fragment_limits

SR = SAMPLE_RATE
MAX_FRAGMENT_CAP_MS = 5000  # the media-service's defaults (--max-fragment-ms, --min-silence-ms)
MIN_SILENCE_CAP_MS = 300


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


def fragment_wer(asr, segments, reference) -> dict:
    from sts_service.translation.ct2 import ends_sentence

    errors = words = 0.0
    final = 0
    for g in segments:
        a, b = g.span.start / SR, g.span.end / SR
        ref = " ".join(w for r in reference for w, ws, we in r["words"] if a <= (ws + we) / 2 < b)
        if not ref:
            continue
        hyp = asr.transcribe(g.audio).text
        final += g.forced_cut and ends_sentence(hyp)
        n = len(ref.split())
        errors += word_error_rate(ref, hyp) * n
        words += n
    return {"wer": errors / words if words else None, "ref_words": int(words), "forced_final_punct": final}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--delays", default="2.5,3.5,5")
    ap.add_argument("--rtt", type=float, default=0.6, help="service time the fragment limits assume, s")
    ap.add_argument("--no-asr", action="store_true", help="cut positions only, no transcription")
    args = ap.parse_args()
    info = cached_dense_media(seconds=args.seconds, width=640, height=360)
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
        for policy, pause_ms in (("quietest", 0), ("pause", SegmenterConfig().cut_pause_ms)):
            t0 = time.perf_counter()
            segs = segment(audio, limits.max_fragment_ms, limits.min_silence_ms, pause_ms)
            seg_ms = (time.perf_counter() - t0) * 1000.0
            row = {"D": d, "max_fragment_ms": round(limits.max_fragment_ms), "min_silence_ms": limits.min_silence_ms,
                   "policy": policy, "fragments": len(segs), "segment_ms": round(seg_ms),
                   **judge_cuts(segs, ref)}
            if asr is not None:
                log(f"D {d:g} {policy}: transcribing {len(segs)} fragments ...")
                row.update(fragment_wer(asr, segs, ref))
            rows.append(row)
    print(f"Forced cuts on the dense fixture ({args.seconds:g} s, {len(ref)} clauses), fragment limits "
          f"from D with a {args.rtt:g} s service time; WER of tiny.en on each fragment")
    print(f"{'D':>4} {'maxfrag':>7} {'pause':>5} {'policy':>9} {'frags':>5} {'forced':>6} {'in clause':>9} "
          f"{'in word~':>8} {'WER %':>6} {'final.':>6}")
    for r in rows:
        wer = "-" if r.get("wer") is None else f"{100 * r['wer']:.1f}"
        print(f"{r['D']:>4g} {r['max_fragment_ms']:>7} {r['min_silence_ms']:>5g} {r['policy']:>9} {r['fragments']:>5} "
              f"{r['forced']:>6} {r['in_clause']:>9} {r['in_word_est']:>8} {wer:>6} {r.get('forced_final_punct', '-'):>6}")
    print(json.dumps({"bench": "cuts", "seconds": args.seconds, "rtt": args.rtt, "rows": rows}))


if __name__ == "__main__":
    main()
