"""sts-service latency, real-time factor and WER through its real Socket.IO interface.

Starts the real sts-service (``StsProcess``, bundled models, ``--asr-threads 1``, one worker per core as the service defaults), connects one
python-socketio AsyncClient to /sts, inits a stream en->es and sends fragments of natural
English speech (Piper voice, pairs of sentences from ``livedub_testkit.speech.SENTENCES``,
3-8 s each, with 0.2 s of silence around them):

* sequential pass: one fragment in flight (send, wait for ``fragment:processed``, next);
* concurrent pass: ``--concurrency`` fragments in flight (default 4), a new one sent as soon as
  one comes back.

Reported per pass: per-stage p50/p95 from the server's ``timings_ms`` (asr, translation, tts,
fit, total; stages are the time each ran, ``total`` includes time queued for the single ASR
worker), the client's
round trip (send -> processed), real-time factor (RTF = processing time / audio duration)
overall (sum of totals / sum of durations) and p95 of the per-fragment RTF, throughput
(audio seconds per wall second) and the word error rate of the transcripts (aggregate over all
words, and mean per fragment). Target: overall sequential total RTF <= 0.15.

Run: .venv/bin/python bench/bench_sts.py [--fragments 24] [--concurrency 4]
Prints a table, then one JSON line with every number. Does not assert.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import socketio
from _common import fmt, log, pct
from livedub_protocol import (
    FRAGMENT_DATA,
    FRAGMENT_PROCESSED,
    NAMESPACE,
    STREAM_END,
    STREAM_INIT,
    FragmentProcessed,
    parse,
)
from livedub_testkit.services import StsProcess
from livedub_testkit.speech import SENTENCES, speak, to_pcm16, word_error_rate

RATE = 16000
STAGES = ("asr", "translation", "tts", "fit", "total")
TARGET_RTF = 0.15


def build_fragments(n: int) -> list[tuple[str, np.ndarray]]:
    """n (reference text, 16 kHz float32 audio) fragments of 3-8 s: sentence pairs, cycling."""
    pad = np.zeros(int(0.2 * RATE), np.float32)
    gap = np.zeros(int(0.3 * RATE), np.float32)
    pairs = [(i, (i + k) % len(SENTENCES)) for k in range(1, len(SENTENCES)) for i in range(len(SENTENCES))]
    out: list[tuple[str, np.ndarray]] = []
    for a, b in itertools.cycle(pairs):
        if len(out) >= n:
            break
        text = f"{SENTENCES[a]} {SENTENCES[b]}"
        audio = np.concatenate([pad, speak(SENTENCES[a]), gap, speak(SENTENCES[b]), pad])
        dur = len(audio) / RATE
        if dur > 8.0:  # too long as a pair: the longer sentence alone if it is long enough
            one = max((a, b), key=lambda i: len(speak(SENTENCES[i])))
            text, audio = SENTENCES[one], np.concatenate([pad, speak(SENTENCES[one]), pad])
            dur = len(audio) / RATE
        if 3.0 <= dur <= 8.0:
            out.append((text, audio))
    return out


class Client:
    def __init__(self, url: str, token: str):
        self.sio = socketio.AsyncClient(reconnection=False)
        self.url, self.token = url, token
        self.waiters: dict[str, asyncio.Future] = {}

        @self.sio.on(FRAGMENT_PROCESSED, namespace=NAMESPACE)
        async def _processed(data):
            msg = parse(FragmentProcessed, data)
            fut = self.waiters.pop(msg.fragment_id, None)
            if fut is not None and not fut.done():
                fut.set_result((time.perf_counter(), msg))

    async def connect(self) -> Client:
        await self.sio.connect(self.url, namespaces=[NAMESPACE], transports=["websocket"],
                               auth={"token": self.token}, wait_timeout=10)
        return self

    async def call(self, event, data, timeout=60):
        return await self.sio.call(event, data, namespace=NAMESPACE, timeout=timeout)

    async def init(self, stream_id: str) -> dict:
        return await self.call(STREAM_INIT, {
            "stream_id": stream_id, "source_language": "en", "target_languages": ["es"],
            "audio": {"encoding": "pcm_s16le", "sample_rate_hz": RATE, "channels": 1}})

    async def process(self, stream_id: str, seq: int, audio: np.ndarray, timeout: float = 120) -> dict:
        """Send one fragment, wait for its result; returns a record of what happened."""
        fid = f"{stream_id}-{seq}"
        fut = asyncio.get_running_loop().create_future()
        self.waiters[fid] = fut
        t0 = time.perf_counter()
        ack = await self.call(FRAGMENT_DATA, {
            "stream_id": stream_id, "fragment_id": fid, "sequence_number": seq,
            "start_ms": seq * 10000.0, "duration_ms": len(audio) * 1000.0 / RATE, "audio": to_pcm16(audio)})
        if not ack.get("accepted"):
            self.waiters.pop(fid, None)
            return {"seq": seq, "accepted": False, "ack": ack}
        try:
            t1, msg = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.waiters.pop(fid, None)
            return {"seq": seq, "accepted": True, "status": "client_timeout"}
        return {"seq": seq, "accepted": True, "status": msg.status, "rtt_ms": (t1 - t0) * 1000.0,
                "timings": msg.timings_ms.model_dump(), "transcript": msg.transcript,
                "error": msg.error.model_dump() if msg.error else None,
                "dub_text": msg.results[0].text if msg.results else ""}

    async def close(self) -> None:
        await self.sio.disconnect()


async def run_pass(client: Client, stream_id: str, frags, concurrency: int) -> dict:
    ack = await client.init(stream_id)
    if not ack.get("ok"):
        raise RuntimeError(f"stream:init refused: {ack}")
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(seq: int, audio: np.ndarray) -> dict:
        nonlocal done
        async with sem:
            rec = await client.process(stream_id, seq, audio)
        done += 1
        tot = rec.get("timings", {}).get("total")
        log(f"  {stream_id}: {done}/{len(frags)} seq={seq} {rec.get('status', 'refused')} "
            f"dur={len(audio) / RATE:.2f}s total={fmt(tot, '.0f')}ms")
        return rec

    t0 = time.perf_counter()
    recs = await asyncio.gather(*(one(i, a) for i, (_, a) in enumerate(frags)))
    wall = time.perf_counter() - t0
    end = await client.call(STREAM_END, {"stream_id": stream_id})
    return summarize(recs, frags, wall, concurrency, ack, end)


def summarize(recs, frags, wall, concurrency, ack, end) -> dict:
    ok = [r for r in recs if r.get("status") == "ok"]
    durs = {r["seq"]: len(frags[r["seq"]][1]) / RATE for r in recs}
    stages = {s: {"p50": pct([r["timings"][s] for r in ok], 50), "p95": pct([r["timings"][s] for r in ok], 95)}
              for s in STAGES}
    rtf = [r["timings"]["total"] / 1000.0 / durs[r["seq"]] for r in ok]
    ref_words = [len(frags[r["seq"]][0].split()) for r in ok]
    wers = [word_error_rate(frags[r["seq"]][0], r["transcript"]) for r in ok]
    statuses: dict[str, int] = {}
    for r in recs:
        key = r.get("status", "refused") if r.get("accepted") else "refused"
        statuses[key] = statuses.get(key, 0) + 1
    audio_s = sum(durs.values())
    return {
        "concurrency": concurrency,
        "max_inflight": ack.get("max_inflight"),
        "fragments": len(recs),
        "statuses": statuses,
        "audio_s": audio_s,
        "wall_s": wall,
        "throughput_x_realtime": audio_s / wall if wall else None,
        "stages_ms": stages,
        "rtt_ms": {"p50": pct([r["rtt_ms"] for r in ok], 50), "p95": pct([r["rtt_ms"] for r in ok], 95)},
        "rtf_overall": sum(r["timings"]["total"] / 1000.0 for r in ok) / sum(durs[r["seq"]] for r in ok) if ok else None,
        "rtf_p50": pct(rtf, 50),
        "rtf_p95": pct(rtf, 95),
        "wer": sum(w * n for w, n in zip(wers, ref_words)) / sum(ref_words) if ok else None,
        "wer_mean": float(np.mean(wers)) if wers else None,
        "server_end": end,
        "errors": [r["error"] for r in recs if r.get("error")][:5],
        "worst_transcripts": sorted(((w, frags[r["seq"]][0], r["transcript"]) for w, r in zip(wers, ok)),
                                    reverse=True)[:3],
    }


def print_report(res: dict) -> None:
    passes = res["passes"]
    print(f"\nsts-service benchmark: {res['fragments']} fragments of {res['fragment_s']['min']:.1f}-"
          f"{res['fragment_s']['max']:.1f} s English speech (mean {res['fragment_s']['mean']:.2f} s), en->es, "
          f"sts args {' '.join(res['sts_args'])}, {res['cpus']} cores")
    print(f"startup (models loaded, /ready): {res['startup_s']:.1f} s")
    header = f"{'pass':<16}" + "".join(f"{s + ' p50/p95':>20}" for s in STAGES) + f"{'client rtt p50/p95':>22}"
    print(header)
    for name, p in passes.items():
        row = f"{name:<16}"
        for s in STAGES:
            st = p["stages_ms"][s]
            row += f"{fmt(st['p50'], '.0f') + ' / ' + fmt(st['p95'], '.0f') + ' ms':>20}"
        row += f"{fmt(p['rtt_ms']['p50'], '.0f') + ' / ' + fmt(p['rtt_ms']['p95'], '.0f') + ' ms':>22}"
        print(row)
    print("(stage columns: time the stage ran; total and rtt also include time queued for the single ASR "
          "worker)")
    print(f"\n{'pass':<16}{'RTF overall':>12}{'RTF p50':>10}{'RTF p95':>10}{'x realtime':>12}{'WER':>8}"
          f"{'WER mean':>10}  statuses")
    for name, p in passes.items():
        print(f"{name:<16}{fmt(p['rtf_overall'], '.3f'):>12}{fmt(p['rtf_p50'], '.3f'):>10}"
              f"{fmt(p['rtf_p95'], '.3f'):>10}{fmt(p['throughput_x_realtime'], '.2f'):>12}"
              f"{fmt(p['wer'] * 100 if p['wer'] is not None else None, '.1f') + '%':>8}"
              f"{fmt(p['wer_mean'] * 100 if p['wer_mean'] is not None else None, '.1f') + '%':>10}  {p['statuses']}")
    seq = passes.get("sequential", {})
    verdict = "n/a" if seq.get("rtf_overall") is None else (
        "meets" if seq["rtf_overall"] <= TARGET_RTF else "MISSES")
    print(f"\ntarget: sequential total RTF <= {TARGET_RTF} -> {verdict} "
          f"(overall {fmt(seq.get('rtf_overall'), '.3f')}, p95 {fmt(seq.get('rtf_p95'), '.3f')})")
    for name, p in passes.items():
        for w, ref, hyp in p["worst_transcripts"]:
            if w > 0:
                print(f"  {name} WER {w * 100:.0f}%: ref={ref!r}\n{'':>{len(name) + 12}}hyp={hyp!r}")


async def amain(args) -> dict:
    log("synthesizing English fragments with Piper ...")
    frags = build_fragments(args.fragments + 1)  # +1 warm-up
    warm, frags = frags[0], frags[1:]
    durs = [len(a) / RATE for _, a in frags]
    log(f"{len(frags)} fragments, {min(durs):.1f}-{max(durs):.1f} s, total {sum(durs):.1f} s of speech")
    sts_args = ["--asr-threads", str(args.asr_threads)]
    sts = StsProcess(*sts_args, log_dir=Path(tempfile.mkdtemp(prefix="bench-sts-")))
    res: dict = {"bench": "sts", "fragments": len(frags), "cpus": os.cpu_count(),
                 "fragment_s": {"min": min(durs), "max": max(durs), "mean": float(np.mean(durs))},
                 "sts_args": sts_args, "target_rtf": TARGET_RTF, "passes": {}}
    client = None
    try:
        log("starting sts-service (loading models) ...")
        t0 = time.perf_counter()
        sts.start(wait=240)
        res["startup_s"] = time.perf_counter() - t0
        log(f"sts-service ready in {res['startup_s']:.1f} s (log {sts.log_path})")
        client = await Client(sts.url, sts.token).connect()
        ack = await client.init("bench-warmup")
        rec = await client.process("bench-warmup", 0, warm[1])
        log(f"warm-up: {rec.get('status')} total={fmt(rec.get('timings', {}).get('total'), '.0f')} ms "
            f"(max_inflight={ack.get('max_inflight')})")
        await client.call(STREAM_END, {"stream_id": "bench-warmup"})
        log("sequential pass (1 in flight) ...")
        res["passes"]["sequential"] = await run_pass(client, "bench-seq", frags, 1)
        if args.concurrency > 1:
            log(f"concurrent pass ({args.concurrency} in flight) ...")
            res["passes"][f"concurrent x{args.concurrency}"] = await run_pass(
                client, "bench-conc", frags, args.concurrency)
    finally:
        if client is not None:
            try:
                await client.close()
            except Exception:
                pass
        sts.stop()
        log("sts-service stopped")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fragments", type=int, default=24, help="fragments per pass (default 24)")
    ap.add_argument("--concurrency", type=int, default=4, help="fragments in flight in the 2nd pass (default 4)")
    ap.add_argument("--asr-threads", type=int, default=1, help="threads per ASR worker (service default 1)")
    args = ap.parse_args()
    res = asyncio.run(amain(args))
    print_report(res)
    print(json.dumps(res, default=str))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
