"""End to end on loopback: glass-to-glass added delay at the default D, and stream capacity.

(a) Added delay. One LocalStack (nginx-rtmp + hooks, sts-service, media-service with no
    ``--output-delay``, i.e. the service default). Two *viewers* are started before the publisher,
    one playing ``live/<name>/in`` (what a viewer of the original would see) and one playing
    ``live/<name>/out`` (the dubbed stream). Each viewer is one ffmpeg process that
    (1) records the stream (``-c copy`` to FLV) and (2) writes the framemd5 of every video packet
    to a pipe with ``-flush_packets 1``; a reader thread stamps each line with the wall clock
    (``time.monotonic()``) the moment it arrives. media-service passes video through untouched
    (same H.264 bytes), so a video packet is identified on both sides by its MD5 (packets whose
    hash is not unique are ignored) and the added delay of that packet is

        t_arrival(out viewer) - t_arrival(in viewer)

    i.e. exactly what a viewer notices: how much later the same picture arrives on the dubbed
    stream than on the original, including media-service's buffering, its output relay and the
    extra hop through nginx. Both viewers are identical ffmpeg processes on the same server, so
    their own buffering cancels out; packets of the first 3 s after each viewer's first packet
    are left out (ffmpeg's stream probing releases them in a burst). Reported: median, p5, p95,
    min and max over all matched packets, next to the service's own ``output_delay_measured_s``
    (its write time minus ingest time of the last audio frame). Audio is re-encoded so it cannot
    be matched by bytes; its sync with the video is ``av_offset_ms`` from the API. Also reported:
    fallback rate, fragment round trip and CPU%/RSS of media-service, sts-service and nginx
    (process trees, sampled every 0.5 s from /proc; 100 % = one core).

(b) Capacity. On the same stack, k = 1, 2, ... ``--max-streams`` streams (distinct names, the
    same fixture, ``--seconds`` long) are published at once, each with a recorder on its output.
    For each k: fallback rate (fallbacks / fragments sent, all streams), RTT p95 (worst stream),
    CPU of each service, the largest ``output_delay_measured_s`` seen while running (polled every
    second; the real-time test ignores each output's first 3 s, where opening the output makes
    the first writes late, but that maximum is reported too) and audio written: ``audio_frames_out`` x 1024 / 48 kHz against the video passed through (``video_packets_out`` / fps)
    (the API's count), and the AAC packets in the viewer's recording likewise. Real time is kept
    when every stream wrote >= 95 % of the expected audio (API and recording), the largest measured
    delay stayed within D + 0.5 s, and the fallback rate is < 5 %. k stops increasing when real
    time breaks.

Run: .venv/bin/python bench/bench_e2e.py [--seconds N] [--max-streams 4] [--parts a,b]
(default: 60 s fixture for (a), 30 s for (b); ``--seconds`` sets both). Prints tables and one
JSON line. Does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    AAC_FRAME,
    RATE,
    ProcSampler,
    Viewer,
    added_delay,
    fallback_stats,
    fmt,
    log,
    pct,
    recorded_audio_s,
    stack_targets,
    wait_played_out,
)
from livedub_testkit import analysis
from livedub_testkit.fixtures import cached_demo_media
from livedub_testkit.stack import LocalStack

REALTIME_AUDIO_RATIO = 0.95
REALTIME_DELAY_SLACK_S = 0.5
REALTIME_MAX_FALLBACK = 0.05
STEADY_AFTER_S = 3.0


# ------------------------------------------------------------------------------ runs
def part_a(stack, sampler, media, workdir: Path) -> dict:
    name = "e2e"
    v_in = Viewer(stack.url(f"{name}/in"), workdir / f"{name}-in.flv")
    v_out = Viewer(stack.url(f"{name}/out"), workdir / f"{name}-out.flv")
    pub = None
    res: dict = {"seconds": media.duration}
    try:
        time.sleep(1.0)  # both players connected and waiting (idle_streams)
        sampler.reset()
        log(f"(a) publishing {media.duration:g} s to {name}/in with viewers on in and out")
        t0 = time.monotonic()
        pub = analysis.publish(media.path, stack.url(f"{name}/in"), log_path=workdir / f"{name}-publish.log")
        next_log = t0 + 10
        while pub.poll() is None and time.monotonic() - t0 < media.duration + 60:
            time.sleep(0.5)
            if time.monotonic() >= next_log:
                next_log += 10
                part = added_delay(v_in, v_out)
                log(f"(a) t={time.monotonic() - t0:5.1f}s viewer packets in={part['packets_in']} "
                    f"out={part['packets_out']} added delay so far={fmt(part.get('median_s'), '.3f')} s")
        analysis.stop_process(pub)
        pub = None
        snaps = wait_played_out(stack, [name], timeout=30)
        time.sleep(1.0)  # the last packets reach the out viewer
        res["resources"] = sampler.summary()
        snap = snaps.get(name) or stack.media.api("GET", f"/v1/streams/{name}")[1]
        res.update(fallback_stats(snap))
    finally:
        if pub is not None:
            analysis.stop_process(pub)
        v_in.stop()
        v_out.stop()
    res["added_delay"] = added_delay(v_in, v_out)
    res["recordings"] = {"in": str(v_in.record_path), "out": str(v_out.record_path)}
    res["recorded_audio_s"] = {"in": recorded_audio_s(v_in.record_path), "out": recorded_audio_s(v_out.record_path)}
    stack.media.api("DELETE", f"/v1/streams/{name}")
    return res


def part_b_k(stack, sampler, media, k: int, workdir: Path) -> dict:
    names = [f"cap{k}-{i}" for i in range(k)]
    recs = {n: analysis.record_stream(stack.url(f"{n}/out"), workdir / f"{n}-out.flv") for n in names}
    pubs: dict[str, subprocess.Popen] = {}
    series: dict[str, list[tuple[float, float]]] = {n: [] for n in names}  # (t since publish, measured D)
    delay_s = None
    res: dict = {"k": k, "names": names}
    try:
        time.sleep(1.0)
        sampler.reset()
        log(f"(b) k={k}: publishing {k} x {media.duration:g} s")
        t0 = time.monotonic()
        for n in names:
            pubs[n] = analysis.publish(media.path, stack.url(f"{n}/in"), log_path=workdir / f"{n}-publish.log")
        next_log = t0 + 10
        while any(p.poll() is None for p in pubs.values()) and time.monotonic() - t0 < media.duration + 60:
            time.sleep(1.0)
            for n in names:
                status, snap = stack.media.api("GET", f"/v1/streams/{n}")
                if status == 200:
                    delay_s = snap.get("output_delay_s")
                    if snap["counters"]["audio_frames_out"] > 0:
                        series[n].append((round(time.monotonic() - t0, 2), snap.get("output_delay_measured_s") or 0.0))
            if time.monotonic() >= next_log:
                next_log += 10
                log(f"(b) k={k}: t={time.monotonic() - t0:5.1f}s max measured delay so far "
                    f"{max((d for v in series.values() for _, d in v), default=0.0):.2f} s")
        for p in pubs.values():
            analysis.stop_process(p)
        pubs.clear()
        # Keep polling the measured delay while the tail plays out.
        snaps = wait_played_out(stack, names, timeout=(delay_s or 10) + 30)
        res["resources"] = sampler.summary()
    finally:
        for p in pubs.values():
            analysis.stop_process(p)
        time.sleep(1.0)
        for r in recs.values():
            analysis.stop_process(r)
    per = {n: fallback_stats(snaps[n]) if n in snaps else {} for n in names}
    sent = sum(p.get("fragments_sent", 0) for p in per.values())
    fbs = sum(p.get("fallbacks_total", 0) for p in per.values())
    reasons: dict[str, int] = {}
    for p in per.values():
        for r, c in p.get("fallbacks", {}).items():
            reasons[r] = reasons.get(r, 0) + c
    # Expected audio: the span of video the stream passed through. A hook-started worker joins at
    # the next keyframe and sends no audio before its first picture, so the fixture's full length
    # would count that lead-in as lost.
    expected = {n: max(1e-9, (p.get("video_packets_out") or 0) / media.fps) for n, p in per.items()}
    expected_s = min(expected.values()) if expected else media.duration
    api_audio = {n: (p.get("audio_frames_out") or 0) * AAC_FRAME / RATE for n, p in per.items()}
    rec_audio = {n: recorded_audio_s(workdir / f"{n}-out.flv") for n in names}
    ratio_api = min(api_audio[n] / expected[n] for n in api_audio)
    ratio_rec = min((rec_audio[n] or 0.0) / expected[n] for n in rec_audio if n in expected)
    rate = fbs / sent if sent else (0.0 if not fbs else float("inf"))
    worst_delay = max((d for v in series.values() for _, d in v), default=0.0)
    # The same without each output's first seconds: opening the output (ffmpeg relay, RTMP
    # connect) happens when the first frame is due, so the first writes are late by that time.
    steady = max((d for v in series.values() for t, d in v if v and t - v[0][0] >= STEADY_AFTER_S), default=0.0)
    realtime = (len(per) == k and all(per.values()) and ratio_api >= REALTIME_AUDIO_RATIO
                and ratio_rec >= REALTIME_AUDIO_RATIO and rate < REALTIME_MAX_FALLBACK
                and delay_s is not None and steady <= delay_s + REALTIME_DELAY_SLACK_S)
    res.update({
        "fragments_sent": sent, "fallbacks_total": fbs, "fallbacks": reasons, "fallback_rate": rate,
        "rtt_p95_ms": max((p.get("rtt_p95_ms") or 0.0) for p in per.values()) if per else None,
        "rtt_p50_ms": pct([p.get("rtt_p50_ms") for p in per.values()], 50),
        "output_delay_s": delay_s, "max_output_delay_measured_s": worst_delay,
        "steady_max_output_delay_measured_s": steady, "delay_series": series,
        "audio_written_s_api": api_audio, "audio_recorded_s": rec_audio, "expected_audio_s": expected_s,
        "audio_ratio_api_min": ratio_api, "audio_ratio_recorded_min": ratio_rec,
        "realtime": realtime, "per_stream": per,
    })
    for n in names:
        stack.media.api("DELETE", f"/v1/streams/{n}")
    log(f"(b) k={k}: fallback rate {rate * 100:.1f}% ({fbs}/{sent}) audio api/rec min "
        f"{ratio_api * 100:.1f}%/{ratio_rec * 100:.1f}% max delay {worst_delay:.2f} s (steady {steady:.2f} s) -> "
        f"{'real time' if realtime else 'NOT real time'}")
    return res


# ------------------------------------------------------------------------------ report
def cpu_cell(r: dict, name: str) -> str:
    s = r.get("resources", {}).get(name, {})
    return f"{fmt(s.get('cpu_avg'), '.0f')}/{fmt(s.get('cpu_max'), '.0f')}%"


def rss_cell(r: dict, name: str) -> str:
    s = r.get("resources", {}).get(name, {})
    return f"{fmt(s.get('rss_main_max_mb'), '.0f')}/{fmt(s.get('pss_max_mb'), '.0f')} MB"


def print_report(out: dict) -> None:
    print(f"\ne2e benchmark on loopback, {out['cpus']} cores; CPU % of one core (avg/max over process "
          f"trees); memory = max RSS of the main process / max PSS of its whole tree")
    a = out.get("a")
    if a:
        d = a.get("added_delay", {})
        print(f"\n(a) glass-to-glass added delay, default D = {fmt(a.get('output_delay_s'), 'g')} s, "
              f"{a['seconds']:g} s stream")
        if "error" in a:
            print(f"  FAILED: {a['error'][:300]}")
        print(f"  added delay (same video packet, out viewer - in viewer): median {fmt(d.get('median_s'), '.3f')} s"
              f"  p5 {fmt(d.get('p5_s'), '.3f')}  p95 {fmt(d.get('p95_s'), '.3f')}  min {fmt(d.get('min_s'), '.3f')}"
              f"  max {fmt(d.get('max_s'), '.3f')}  ({d.get('matched', 0)} packets matched of "
              f"{d.get('packets_out', 0)} out / {d.get('packets_in', 0)} in)")
        print(f"  service-measured output delay: {fmt(a.get('output_delay_measured_s'), '.3f')} s; "
              f"A/V offset {fmt(a.get('av_offset_ms'), '.2f')} ms")
        rate = a.get("fallback_rate")
        print(f"  fragments sent {a.get('fragments_sent')}, processed {a.get('processed')}, fallbacks "
              f"{a.get('fallbacks')} -> fallback rate {fmt(rate * 100 if rate is not None else None, '.1f')}%; "
              f"RTT p50/p95 {fmt(a.get('rtt_p50_ms'), '.0f')}/{fmt(a.get('rtt_p95_ms'), '.0f')} ms")
        print(f"  {'':<8}{'CPU avg/max':>14}{'RSS/PSS max':>16}")
        for n in ("media", "sts", "nginx"):
            print(f"  {n:<8}{cpu_cell(a, n):>14}{rss_cell(a, n):>16}")
    b = out.get("b")
    if b:
        print(f"\n(b) capacity: k simultaneous streams of {b['seconds']:g} s "
              f"(real time = audio >= {REALTIME_AUDIO_RATIO * 100:.0f}% of expected, measured delay <= D + "
              f"{REALTIME_DELAY_SLACK_S} s after each output's first {STEADY_AFTER_S:g} s ('steady'; 'max D' "
              f"includes them), fallback rate < {REALTIME_MAX_FALLBACK * 100:.0f}%)")
        print(f"{'k':>3}{'sent':>6}{'fallbk':>7}{'rate':>8}  {'by reason':<26}{'RTT p95':>9}{'max D':>7}{'steady':>7}"
              f"{'audio api':>10}{'audio rec':>10}{'media CPU':>11}{'sts CPU':>10}{'nginx':>8}{'media RSS/PSS':>15}"
              f"{'sts RSS/PSS':>14}  real time")
        for r in b["runs"]:
            if "error" in r and "fragments_sent" not in r:
                print(f"{r['k']:>3}  FAILED: {r['error'][:200]}")
                continue
            reasons = ",".join(f"{k}={v}" for k, v in sorted(r["fallbacks"].items())) or "-"
            print(f"{r['k']:>3}{r['fragments_sent']:>6}{r['fallbacks_total']:>7}"
                  f"{fmt(r['fallback_rate'] * 100, '.1f') + '%':>8}  {reasons:<26}{fmt(r['rtt_p95_ms'], '.0f'):>9}"
                  f"{fmt(r['max_output_delay_measured_s'], '.2f'):>7}"
                  f"{fmt(r['steady_max_output_delay_measured_s'], '.2f'):>7}"
                  f"{fmt(r['audio_ratio_api_min'] * 100, '.1f') + '%':>10}"
                  f"{fmt(r['audio_ratio_recorded_min'] * 100, '.1f') + '%':>10}"
                  f"{cpu_cell(r, 'media'):>11}{cpu_cell(r, 'sts'):>10}{cpu_cell(r, 'nginx'):>8}"
                  f"{rss_cell(r, 'media'):>15}{rss_cell(r, 'sts'):>14}  {'yes' if r['realtime'] else 'NO'}")
        print(f"max streams in real time: {b.get('max_realtime_streams')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None,
                    help="stream length for both parts (default: 60 s for (a), 30 s for (b))")
    ap.add_argument("--max-streams", type=int, default=4)
    ap.add_argument("--parts", default="a,b", help="which parts to run: a, b or a,b")
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    log(f"work dir (recordings, service logs): {workdir}")
    media_a = cached_demo_media(seconds=args.seconds or 60) if "a" in parts else None
    media_b = cached_demo_media(seconds=args.seconds or 30) if "b" in parts else None
    out: dict = {"bench": "e2e", "cpus": os.cpu_count(), "workdir": str(workdir)}
    stack = LocalStack(workdir=workdir / "stack")
    sampler = None
    try:
        log("starting nginx-rtmp + sts-service + media-service (default output delay) ...")
        stack.start()
        sampler = ProcSampler(stack_targets(stack)).start()
        if media_a is not None:
            try:
                out["a"] = part_a(stack, sampler, media_a, workdir)
            except Exception as exc:
                log(f"(a) FAILED: {exc}")
                out["a"] = {"seconds": media_a.duration, "error": str(exc)[:2000], "media_log": stack.media.logs(20)}
        if media_b is not None:
            out["b"] = {"seconds": media_b.duration, "runs": [], "max_realtime_streams": 0}
            for k in range(1, args.max_streams + 1):
                try:
                    r = part_b_k(stack, sampler, media_b, k, workdir)
                except Exception as exc:
                    log(f"(b) k={k} FAILED: {exc}")
                    out["b"]["runs"].append({"k": k, "error": str(exc)[:2000], "realtime": False})
                    break
                out["b"]["runs"].append(r)
                if not r["realtime"]:
                    log(f"(b) real time broke at k={k}: stopping")
                    break
                out["b"]["max_realtime_streams"] = k
    finally:
        if sampler is not None:
            sampler.stop()
        stack.stop()
        log("stack stopped")
    print_report(out)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
