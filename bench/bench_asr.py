"""ASR cost and accuracy: full 30 s window (faster-whisper's default) vs the sized window, batched.

Corpus: the dense fixture's news sentences cut into clauses (1-4 s, as the media-service's VAD
cuts a news read), in the fixture's five voices (Piper joe at three speeds, two pitch-shifted).
For each mode: ms per fragment (p50/p95), real-time factor, WER against the clause text, and the
full-window re-runs the truncation guards asked for. Then batches of 1/2/4 fragments of one window.
With ``--prompt``, the previous clause's transcript is also given as the prompt. ``--errors`` lists
every clause a mode got wrong (reference, hypothesis, the guard that re-ran it).

``--cuts N``: N whole sentences, each cut at 35/50/65 % of its length as the media-service's
fragment limit cuts a long sentence (not at a pause: often inside a word); the second piece heard
cold (alone) against heard behind the first with its words as prefix (``--asr-left-context``, the
first piece's last word handed over). WER of the whole sentence and ms / encoder window of the
second piece's decode.

Piper synthesises with random noise, so each run draws a slightly different corpus (the full-window
WER moved between 3.6 % and 4.9 % over runs of 40 clauses): compare modes within one run.

Run: .venv/bin/python bench/bench_asr.py [--clauses 60] [--threads 2]. Prints a table, then one
JSON line. Progress on stderr. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import fmt, log, pct
from livedub_testkit.dense import SENTENCES, VOICES, _synth, split_clauses
from livedub_testkit.speech import word_error_rate
from sts_service.asr import ASR_RATE
from sts_service.asr.left_context import hand_over
from sts_service.asr.whisper import FULL_WINDOW, LeftAudio, WhisperASR


def corpus(n: int) -> list[tuple[str, np.ndarray]]:
    clauses = [c for s in SENTENCES for c in split_clauses(s)]
    voices = list(VOICES)
    out = []
    for i, text in enumerate(clauses[:n]):
        x = _synth(text, voices[i % len(voices)])  # 48 kHz
        out.append((text, x[::3].astype(np.float32)))  # 16 kHz (Piper output is band-limited)
    return out


def run(asr: WhisperASR, items, mode: str, prompt: bool) -> dict:
    times, wers, prev, errors = [], [], None, []
    before = sum(v for k, v in asr.stats.items() if k.startswith("full_window_rerun"))
    for text, audio in items:
        t0 = time.perf_counter()
        if mode == "full":
            tokens, hyp, *_ = asr._decode([audio], [prev if prompt else None], FULL_WINDOW)[0]
        else:
            reruns0 = dict(asr.stats)
            hyp = asr.transcribe(audio, prompt=prev if prompt else None).text
        times.append((time.perf_counter() - t0) * 1000.0)
        wers.append(word_error_rate(text, hyp))
        if wers[-1] > 0:
            guard = "" if mode == "full" else ",".join(
                k.split(":", 1)[1] for k, v in asr.stats.items()
                if k.startswith("full_window_rerun") and v != reruns0.get(k, 0))
            errors.append({"clause": len(times) - 1, "wer": wers[-1], "ref": text, "hyp": hyp, "rerun": guard})
        prev = hyp
    audio_s = sum(len(a) for _, a in items) / ASR_RATE
    reruns = sum(v for k, v in asr.stats.items() if k.startswith("full_window_rerun")) - before
    return {"mode": mode, "prompt": prompt, "ms_p50": pct(times, 50), "ms_p95": pct(times, 95),
            "rtf": sum(times) / 1000.0 / audio_s, "wer": float(np.mean(wers)), "reruns": reruns,
            "errors": errors}


CUT_AT = (0.35, 0.5, 0.65)


def cut_sentences(asr: WhisperASR, n: int, beam: int) -> dict:
    """Sentences cut at a forced point: the second piece cold vs behind its left context."""
    voices = list(VOICES)
    rows = {"cold": {"wer": [], "ms": [], "window": []}, "context": {"wer": [], "ms": [], "window": []}}
    for i, sentence in enumerate(SENTENCES[:n]):
        x = _synth(sentence, voices[i % len(voices)])[::3].astype(np.float32)
        for at in CUT_AT:
            cut = int(len(x) * at)
            first, second = x[:cut], x[cut:]
            heard = asr.transcribe(first, beam_size=beam).text
            kept, _ = hand_over(heard, True)
            for mode, left, before in (("cold", None, heard), ("context", LeftAudio(first, kept), kept)):
                t0 = time.perf_counter()
                text = asr.transcribe(second, beam_size=beam, left=left).text
                r = rows[mode]
                r["ms"].append((time.perf_counter() - t0) * 1000.0)
                r["window"].append(asr.window_frames(len(second) + (len(first) if left else 0)))
                r["wer"].append(word_error_rate(sentence, before + " " + text))
                if r["wer"][-1] > 0:
                    r.setdefault("errors", []).append(f"{r['wer'][-1] * 100:5.1f}% {before!r} | {text!r}")
    return {m: {"wer": float(np.mean(r["wer"])), "ms_p50": pct(r["ms"], 50), "ms_p95": pct(r["ms"], 95),
                "window_mean": float(np.mean(r["window"])), "cuts": len(r["wer"]), "errors": r.get("errors", [])}
            for m, r in rows.items()}


def batches(asr: WhisperASR, items) -> list[dict]:
    rows = []
    audios = [a for _, a in items if len(a) <= 8 * ASR_RATE]
    for b in (1, 2, 4):
        n = (len(audios) // b) * b
        t0 = time.perf_counter()
        for i in range(0, n, b):
            asr.transcribe_batch(audios[i:i + b])
        ms = (time.perf_counter() - t0) * 1000.0 / max(1, n)
        rows.append({"batch": b, "ms_per_fragment": ms})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clauses", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    ap.add_argument("--min-window", type=int, default=None, help="shortest encoder window, frames")
    ap.add_argument("--margin", type=int, default=None, help="frames of window after the audio")
    ap.add_argument("--errors", action="store_true", help="list each clause a mode got wrong")
    ap.add_argument("--modes", default="full,sized,sized+prompt", help="comma-separated subset")
    ap.add_argument("--cuts", type=int, default=0, help="sentences cut at a forced point, cold vs left context")
    args = ap.parse_args()
    log("synthesising the corpus ...")
    items = corpus(args.clauses)
    durs = [len(a) / ASR_RATE for _, a in items]
    log(f"{len(items)} clauses, {min(durs):.1f}-{max(durs):.1f} s, {sum(durs):.0f} s in all")
    kw = {} if args.min_window is None else {"min_window": args.min_window}
    if args.margin is not None:
        kw["window_margin"] = args.margin
    asr = WhisperASR(cpu_threads=args.threads, beam_size=args.beam, **kw)
    asr.transcribe(items[0][1])  # warm-up
    rows = []
    wanted = set(args.modes.split(","))
    for mode, prompt in (("full", False), ("sized", False), ("sized", True)):
        if mode + ("+prompt" if prompt else "") not in wanted:
            continue
        asr.use_prompt = prompt
        log(f"mode {mode}{' + prompt' if prompt else ''} ...")
        rows.append(run(asr, items, mode, prompt))
    asr.use_prompt = False
    log("batches ...")
    brows = batches(asr, items)
    print(f"ASR on {len(items)} dense-speech clauses ({min(durs):.1f}-{max(durs):.1f} s), "
          f"tiny.en int8, {args.threads} threads, beam {asr.beam_size}, shortest window {asr.min_window} frames, "
          f"margin {asr.window_margin}")
    print(f"{'mode':<16}{'ms p50':>8}{'ms p95':>8}{'RTF':>7}{'WER':>7}{'re-runs':>9}")
    for r in rows:
        name = r["mode"] + (" + prompt" if r["prompt"] else "")
        print(f"{name:<16}{fmt(r['ms_p50'], '.0f'):>8}{fmt(r['ms_p95'], '.0f'):>8}{r['rtf']:>7.3f}"
              f"{r['wer'] * 100:>6.1f}%{r['reruns']:>9}")
    if args.errors:
        for r in rows:
            print(f"errors, {r['mode']}{' + prompt' if r['prompt'] else ''}:")
            for e in r["errors"]:
                rerun = f" (re-run: {e['rerun']})" if e["rerun"] else ""
                print(f"  [{e['clause']:2d}] {e['wer'] * 100:5.1f}%{rerun}  {e['ref']!r} -> {e['hyp']!r}")
    print(f"{'batch':<8}{'ms/fragment':>12}")
    for r in brows:
        print(f"{r['batch']:<8}{r['ms_per_fragment']:>12.0f}")
    cuts = {}
    if args.cuts:
        log("cut sentences ...")
        cuts = cut_sentences(asr, args.cuts, asr.beam_size)
        print(f"second piece of {cuts['cold']['cuts']} cut sentences (cut at {'/'.join(str(a) for a in CUT_AT)})")
        print(f"{'mode':<16}{'WER':>7}{'ms p50':>8}{'ms p95':>8}{'window':>8}")
        for mode, r in cuts.items():
            print(f"{mode:<16}{r['wer'] * 100:>6.1f}%{r['ms_p50']:>8.0f}{r['ms_p95']:>8.0f}{r['window_mean']:>8.0f}")
        if args.errors:
            for mode, r in cuts.items():
                print(f"errors, cut sentences, {mode}:")
                for e in r["errors"]:
                    print("  " + e)
    print(json.dumps({"modes": [{k: v for k, v in r.items() if k != "errors"} for r in rows],
                      "batches": brows, "clauses": len(items),
                      "cuts": {m: {k: v for k, v in r.items() if k != "errors"} for m, r in cuts.items()}}))


if __name__ == "__main__":
    main()
