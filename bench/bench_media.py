"""media-service under one 720p30 stream: fallback rate and fragment round trip vs output delay D.

For each D in ``--delays`` (default 4,6,8 s) a fresh LocalStack (nginx-rtmp with publish
hooks, the real sts-service, media-service ``--output-delay D``) is started on loopback and the
demo fixture (``cached_demo_media``: 1280x720 30 fps H.264 + AAC, English Piper speech over a
music bed, 60 s unless ``--seconds``) is published in real time (``ffmpeg -re -c copy``) to
``live/<name>/in``; the on_publish hook starts the worker, which publishes ``live/<name>/out``.
While it runs (publish + D + drain) the CPU% (100 % = one core) and RSS of the media-service and
sts-service process trees (each with its children: ffmpeg output relay; Apertium/espeak) are
sampled every 0.5 s from /proc. When the output has played out, GET /v1/streams/<name> gives
fragments sent/processed, fallbacks by reason and the fragment round trip p50/p95.

fallback rate = fallbacks / fragments_sent (a fallback = a speech segment whose dub did not make
its deadline and was replaced by the original audio). media-service requires
``--max-fragment-ms`` < D; for D <= 5 s it is lowered to (D - 1) s (shown in the table) and left
at its 5 s default otherwise.

Run: .venv/bin/python bench/bench_media.py [--delays 4,6,8] [--seconds 60]
Prints a table and one JSON line. Does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import ProcSampler, fallback_stats, fmt, log, stack_targets
from livedub_testkit import analysis
from livedub_testkit.fixtures import cached_demo_media
from livedub_testkit.stack import LocalStack

DEFAULT_MAX_FRAGMENT_MS = 5000.0


def run_delay(delay: float, media, seconds: float, workdir: Path) -> dict:
    max_frag = DEFAULT_MAX_FRAGMENT_MS if DEFAULT_MAX_FRAGMENT_MS / 1000.0 < delay else (delay - 1.0) * 1000.0
    media_args = () if max_frag == DEFAULT_MAX_FRAGMENT_MS else ("--max-fragment-ms", f"{max_frag:.0f}")
    name = f"bench-d{delay:g}".replace(".", "_")
    stack = LocalStack(workdir=workdir / name, output_delay_s=delay, media_args=media_args)
    sampler = None
    pub = None
    res: dict = {"delay_s": delay, "max_fragment_ms": max_frag, "name": name}
    try:
        log(f"D={delay:g}s: starting nginx-rtmp + sts-service + media-service ...")
        t0 = time.monotonic()
        stack.start()
        res["stack_startup_s"] = time.monotonic() - t0
        sampler = ProcSampler(stack_targets(stack)).start()
        log(f"D={delay:g}s: stack up in {res['stack_startup_s']:.1f} s; publishing {seconds:g} s of "
            f"{media.width}x{media.height}@{media.fps:g} to {name}/in")
        t_pub = time.monotonic()
        pub = analysis.publish(media.path, stack.url(f"{name}/in"), log_path=workdir / f"{name}-publish.log")
        next_log = time.monotonic() + 10
        while pub.poll() is None:
            time.sleep(0.5)
            if time.monotonic() >= next_log:
                next_log += 10
                status, snap = stack.media.api("GET", f"/v1/streams/{name}")
                if status == 200:
                    f = fallback_stats(snap)
                    log(f"D={delay:g}s: t={time.monotonic() - t_pub:5.1f}s sent={f['fragments_sent']} "
                        f"processed={f['processed']} fallbacks={f['fallbacks']} "
                        f"delay_measured={f['output_delay_measured_s']}")
                else:
                    log(f"D={delay:g}s: stream not registered yet ({status})")
            if time.monotonic() - t_pub > seconds + 60:
                log("publisher overran its duration by 60 s: stopping it")
                break
        res["publisher_rc"] = analysis.stop_process(pub)
        pub = None
        log(f"D={delay:g}s: publisher done after {time.monotonic() - t_pub:.1f} s; waiting for the output to "
            f"play out ({delay:g} s)")
        try:
            stack.wait_stream(name, lambda s: s["output"]["state"] in ("idle", "closed")
                              and s["counters"]["audio_frames_out"] > 0, timeout=delay + 20, poll=0.5)
        except TimeoutError as exc:
            log(f"D={delay:g}s: output did not go idle: {str(exc)[:300]}")
        res["resources"] = sampler.stop()
        status, snap = stack.media.api("GET", f"/v1/streams/{name}")
        if status != 200:
            raise RuntimeError(f"GET /v1/streams/{name} -> {status}: {snap}")
        res.update(fallback_stats(snap))
        res["recent"] = [r.get("transcript") for r in snap.get("recent", [])][-3:]
        log(f"D={delay:g}s: sent={res['fragments_sent']} processed={res['processed']} "
            f"fallbacks={res['fallbacks']} rtt p50/p95={fmt(res['rtt_p50_ms'], '.0f')}/"
            f"{fmt(res['rtt_p95_ms'], '.0f')} ms")
    except Exception as exc:
        log(f"D={delay:g}s: FAILED: {exc}")
        res["error"] = str(exc)[:2000]
        res["media_log_tail"] = stack.media.logs(20)
    finally:
        if pub is not None:
            analysis.stop_process(pub)
        if sampler is not None and "resources" not in res:
            res["resources"] = sampler.stop()
        stack.stop()
        log(f"D={delay:g}s: stack stopped")
    return res


def print_report(out: dict) -> None:
    print(f"\nmedia-service benchmark: one {out['fixture']['width']}x{out['fixture']['height']}@"
          f"{out['fixture']['fps']:g} stream, {out['fixture']['seconds']:g} s, {out['cpus']} cores "
          f"(CPU % of one core, process trees; memory = main process RSS / whole tree PSS, max)")
    print(f"{'D s':>5}{'maxfrag ms':>11}{'sent':>6}{'ok':>5}{'fallbk':>7}{'rate':>8}  {'by reason':<28}"
          f"{'RTT p50':>9}{'RTT p95':>9}{'media CPU avg/max':>19}{'media RSS/PSS':>16}{'sts CPU avg/max':>17}"
          f"{'sts RSS/PSS':>16}{'meas D':>8}")
    for r in out["runs"]:
        if "error" in r and "fragments_sent" not in r:
            print(f"{r['delay_s']:>5g}  FAILED: {r['error'][:150]}")
            continue
        m, s = r["resources"].get("media", {}), r["resources"].get("sts", {})
        rate = r["fallback_rate"]
        reasons = ",".join(f"{k}={v}" for k, v in sorted(r["fallbacks"].items())) or "-"
        print(f"{r['delay_s']:>5g}{r['max_fragment_ms']:>11.0f}{r['fragments_sent']:>6}"
              f"{r['processed'].get('ok', 0):>5}{r['fallbacks_total']:>7}"
              f"{fmt(rate * 100 if rate is not None else None, '.1f') + '%':>8}  {reasons:<28}"
              f"{fmt(r['rtt_p50_ms'], '.0f'):>9}{fmt(r['rtt_p95_ms'], '.0f'):>9}"
              f"{fmt(m.get('cpu_avg'), '.0f') + ' / ' + fmt(m.get('cpu_max'), '.0f') + ' %':>19}"
              f"{fmt(m.get('rss_main_max_mb'), '.0f') + '/' + fmt(m.get('pss_max_mb'), '.0f') + ' MB':>16}"
              f"{fmt(s.get('cpu_avg'), '.0f') + ' / ' + fmt(s.get('cpu_max'), '.0f') + ' %':>17}"
              f"{fmt(s.get('rss_main_max_mb'), '.0f') + '/' + fmt(s.get('pss_max_mb'), '.0f') + ' MB':>16}{fmt(r.get('output_delay_measured_s'), '.2f'):>8}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delays", default="4,6,8", help="comma-separated output delays D in seconds")
    ap.add_argument("--seconds", type=float, default=60, help="fixture length (default 60 s)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    args = ap.parse_args()
    delays = [float(d) for d in args.delays.split(",") if d.strip()]
    log(f"fixture: demo {args.seconds:g} s {args.width}x{args.height}@30 (generated once, cached)")
    media = cached_demo_media(seconds=args.seconds, width=args.width, height=args.height)
    workdir = Path(tempfile.mkdtemp(prefix="bench-media-"))
    log(f"work dir (service logs): {workdir}")
    out = {"bench": "media", "cpus": os.cpu_count(), "workdir": str(workdir),
           "fixture": {"path": media.path, "seconds": media.duration, "width": media.width,
                       "height": media.height, "fps": media.fps, "speech_spans": len(media.speech_spans)},
           "runs": []}
    for d in delays:
        out["runs"].append(run_delay(d, media, media.duration, workdir))
    print_report(out)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
