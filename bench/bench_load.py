"""Load benchmark: k streams of dense speech started in the same second, at D = 3.5 s and the default D.

Why: a fixture of long sentences with long gaps, streams started one after the other, showed
0-4 % fallbacks while four streams of real, dense speech started together lost 45 of 48 dubs
(issue 7). This benchmark reproduces the hard case and reports what a viewer would get.

For each fixture in ``--fixture`` (``dense``: :mod:`livedub_testkit.dense`, >= 75 % speech,
0.5-1.5 s sentence gaps, 0.15-0.4 s pauses inside sentences, five voices/speeds; ``pauses``: the
same read with 0.4-1.2 s pauses inside sentences; ``demo``: the old lenient demo fixture), each D in ``--delays`` (seconds, or ``default`` = the service default) and
each k in ``--streams``:

* a fresh LocalStack (nginx-rtmp with publish hooks, sts-service, media-service, all defaults);
* for a numeric D, k streams created with ``POST /v1/streams`` (``output_delay_s`` = D, reading
  ``live/<name>/in``, writing ``live/<name>/out``) before anything is published (the worker waits
  for its input; the publish hook then finds the stream running); for ``default`` the publish hook
  starts them (nothing posted);
* two viewers (ffmpeg, recording + MD5 of every video packet) on stream 0's input and output, a
  recorder on every other output, an events long-poll (``GET /v1/events``), CPU/RSS sampling of
  each service's process tree (``_common.ProcSampler``);
* k ``ffmpeg -re`` publishers started back to back (the same second); when they end, the streams
  play out (outputs idle) and the stack is stopped; the recordings are analysed afterwards.

Reported per (fixture, D, k): fallback share (fallbacks / speech fragments, fragments never
sent included) overall and by reason; fragment round trip p50/p95/p99 over all streams (the
media-service's ``media_fragment_roundtrip_seconds`` histogram, interpolated within its buckets;
results that never came back are fallbacks, not round trips) and each stream's exact p95 from its
snapshot; CPU (% of one core, avg/max) and memory (max RSS of the main process / PSS of the tree)
of media-service, sts-service and nginx; the largest |A/V offset| at the markers of every recording
(``analysis.av_offsets``) with the markers found; the glass-to-glass added delay of stream 0
(same video packet on the input and the output viewer); the largest measured output delay; and
what cutting costs a viewer (:mod:`_scoring`, the ``dubbed`` events' transcripts and Spanish dubs
against the fixture's reference):

* WER of the dubbed spans: the transcripts of each stream's dubbed fragments, in order, against the
  reference words from its first fragment to its last, less those of its fallbacks (the stream's
  timeline is placed on fixture time by matching its fragment starts to clause starts; a word is in
  a fragment when its estimated midpoint is); a word no dubbed fragment covers (a no-speech result,
  speech never sent) is *lost*, a deletion, and counted;
* next to it the ASR-alone WER over the same words. The fair "no cutting" baseline is each whole
  sentence of the published audio (padded by 150 ms like a fragment) through the sts-service's own
  ASR as its defaults build it, without a prompt, once per fixture in this process before any stack
  starts; the cost of cutting is the difference in points;
* chrF (sacrebleu chrF2) of the dubs against the hand-written reference translations kept with the
  fixture's sentences (``livedub_testkit.dense.REFERENCE_TRANSLATIONS``), on the sentences dubbed
  whole (a fallback leaves its sentence out), next to the whole-sentence pipeline (the ASR-alone
  transcripts through the service's translator) and the translator alone (the reference English).

Run: .venv/bin/python bench/bench_load.py [--fixture dense,demo] [--delays 3.5,default]
[--streams 1,2,4,8] [--seconds 60] [--quick] [--no-baseline]. Issue 25's matrix: ``--fixture dense
--delays 2,2.5,3.5 --streams 1,4,8``. ``--quick``: k = 1, 20 s, dense, D = 3.5 s (smoke test).
Prints one table per (fixture, D), a quality table with a row per (fixture, D, k) and the machine
they ran on, then one JSON line. Progress on stderr. Never asserts.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import (
    ProcSampler,
    Viewer,
    added_delay,
    av_check,
    create_streams,
    fallback_stats,
    fmt,
    log,
    machine_info,
    pct,
    quietly,
    roundtrip_quantiles,
    stack_targets,
    sts_accounting,
    wait_played_out,
)
from _scoring import FixtureScoring, score_run
from livedub_testkit import analysis
from livedub_testkit.dense import LONG_PAUSE_RANGE, cached_dense_media
from livedub_testkit.fixtures import cached_demo_media
from livedub_testkit.services import http_json
from livedub_testkit.stack import LocalStack

REFERENCE_LANG = "es"  # the streams' target: the media-service's default, which create_streams keeps
# What each --fixture name publishes: ``pauses`` is the dense read by a speaker who pauses for
# effect inside sentences (0.4-1.2 s), cut by the segmenter into pieces of a clause or a few words.
FIXTURES = {
    "dense": cached_dense_media,
    "pauses": functools.partial(cached_dense_media, pause_range=LONG_PAUSE_RANGE),
    "demo": cached_demo_media,
}
STEADY_AFTER_S = 3.0  # measured output delay: ignore each output's first seconds (opening the relay)


# ------------------------------------------------------------------------------ events
class EventLog:
    """Collects every media-service event (``GET /v1/events`` long poll) in a background thread."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url, self.token = base_url, token
        self.events: list[dict] = []
        self.since = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)

    def start(self) -> EventLog:
        self._thread.start()
        return self

    def _poll(self, wait: float) -> None:
        status, body = http_json(f"{self.base_url}/v1/events?since={self.since}&wait={wait}", token=self.token,
                                 timeout=wait + 5)
        if status == 200 and isinstance(body, dict):
            for ev in body.get("events", []):
                self.events.append(ev)
                self.since = max(self.since, int(ev["seq"]))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll(2.0)
            except Exception as exc:  # the service may be gone at the end of a run
                if self._stop.wait(0.5):
                    break
                log(f"events: {exc}")

    def stop(self) -> list[dict]:
        """Stop polling after a last non-blocking poll; the events collected."""
        self._stop.set()
        self._thread.join(10)
        try:
            self._poll(0.0)
        except Exception:
            pass
        return self.events

    def of(self, stream: str, kind: str) -> list[dict]:
        return [e["data"] for e in self.events if e.get("stream") == stream and e.get("type") == kind]


# ------------------------------------------------------------------------------ one run
def run_one(fx, scoring: FixtureScoring, fixture_name: str, delay: float | None, k: int, workdir: Path) -> dict:
    """One (fixture, D, k) on a fresh stack; see the module docstring."""
    tag = f"{fixture_name} D={'default' if delay is None else f'{delay:g}'} k={k}"
    run_dir = workdir / f"{fixture_name}-D{'default' if delay is None else f'{delay:g}'}-k{k}"
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [f"s{i}" for i in range(k)]
    res: dict = {"fixture": fixture_name, "delay_requested_s": delay, "k": k, "workdir": str(run_dir)}
    stack = LocalStack(workdir=run_dir / "stack")
    sampler = events = v_in = v_out = None
    recs: dict[str, subprocess.Popen] = {}
    pubs: dict[str, subprocess.Popen] = {}
    snaps: dict[str, dict] = {}
    recordings: dict[str, Path] = {}
    series: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    input_lag: dict[str, float] = {n: 0.0 for n in names}
    metrics_text = ""
    t0 = time.monotonic()

    def track_delay(name: str, snap: dict) -> None:
        if snap["counters"].get("audio_frames_out", 0) > 0:
            series[name].append((time.monotonic() - t0, snap.get("output_delay_measured_s") or 0.0))
        input_lag[name] = max(input_lag[name], (snap.get("input") or {}).get("lag_s") or 0.0)

    try:
        log(f"[{tag}] starting nginx-rtmp + sts-service + media-service ...")
        stack.start()
        if delay is not None:
            error = create_streams(stack, names, delay)
            if error:
                res["error"] = error
                log(f"[{tag}] {error}")
                return res
        events = EventLog(stack.media.url, stack.media.api_token).start()
        v_in = Viewer(stack.url(f"{names[0]}/in"), run_dir / f"{names[0]}-in.flv")
        v_out = Viewer(stack.url(f"{names[0]}/out"), run_dir / f"{names[0]}-out.flv")
        recordings[names[0]] = v_out.record_path
        for n in names[1:]:
            recordings[n] = run_dir / f"{n}-out.flv"
            recs[n] = analysis.record_stream(stack.url(f"{n}/out"), recordings[n])
        time.sleep(1.0)  # players connected and waiting (idle_streams)
        sampler = ProcSampler(stack_targets(stack)).start()
        log(f"[{tag}] publishing {k} x {fx.duration:g} s in the same second")
        t0 = time.monotonic()
        for n in names:
            pubs[n] = analysis.publish(fx.path, stack.url(f"{n}/in"), log_path=run_dir / f"{n}-publish.log")
        res["publish_spread_s"] = round(time.monotonic() - t0, 3)
        next_log = t0 + 10
        while any(p.poll() is None for p in pubs.values()) and time.monotonic() - t0 < fx.duration + 60:
            time.sleep(1.0)
            for n in names:
                status, snap = stack.media.api("GET", f"/v1/streams/{n}")
                if status == 200:
                    track_delay(n, snap)
                    snaps[n] = snap
            if time.monotonic() >= next_log:
                next_log += 10
                c = [s["counters"] for s in snaps.values()]
                log(f"[{tag}] t={time.monotonic() - t0:5.1f}s fragments sent {sum(x['fragments_sent'] for x in c)}, "
                    f"fallbacks {sum(sum(x['fallbacks'].values()) for x in c)}, "
                    f"input lag up to {max(input_lag.values(), default=0.0):.2f} s")
        for p in pubs.values():
            analysis.stop_process(p)
        pubs.clear()
        snaps = wait_played_out(stack, names, timeout=(delay or 10) + 30, on_snapshot=track_delay)
        res["resources"] = sampler.stop()
        sampler = None
        status, text = http_json(stack.media.url + "/metrics")
        metrics_text = text if status == 200 and isinstance(text, str) else ""
        status, text = http_json(stack.sts.url + "/metrics")
        res["sts"] = sts_accounting(text if status == 200 and isinstance(text, str) else "")
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        log(f"[{tag}] FAILED: {res['error'][:300]}")
        res["media_log"] = stack.media.logs(30)
    finally:  # every process stopped, each attempt independent of the others
        for p in pubs.values():
            quietly(analysis.stop_process, p)
        if sampler is not None:
            res.setdefault("resources", sampler.stop())
        time.sleep(1.0)  # the last packets reach the players
        for viewer in (v_in, v_out):
            if viewer is not None:
                quietly(viewer.stop)
        for r in recs.values():
            quietly(analysis.stop_process, r)
        if events is not None:
            quietly(events.stop)
        stack.stop()
    # ---- analysis, with every process stopped
    per = {n: fallback_stats(s) for n, s in snaps.items()}
    reasons: dict[str, int] = {}
    for p in per.values():
        for r, c in p["fallbacks"].items():
            reasons[r] = reasons.get(r, 0) + c
    sent = sum(p["fragments_sent"] for p in per.values())
    fbs = sum(reasons.values())
    unsent = reasons.get("sts_unavailable", 0)
    res.update({
        "streams_reported": len(per),
        "output_delay_s": next((p["output_delay_s"] for p in per.values()), None),
        "fragments_sent": sent, "fallbacks_total": fbs, "fallbacks": reasons,
        "fallback_share": fbs / (sent + unsent) if sent + unsent else None,
        "roundtrip": roundtrip_quantiles(metrics_text),
        "rtt_p95_ms_per_stream": {n: p["rtt_p95_ms"] for n, p in per.items()},
        "max_output_delay_measured_s": max((d for v in series.values() for t, d in v if t - v[0][0] >= STEADY_AFTER_S),
                                           default=None),
        "max_input_lag_s": max(input_lag.values(), default=None),
    })
    if events is not None:
        scores = score_run({n: (events.of(n, "dubbed"), events.of(n, "fallback")) for n in names},
                           scoring.ref, scoring.clause_starts, scoring.base)
        res.update({k: v for k, v in scores.items() if k != "per_stream"})
        res["wer_per_stream"] = scores["per_stream"]
        late = [d["late_start_ms"] for n in names for d in events.of(n, "dubbed") if d.get("late_start_ms")]
        res["late_starts"] = {"count": len(late), "p50_ms": pct(late, 50) if late else None,
                              "max_ms": max(late, default=None)}
        res["events"] = len(events.events)
        (run_dir / "events.json").write_text(json.dumps(events.events, indent=1))
    av = {n: av_check(p, fx.markers) for n, p in recordings.items() if p.exists()}
    offs = [a["max_abs_ms"] for a in av.values() if a.get("max_abs_ms") is not None]
    res["av"] = {"max_abs_ms": max(offs) if offs else None, "matched": sum(a.get("matched", 0) for a in av.values()),
                 "flashes": sum(a.get("flashes", 0) for a in av.values()),
                 "expected": sum(a.get("expected") or 0 for a in av.values()), "recordings": len(av),
                 "per_stream": av}
    if v_in is not None and v_out is not None:
        res["added_delay"] = added_delay(v_in, v_out)
    log(f"[{tag}] fallbacks {fbs}/{sent} {reasons or ''} RTT p95 {fmt(res['roundtrip'].get('p95_ms'), '.0f')} ms, "
        f"WER {fmt(_pct(res.get('wer')), '.1f')} % (ASR alone {fmt(_pct(res.get('asr_alone_wer')), '.1f')} %), "
        f"chrF {fmt((res.get('chrf') or {}).get('dubbed'), '.1f')}, A/V max {fmt(res['av']['max_abs_ms'], '.2f')} ms, "
        f"added delay {fmt(res.get('added_delay', {}).get('median_s'), '.3f')} s")
    return res


def _pct(x):
    return None if x is None else x * 100


# ------------------------------------------------------------------------------ report
def _cpu(r: dict, name: str) -> str:
    s = r.get("resources", {}).get(name, {})
    return f"{fmt(s.get('cpu_avg'), '.0f')}/{fmt(s.get('cpu_max'), '.0f')}"


def _mem(r: dict, name: str) -> str:
    s = r.get("resources", {}).get(name, {})
    return f"{fmt(s.get('rss_main_max_mb'), '.0f')}/{fmt(s.get('pss_max_mb'), '.0f')}"


def _wer_cell(r: dict) -> str:
    return (f"{fmt(_pct(r.get('wer')), '.1f')}/{fmt(_pct(r.get('asr_alone_wer')), '.1f')}% "
            f"({r.get('wer_ref_words', 0)})")


def print_quality(runs: list[dict]) -> None:
    """One row per (fixture, D, k): what cutting costs, next to the load numbers it comes with."""
    print("\nquality of the dubs (issue 25), all streams: WER in %, chrF (0-100); cost (points) = dubbed - whole "
          "sentences for WER, whole sentences - dubbed for chrF; words = reference words scored, lost = of them, "
          "not dubbed and not a fallback; MT only = the translator on the reference English; sentences = scored "
          "for chrF; added delay = glass to glass, stream 0, median; CPU = % of one core, average")
    print(f"{'fixture':<8}{'D':>8}{'k':>3}{'fallbk':>8}{'added delay':>13}{'CPU media/sts':>15}{'A/V max':>9}"
          f"{'WER dub':>9}{'alone':>7}{'cost':>6}{'words':>7}{'lost':>6}{'chrF dub':>10}{'whole':>7}{'cost':>6}{'MT only':>9}"
          f"{'sentences':>11}")
    for r in runs:
        d = "default" if r["delay_requested_s"] is None else f"{r['delay_requested_s']:g}"
        if "fragments_sent" not in r:
            print(f"{r['fixture']:<8}{d:>8}{r['k']:>3}  FAILED: {r.get('error', '?')[:120]}")
            continue
        c = r.get("chrf") or {}
        ad = r.get("added_delay") or {}
        cpu = f"{fmt(r.get('resources', {}).get('media', {}).get('cpu_avg'), '.0f')}/" \
              f"{fmt(r.get('resources', {}).get('sts', {}).get('cpu_avg'), '.0f')}"
        print(f"{r['fixture']:<8}{d:>8}{r['k']:>3}{fmt(_pct(r['fallback_share']), '.1f') + '%':>8}"
              f"{fmt(ad.get('median_s'), '.3f') + ' s':>13}{cpu:>15}{fmt(r['av']['max_abs_ms'], '.1f') + 'ms':>9}"
              f"{fmt(_pct(r.get('wer')), '.1f'):>9}{fmt(_pct(r.get('asr_alone_wer')), '.1f'):>7}"
              f"{fmt(r.get('wer_cost_points'), '+.1f'):>6}{r.get('wer_ref_words', 0):>7}{r.get('lost_words', 0):>6}"
              f"{fmt(c.get('dubbed'), '.1f'):>10}{fmt(c.get('whole'), '.1f'):>7}{fmt(c.get('cost_points'), '+.1f'):>6}"
              f"{fmt(c.get('mt_of_reference'), '.1f'):>9}{c.get('sentences', 0):>11}")


def print_report(out: dict) -> None:
    m = out.get("machine") or {}
    print(f"\nload benchmark on {m.get('cpu_model') or '?'} ({out['cpus']} cores, {fmt(m.get('mem_gb'), '.0f')} GB); "
          f"streams started in the same second; CPU = % of one core "
          f"(avg/max of the process tree); memory = MB max RSS of the main process / max PSS of the tree")
    for fx_name, fx in out["fixtures"].items():
        share = fx.get("speech_share_measured")
        print(f"fixture {fx_name}: {fx['duration']:g} s, {fx['clauses']} speech spans"
              + (f", speech {share * 100:.0f} % (Silero VAD)" if share else ""))
        sc = fx.get("scoring") or {}
        whole = sc.get("whole_sentences")
        if whole:
            print(f"  {sc['sentences']} sentences ({sc['sentences_with_reference_translation']} with a reference "
                  f"translation, {sc['lang']}), {sc['words']} words; whole sentences through {whole['asr']} + "
                  f"{whole['translator']}: WER {fmt(_pct(whole['wer']), '.1f')} %")
    groups: dict[tuple, list[dict]] = {}
    for r in out["runs"]:
        groups.setdefault((r["fixture"], r["delay_requested_s"]), []).append(r)
    for (fx_name, delay), runs in groups.items():
        eff = next((r.get("output_delay_s") for r in runs if r.get("output_delay_s") is not None), None)
        print(f"\n{fx_name} fixture, D = {'the service default' if delay is None else f'{delay:g} s'}"
              f" (effective {fmt(eff, 'g')} s)")
        print(f"{'k':>2}{'sent':>6}{'fallbk':>7}{'share':>7}  {'by reason':<28}{'RTT p50/p95/p99 ms (n)':>26}"
              f"{'media CPU':>10}{'sts CPU':>9}{'nginx':>7}{'media MB':>10}{'sts MB':>10}{'WER dub/alone (words)':>23}"
              f"{'A/V max':>9}{'markers':>9}{'added delay':>13}{'max D':>7}{'in lag':>8}")
        for r in runs:
            if "fragments_sent" not in r:
                print(f"{r['k']:>2}  FAILED: {r.get('error', '?')[:200]}")
                continue
            rt = r["roundtrip"]
            rtt = "/".join(fmt(rt.get(q), ".0f") for q in ("p50_ms", "p95_ms", "p99_ms")) + f" ({rt.get('count', 0)})"
            reasons = ",".join(f"{k}={v}" for k, v in sorted(r["fallbacks"].items())) or "-"
            ad = r.get("added_delay", {})
            av = r["av"]
            print(f"{r['k']:>2}{r['fragments_sent']:>6}{r['fallbacks_total']:>7}"
                  f"{fmt(_pct(r['fallback_share']), '.1f') + '%':>7}  {reasons:<28}"
                  f"{rtt:>26}"
                  f"{_cpu(r, 'media'):>10}{_cpu(r, 'sts'):>9}{_cpu(r, 'nginx'):>7}{_mem(r, 'media'):>10}{_mem(r, 'sts'):>10}"
                  f"{_wer_cell(r):>23}"
                  f"{fmt(av['max_abs_ms'], '.2f') + 'ms':>9}"
                  f"{str(av['matched']) + '/' + str(av['expected']):>9}"
                  f"{fmt(ad.get('median_s'), '.3f') + '/' + fmt(ad.get('p95_s'), '.3f'):>13}"
                  f"{fmt(r.get('max_output_delay_measured_s'), '.2f'):>7}"
                  f"{fmt(r.get('max_input_lag_s'), '.2f'):>8}"
                  + (f"  error: {r['error'][:120]}" if r.get("error") else ""))
            st = r.get("sts") or {}
            if st:
                print(f"{'':>2}  sts-service: work on expired fragments {fmt(st.get('work_on_expired'), '.0f')}, "
                      f"deadline_exceeded by stage {st.get('deadline_exceeded_by_stage') or '-'}, ASR calls "
                      f"{st.get('asr_calls_by_decoding') or '-'}, mean batch {fmt(st.get('asr_mean_batch'), '.2f')}, full-window re-runs "
                      f"{st.get('asr_reruns_by_guard') or 0}, mean ms per stage {st.get('stage_mean_ms') or '-'}")
            ls = r.get("late_starts")
            if ls:
                print(f"{'':>2}  late starts (dubbed, starting after their span's start; not fallbacks): {ls['count']}"
                      + (f", p50 {fmt(ls['p50_ms'], '.0f')} ms, max {fmt(ls['max_ms'], '.0f')} ms" if ls["count"] else ""))
    print_quality(out["runs"])
    print("\nshare = fallbacks / speech fragments; RTT from the round-trip histogram of all streams, n = results "
          "that came back (a timeout has none); WER dub/alone = of the dubbed transcripts / of the same ASR on whole "
          "sentences, both over the same reference words (each stream's, less its fallbacks'); A/V max = largest |offset| at the markers of all recordings, markers = "
          "found/expected (expected: the fixture's markers inside each recording); added delay = glass-to-glass median/p95 of stream 0 (s); max D = largest measured "
          "output delay after each output's first 3 s; in lag = largest input lag of any stream (how far its reading fell behind the live source, s)")


def _fixture_summary(fx) -> dict:
    return {"path": fx.path, "duration": fx.duration, "clauses": len(fx.speech_spans), "markers": len(fx.markers),
            "speech_share": getattr(fx, "speech_share", None),
            "speech_share_measured": getattr(fx, "speech_share_measured", None),
            "width": fx.width, "height": fx.height, "fps": fx.fps}


def _parse_delays(text: str) -> list[float | None]:
    out: list[float | None] = []
    for part in text.split(","):
        part = part.strip()
        if part:
            out.append(None if part == "default" else float(part))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", default=None, help="comma-separated: dense, pauses, demo (default: dense,demo)")
    ap.add_argument("--delays", default=None, help="comma-separated seconds or 'default' (default: 3.5,default)")
    ap.add_argument("--streams", default=None, help="comma-separated stream counts (default: 1,2,4,8)")
    ap.add_argument("--seconds", type=float, default=None, help="fixture length (default: 60)")
    ap.add_argument("--size", default="1280x720", help="fixture video size (default 1280x720)")
    ap.add_argument("--quick", action="store_true", help="smoke test: dense, D = 3.5 s, k = 1, 20 s")
    ap.add_argument("--workdir", default=None, help="where recordings and logs go (default: a new temp dir)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the whole-sentence baseline (no ASR-alone WER, no whole-sentence chrF)")
    args = ap.parse_args()
    fixtures = (args.fixture or ("dense" if args.quick else "dense,demo")).split(",")
    delays = _parse_delays(args.delays or ("3.5" if args.quick else "3.5,default"))
    streams = [int(s) for s in (args.streams or ("1" if args.quick else "1,2,4,8")).split(",") if s.strip()]
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    width, height = (int(v) for v in args.size.lower().split("x"))
    for f in fixtures:
        if f not in FIXTURES:
            ap.error(f"unknown fixture {f!r}: use {', '.join(FIXTURES)}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work dir (recordings, service logs): {workdir}")
    media = {}
    for f in fixtures:
        media[f] = FIXTURES[f](seconds=seconds, width=width, height=height)
    scoring = {}
    for f, fx in media.items():  # in this process, before any stack runs: it does not compete with them
        log(f"{f} fixture: {'reference' if args.no_baseline else 'reference and whole-sentence baseline'} ...")
        scoring[f] = FixtureScoring.of(fx, REFERENCE_LANG, baseline=not args.no_baseline)
    out: dict = {"bench": "load", "cpus": os.cpu_count(), "machine": machine_info(), "workdir": str(workdir),
                 "fixtures": {f: {**_fixture_summary(fx), "scoring": scoring[f].summary()} for f, fx in media.items()},
                 "runs": []}
    t_start = time.monotonic()
    for f in fixtures:
        for d in delays:
            for k in streams:
                out["runs"].append(run_one(media[f], scoring[f], f, d, k, workdir))
    out["seconds_total"] = round(time.monotonic() - t_start, 1)
    print_report(out)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
