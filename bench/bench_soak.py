"""Soak benchmark: two streams of dense speech for an hour; leaks (memory, fds, threads, children) and drift.

Issue 9 item 6. A fresh LocalStack (nginx-rtmp with publish hooks, sts-service, media-service,
all defaults unless ``--delay``), ``--streams`` (2) ``ffmpeg -re -stream_loop -1`` publishers of
the dense-speech fixture (:mod:`livedub_testkit.dense`, 60 s, 1280x720 30 fps, looped) started in
the same second, for ``--seconds`` (3600). With ``--delay D`` the streams are created with
``POST /v1/streams`` (``output_delay_s`` = D) before anything is published; without it the
publish hook starts them with the service's default D. A publisher that exits is re-published
(counted as a restart).

Measured while it runs:

* every ``--sample-every`` s (10 s; ``_common.ProcSampler``): CPU, RSS of the main process and PSS
  of the process tree, open fds (``/proc/PID/fd``) and threads of the main process, and the number
  of descendants, for media-service and sts-service;
* the run is cut into periods of ``--window-every`` s (300 s); at each period boundary the
  streams' counters (``GET /v1/streams/<id>``) and media-service's round-trip histogram
  (``/metrics``) are read, so each period has its own fallback share and round trip p50/p95
  (difference of two scrapes), and its CPU average;
* in the last ``--window-seconds`` (20 s) of each period, stream 0's output is recorded
  (``analysis.record_stream``), its A/V offset measured at the fixture's markers (beep + white
  frame, ``analysis.av_offsets``) in a background thread, and the file removed.

Reported: memory growth after warm-up (warm-up = the first 10 % of the run or 5 min, whichever is
smaller; growth = (median of the last quarter of the post-warm-up samples - median of the first
tenth of them, at least 3) / the latter, in %, goal < 5 %; also a least-squares slope in MB/h);
fd/thread/child counts min/max over the run, after warm-up and at the end; per period CPU, RSS,
fallback share, round trip and the window's A/V offsets; A/V drift = max - min and last - first
of the windows' median offsets (goal <= 2 ms); the run's fallback share and round trip
p50/p95/p99; sts-service's own accounting; the input rate (video packets in / fps / elapsed, ~1.0
when the publishers keep real time).

Short runs scale down: warm-up as above, periods of min(300, seconds / 6) s, windows of
min(20, 2/3 of a period) s, samples every min(10, max(1, seconds / 120)) s; ``--seconds 120`` is
a smoke run that still reports everything. Ctrl-C ends the run early and still reports.

Run: .venv/bin/python bench/bench_soak.py [--seconds 3600] [--streams 2] [--delay D]
[--window-every 300] [--window-seconds 20]. Prints tables, then one JSON line (with the sampled
series). Progress on stderr about every minute. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import (
    ProcSampler,
    Series,
    av_check,
    bucket_quantiles,
    create_streams,
    fallback_stats,
    fmt,
    log,
    quietly,
    roundtrip_buckets,
    roundtrip_quantiles,
    stack_targets,
    sts_accounting,
    wait_played_out,
)
from livedub_testkit import analysis
from livedub_testkit.dense import cached_dense_media
from livedub_testkit.services import http_json
from livedub_testkit.stack import LocalStack

GROWTH_GOAL_PCT = 5.0
DRIFT_GOAL_MS = 2.0
SERVICES = ("media", "sts")


# ------------------------------------------------------------------------------ schedule
def schedule(seconds: float, window_every: float | None, window_seconds: float | None,
             sample_every: float | None) -> dict:
    """Warm-up, sampling interval, periods and recording windows of a run of ``seconds``."""
    warmup = min(0.1 * seconds, 300.0)
    every = window_every or min(300.0, seconds / 6)
    ws = min(window_seconds or min(20.0, every * 2 / 3), every - 1.0)
    periods = []
    a = 0.0
    while a < seconds - 1e-6:
        b = min(a + every, seconds)
        periods.append((a, b))
        a = b
    # Each window is the last ``ws`` s of its period (minus 1 s: the recorder connects first), so
    # the first one starts well after the outputs opened and the last one ends with the run.
    windows = [(max(a, b - ws - 1.0), b - 1.0) for a, b in periods]
    return {"seconds": seconds, "warmup_s": warmup, "sample_every_s": sample_every or min(10.0, max(1.0, seconds / 120)),
            "window_every_s": every, "window_seconds": ws, "periods": periods, "windows": windows,
            "progress_every_s": min(60.0, max(10.0, seconds / 12))}


# ------------------------------------------------------------------------------ A/V windows
class WindowAnalyser:
    """Measures the recorded windows in a background thread at low priority, then removes them."""

    def __init__(self, markers: list[float], loop_s: float):
        self.markers, self.loop_s = markers, loop_s
        self.results: dict[int, dict] = {}
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="av-windows", daemon=True)
        self._thread.start()

    def submit(self, k: int, path: Path, info: dict) -> None:
        self._q.put((k, path, info))

    def _run(self) -> None:
        try:  # only this thread: the services and the sampler keep their share of the 2 cores
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        while True:
            item = self._q.get()
            if item is None:
                return
            k, path, info = item
            res = dict(info)
            if path.exists() and path.stat().st_size > 0:
                res.update(av_check(path, self.markers, loop_s=self.loop_s))
                res["bytes"] = path.stat().st_size
            else:
                res["error"] = "empty recording"
            offs = res.get("offsets_ms") or []
            res["median_ms"] = float(np.median(offs)) if offs else None
            self.results[k] = res
            for p in (path, Path(str(path) + ".log")):
                if res.get("error") is None or p == path:
                    p.unlink(missing_ok=True)  # a failed window keeps its ffmpeg log
            log(f"A/V window {k}: {len(offs)} markers of {res.get('expected')}, offsets {offs} ms")

    def finish(self, timeout: float = 120.0) -> dict[int, dict]:
        self._q.put(None)
        self._thread.join(timeout)
        return self.results


# ------------------------------------------------------------------------------ one run
def read_counters(stack, names: list[str]) -> dict:
    """Cumulative counters of every stream and the round-trip buckets, now."""
    per = {}
    for n in names:
        status, snap = stack.media.api("GET", f"/v1/streams/{n}")
        if status == 200 and isinstance(snap, dict):
            per[n] = fallback_stats(snap)
    status, text = http_json(stack.media.url + "/metrics")
    return {"t": time.monotonic(), "streams": per,
            "buckets": roundtrip_buckets(text if status == 200 and isinstance(text, str) else "")}


def _sum_counts(c: dict) -> tuple[int, dict[str, int]]:
    sent, reasons = 0, {}
    for s in c["streams"].values():
        sent += s["fragments_sent"]
        for r, v in s["fallbacks"].items():
            reasons[r] = reasons.get(r, 0) + v
    return sent, reasons


def period_counts(c0: dict, c1: dict) -> dict:
    """Fragments, fallbacks (by reason), share and round-trip quantiles between two readings."""
    s0, r0 = _sum_counts(c0)
    s1, r1 = _sum_counts(c1)
    reasons = {r: v - r0.get(r, 0) for r, v in r1.items() if v - r0.get(r, 0)}
    fbs = sum(reasons.values())
    sent = s1 - s0
    unsent = reasons.get("sts_unavailable", 0)
    buckets = {b: v - c0["buckets"].get(b, 0.0) for b, v in c1["buckets"].items()}
    return {"fragments_sent": sent, "fallbacks_total": fbs, "fallbacks": reasons,
            "fallback_share": fbs / (sent + unsent) if sent + unsent else None,
            "roundtrip": bucket_quantiles(buckets, (50, 95))}


def run(fx, args, sch: dict, workdir: Path) -> dict:
    names = [f"s{i}" for i in range(args.streams)]
    res: dict = {"streams": args.streams, "delay_requested_s": args.delay, "workdir": str(workdir),
                 "publisher_restarts": 0, "interrupted": False}
    stack = LocalStack(workdir=workdir / "stack")
    sampler = None
    pubs: dict[str, object] = {}
    rec = None
    analyser = WindowAnalyser(fx.markers, fx.duration)
    readings: list[dict] = []
    series: dict[str, Series] = {}
    windows = sch["windows"]
    t0 = time.monotonic()
    try:
        log(f"starting nginx-rtmp + sts-service + media-service in {workdir} ...")
        stack.start()
        if args.delay is not None:
            error = create_streams(stack, names, args.delay)
            if error:
                res["error"] = error
                log(error)
                return res
        sampler = ProcSampler(stack_targets(stack), interval=sch["sample_every_s"]).start()
        log(f"publishing {len(names)} x {fx.duration:g} s looped, for {sch['seconds']:g} s")
        t0 = time.monotonic()
        for n in names:
            pubs[n] = analysis.publish(fx.path, stack.url(f"{n}/in"), loop=True,
                                       log_path=workdir / f"{n}-publish.log")
        res["publish_spread_s"] = round(time.monotonic() - t0, 3)
        readings.append(read_counters(stack, names))
        next_period, next_window, next_progress = 0, 0, sch["progress_every_s"]
        rec_k = rec_path = None
        try:
            while True:
                el = time.monotonic() - t0
                if rec is None and next_window < len(windows) and el >= windows[next_window][0]:
                    rec_k, rec_path = next_window, workdir / f"window-{next_window:03d}.flv"
                    rec = analysis.record_stream(stack.url(f"{names[0]}/out"), rec_path)
                    rec_started = el
                    next_window += 1
                if rec is not None and el >= windows[rec_k][1]:
                    analysis.stop_process(rec)
                    analyser.submit(rec_k, rec_path, {"t_start_s": round(rec_started, 1),
                                                      "t_end_s": round(time.monotonic() - t0, 1)})
                    rec = None
                if next_period < len(sch["periods"]) - 1 and el >= sch["periods"][next_period][1]:
                    readings.append(read_counters(stack, names))  # the last one: when the run ends
                    next_period += 1
                if el >= next_progress:
                    next_progress += sch["progress_every_s"]
                    progress(el, sch["seconds"], sampler, read_counters(stack, names), analyser.results)
                for n, p in pubs.items():
                    if p.poll() is not None:
                        log(f"publisher {n} exited with {p.returncode}: re-publishing")
                        res["publisher_restarts"] += 1
                        pubs[n] = analysis.publish(fx.path, stack.url(f"{n}/in"), loop=True,
                                                   log_path=workdir / f"{n}-publish-{res['publisher_restarts']}.log")
                if el >= sch["seconds"] and rec is None:
                    break
                time.sleep(0.25)
        except KeyboardInterrupt:
            log("interrupted: ending the run early, reporting what was measured")
            res["interrupted"] = True
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        sampler.stop()
        series = sampler.snapshot()
        if rec is not None:
            quietly(analysis.stop_process, rec)
            rec = None
            if rec_path is not None:
                rec_path.unlink(missing_ok=True)
        res["input_rate"] = {}
        last = read_counters(stack, names)  # the end of the last period: the publishers still run
        readings.append(last)
        for n, s in last["streams"].items():
            vin = s.get("video_packets_in")
            res["input_rate"][n] = vin / fx.fps / res["elapsed_s"] if vin and res["elapsed_s"] else None
        for p in pubs.values():
            analysis.stop_process(p)
        pubs.clear()
        snaps = wait_played_out(stack, names, timeout=(args.delay or 10) + 30)
        res["final"] = {n: fallback_stats(s) for n, s in snaps.items()}
        res["playout"] = period_counts(last, read_counters(stack, names))  # what the stop left in flight
        res["playout"]["cumulative"] = {n: {k: v for k, v in st.items() if k in ("fragments_sent", "fallbacks")}
                                        for n, st in res["final"].items()}
        status, text = http_json(stack.media.url + "/metrics")
        res["roundtrip_incl_playout"] = roundtrip_quantiles(text if status == 200 and isinstance(text, str) else "")
        status, text = http_json(stack.sts.url + "/metrics")
        res["sts"] = sts_accounting(text if status == 200 and isinstance(text, str) else "")
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        log(f"FAILED: {res['error'][:300]}")
        res["media_log"] = stack.media.logs(30)
    finally:
        for p in pubs.values():
            quietly(analysis.stop_process, p)
        if rec is not None:
            quietly(analysis.stop_process, rec)
        if sampler is not None:
            sampler.stop()
            series = series or sampler.snapshot()
        stack.stop()
    res["av_windows"] = [analyser.finish().get(k, {"error": "not recorded"}) for k in range(len(windows))]
    res["periods"] = []
    for i in range(len(readings) - 1):
        a, b = sch["periods"][i] if i < len(sch["periods"]) else (readings[i]["t"] - t0, readings[i + 1]["t"] - t0)
        b = min(b, res.get("elapsed_s", b))  # an interrupted run's last period ends early
        row = {"t_start_s": a, "t_end_s": b, **period_counts(readings[i], readings[i + 1]), "cpu": {}, "rss_mb": {}}
        for name in SERVICES:
            s = series.get(name)
            idx = [j for j, t in enumerate(s.t) if a <= t - t0 < b] if s else []
            row["cpu"][name] = float(np.mean([s.cpu_tree[j] for j in idx])) if idx else None
            row["rss_mb"][name] = float(np.median([s.rss_main_mb[j] for j in idx])) if idx else None
        res["periods"].append(row)
    res["resources"] = {name: resource_report(series[name], t0, sch, res.get("elapsed_s", sch["seconds"]))
                        for name in SERVICES if name in series}
    meds = [(w["t_start_s"], w["median_ms"]) for w in res["av_windows"] if w.get("median_ms") is not None]
    all_offs = [abs(o) for w in res["av_windows"] for o in (w.get("offsets_ms") or [])]
    res["av"] = {"windows_measured": len(meds), "windows": len(windows),
                 "markers_matched": sum(w.get("matched", 0) for w in res["av_windows"]),
                 "markers_expected": sum(w.get("expected") or 0 for w in res["av_windows"]),
                 "max_abs_ms": max(all_offs) if all_offs else None,
                 "drift_range_ms": (max(m for _, m in meds) - min(m for _, m in meds)) if meds else None,
                 "drift_last_first_ms": (meds[-1][1] - meds[0][1]) if meds else None}
    if len(readings) > 1:  # the run until the publishers stop (the play-out tail is reported apart)
        whole = period_counts(readings[0], readings[-1])
        res.update({k: whole[k] for k in ("fragments_sent", "fallbacks", "fallbacks_total", "fallback_share")})
        res["roundtrip_run"] = bucket_quantiles(
            {b: v - readings[0]["buckets"].get(b, 0.0) for b, v in readings[-1]["buckets"].items()})
    res["output_delay_s"] = next((s.get("output_delay_s") for s in res.get("final", {}).values()), None)
    return res


def progress(el: float, total: float, sampler: ProcSampler, reading: dict | None, av: dict) -> None:
    snap = sampler.snapshot()
    parts = [f"t={el:6.0f}/{total:g}s"]
    for name in SERVICES:
        s = snap.get(name)
        if s and s.t:
            parts.append(f"{name} RSS {s.rss_main_mb[-1]:.0f} MB PSS {s.pss_tree_mb[-1]:.0f} MB "
                         f"fds {fmt(s.fds[-1], 'd')} thr {s.threads[-1]} ch {s.children[-1]}")
    if reading:
        sent, reasons = _sum_counts(reading)
        parts.append(f"sent {sent} fallbacks {sum(reasons.values())}")
    last = av.get(max(av)) if av else None
    if last:
        parts.append(f"A/V last window {fmt(last.get('median_ms'), '.2f')} ms")
    log(", ".join(parts))


def resource_report(s: Series, t0: float, sch: dict, elapsed: float) -> dict:
    """Growth of RSS/PSS after warm-up and the fd/thread/child counts over the run."""
    post = [j for j, t in enumerate(s.t) if sch["warmup_s"] <= t - t0 <= elapsed]
    out: dict = {"samples": len(s.t), "post_warmup_samples": len(post),
                 "cpu_avg": float(np.mean(s.cpu_tree)) if s.cpu_tree else None,
                 "cpu_main_avg": float(np.mean(s.cpu_main)) if s.cpu_main else None}
    for key in ("rss_main_mb", "pss_tree_mb"):
        vals = getattr(s, key)
        m: dict = {"max": max(vals) if vals else None}
        if len(post) >= 4:
            first = post[: max(3, len(post) // 10)]
            lastq = post[-max(1, len(post) // 4):]
            base = float(np.median([vals[j] for j in first]))
            end = float(np.median([vals[j] for j in lastq]))
            ts = np.array([s.t[j] - t0 for j in post])
            slope = float(np.polyfit(ts, [vals[j] for j in post], 1)[0]) * 3600 if np.ptp(ts) > 0 else None
            m.update(after_warmup=base, last_quartile=end, growth_pct=(end - base) / base * 100 if base else None,
                     slope_mb_per_h=slope)
        out[key] = m
    for key in ("fds", "threads", "children"):
        vals = [v for v in getattr(s, key) if v is not None]
        post_vals = [getattr(s, key)[j] for j in post if getattr(s, key)[j] is not None]
        out[key] = {"min": min(vals) if vals else None, "max": max(vals) if vals else None,
                    "after_warmup": post_vals[0] if post_vals else None, "end": post_vals[-1] if post_vals else None,
                    "post_warmup_min": min(post_vals) if post_vals else None,
                    "post_warmup_max": max(post_vals) if post_vals else None}
    out["series"] = {"t_s": [round(t - t0, 1) for t in s.t], "rss_main_mb": [round(v, 1) for v in s.rss_main_mb],
                     "pss_tree_mb": [round(v, 1) for v in s.pss_tree_mb], "fds": s.fds, "threads": s.threads,
                     "children": s.children, "cpu_tree": [round(v, 1) for v in s.cpu_tree]}
    return out


# ------------------------------------------------------------------------------ report
def _pct(x):
    return None if x is None else x * 100


def print_report(out: dict) -> None:
    r, sch = out["run"], out["schedule"]
    label = {"media": "media-service", "sts": "sts-service"}
    print(f"\nsoak benchmark, {out['cpus']} cores: {r['streams']} streams of the dense fixture "
          f"({out['fixture']['duration']:g} s, {out['fixture']['width']}x{out['fixture']['height']}, looped), "
          f"started in the same second; {r.get('elapsed_s', '-')} s of {sch['seconds']:g}"
          + (" (interrupted)" if r.get("interrupted") else "")
          + f"; D = {'the service default' if r['delay_requested_s'] is None else format(r['delay_requested_s'], 'g') + ' s'}"
          f" (effective {fmt(r.get('output_delay_s'), 'g')} s)")
    print(f"warm-up {sch['warmup_s']:g} s; samples every {sch['sample_every_s']:g} s; A/V windows of "
          f"{sch['window_seconds']:g} s every {sch['window_every_s']:g} s on s0's output; publisher restarts "
          f"{r['publisher_restarts']}; input rate {', '.join(fmt(v, '.3f') for v in r.get('input_rate', {}).values()) or '-'}"
          + (f"\nerror: {r['error'][:300]}" if r.get("error") else ""))
    res = r.get("resources", {})
    print(f"\n{'memory (MB)':<22}{'after warm-up':>14}{'last quarter':>13}{'growth':>9}{'slope/h':>9}{'max':>8}"
          f"   goal < {GROWTH_GOAL_PCT:g} %")
    for name in SERVICES:
        for key, what in (("rss_main_mb", "RSS"), ("pss_tree_mb", "PSS tree")):
            m = res.get(name, {}).get(key, {})
            print(f"{label[name] + ' ' + what:<22}{fmt(m.get('after_warmup'), '.1f'):>14}"
                  f"{fmt(m.get('last_quartile'), '.1f'):>13}{fmt(m.get('growth_pct'), '+.2f') + '%':>9}"
                  f"{fmt(m.get('slope_mb_per_h'), '+.1f'):>9}{fmt(m.get('max'), '.1f'):>8}")
    print(f"\n{'counts':<30}{'min':>6}{'max':>6}{'after warm-up':>15}{'end':>6}{'end - warm-up':>15}")
    for name in SERVICES:
        for key, what in (("fds", "open fds"), ("threads", "threads"), ("children", "child processes")):
            c = res.get(name, {}).get(key, {})
            d = c["end"] - c["after_warmup"] if c.get("end") is not None and c.get("after_warmup") is not None else None
            print(f"{label[name] + ' ' + what:<30}{fmt(c.get('min'), 'd'):>6}{fmt(c.get('max'), 'd'):>6}"
                  f"{fmt(c.get('after_warmup'), 'd'):>15}{fmt(c.get('end'), 'd'):>6}{fmt(d, '+d'):>15}")
    print(f"\n{'period (s)':>13}{'media CPU':>10}{'sts CPU':>8}{'media MB':>9}{'sts MB':>8}{'sent':>6}{'fallbk':>7}"
          f"{'share':>7}{'RTT p50/p95 ms':>16}  {'A/V window (s)':>15}{'markers':>8}{'A/V median':>11}{'min..max ms':>17}")
    for i, p in enumerate(r.get("periods", [])):
        w = r["av_windows"][i] if i < len(r.get("av_windows", [])) else {}
        offs = w.get("offsets_ms") or []
        span = f"{w['t_start_s']:.0f}-{w['t_end_s']:.0f}" if "t_start_s" in w else "-"
        rt = p["roundtrip"]
        print(f"{p['t_start_s']:>6.0f}-{p['t_end_s']:<6.0f}{fmt(p['cpu'].get('media'), '.0f'):>10}"
              f"{fmt(p['cpu'].get('sts'), '.0f'):>8}{fmt(p['rss_mb'].get('media'), '.0f'):>9}"
              f"{fmt(p['rss_mb'].get('sts'), '.0f'):>8}{p['fragments_sent']:>6}{p['fallbacks_total']:>7}"
              f"{fmt(_pct(p['fallback_share']), '.1f') + '%':>7}"
              f"{fmt(rt.get('p50_ms'), '.0f') + '/' + fmt(rt.get('p95_ms'), '.0f'):>16}  {span:>15}"
              f"{str(w.get('matched', '-')) + '/' + str(w.get('expected', '-')):>8}{fmt(w.get('median_ms'), '.2f'):>11}"
              f"{(fmt(min(offs), '.2f') + '..' + fmt(max(offs), '.2f')) if offs else '-':>17}"
              + (f"  {w['error'][:80]}" if w.get("error") else ""))
    av, rt = r.get("av", {}), r.get("roundtrip_run", {})
    print(f"\nA/V drift over {av.get('windows_measured', 0)}/{av.get('windows', 0)} windows: max - min "
          f"{fmt(av.get('drift_range_ms'), '.2f')} ms, last - first {fmt(av.get('drift_last_first_ms'), '+.2f')} ms "
          f"(goal <= {DRIFT_GOAL_MS:g} ms); largest |offset| {fmt(av.get('max_abs_ms'), '.2f')} ms; markers "
          f"{av.get('markers_matched', 0)}/{av.get('markers_expected', 0)}")
    po = r.get("playout") or {}
    print(f"run (until the publishers stop): fragments sent {r.get('fragments_sent', 0)}, fallbacks {r.get('fallbacks_total', 0)} "
          f"({fmt(_pct(r.get('fallback_share')), '.1f')} %) {r.get('fallbacks') or ''}; round trip p50/p95/p99 "
          + "/".join(fmt(rt.get(q), ".0f") for q in ("p50_ms", "p95_ms", "p99_ms")) + f" ms (n = {rt.get('count', 0)}); "
          f"CPU avg media {fmt(res.get('media', {}).get('cpu_avg'), '.0f')} %, sts {fmt(res.get('sts', {}).get('cpu_avg'), '.0f')} % of one core")
    if po:
        print(f"play-out after the publishers stopped: fragments sent {po['fragments_sent']}, fallbacks "
              f"{po['fallbacks_total']} {po['fallbacks'] or ''}")
    st = r.get("sts") or {}
    if st:
        print(f"sts-service: work on expired fragments {fmt(st.get('work_on_expired'), '.0f')}, deadline_exceeded by "
              f"stage {st.get('deadline_exceeded_by_stage') or '-'}, ASR calls {st.get('asr_calls_by_decoding') or '-'}, "
              f"mean batch {fmt(st.get('asr_mean_batch'), '.2f')}, full-window re-runs "
              f"{st.get('asr_reruns_by_guard') or 0}")
    print("growth = (median of the last quarter of the post-warm-up samples - median of their first tenth) / the "
          "latter; RSS = main process, PSS = process tree; CPU = % of one core (tree), period average; share = "
          "fallbacks / speech fragments in the period; RTT from the difference of two scrapes of the round-trip "
          "histogram; A/V offsets = audio - video at the markers of the window's recording (positive: audio late)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3600.0, help="length of the run (default 3600)")
    ap.add_argument("--streams", type=int, default=2, help="streams started in the same second (default 2)")
    ap.add_argument("--delay", type=float, default=None, help="output delay D in s (default: the service default)")
    ap.add_argument("--window-every", type=float, default=None,
                    help="period / A/V window spacing in s (default: min(300, seconds / 6))")
    ap.add_argument("--window-seconds", type=float, default=None,
                    help="A/V recording window in s (default: min(20, 2/3 of a period))")
    ap.add_argument("--sample-every", type=float, default=None,
                    help="process sampling interval in s (default: min(10, max(1, seconds / 120)))")
    ap.add_argument("--fixture-seconds", type=float, default=60.0, help="dense fixture length, looped (default 60)")
    ap.add_argument("--size", default="1280x720", help="fixture video size (default 1280x720)")
    ap.add_argument("--workdir", default=None, help="where logs and windows go (default: a new temp dir)")
    args = ap.parse_args()
    if args.seconds < 30:
        ap.error("--seconds must be at least 30")
    width, height = (int(v) for v in args.size.lower().split("x"))
    sch = schedule(args.seconds, args.window_every, args.window_seconds, args.sample_every)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work dir (service logs, A/V windows while measured): {workdir}")
    fx = cached_dense_media(seconds=args.fixture_seconds, width=width, height=height)
    out: dict = {"bench": "soak", "cpus": os.cpu_count(), "schedule": sch,
                 "fixture": {"path": fx.path, "duration": fx.duration, "markers": len(fx.markers),
                             "width": fx.width, "height": fx.height, "fps": fx.fps,
                             "speech_share_measured": getattr(fx, "speech_share_measured", None)}}
    out["run"] = run(fx, args, sch, workdir)
    print_report(out)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
