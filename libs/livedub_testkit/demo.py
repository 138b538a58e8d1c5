"""`make demo`: the whole pipeline on this machine, watched live, summarised at the end.

Starts the RTMP server (the real MediaMTX with the deployment's configuration when
../shared/bin/mediamtx is there, else nginx-rtmp; LIVEDUB_RTMP_SERVER=nginx|mediamtx chooses),
sts-service and media-service with generated tokens, publishes the demo media to live/demo/in as
broadcaster `demo` (the publish hook starts the dubbing worker), records live/demo/out into out/,
prints progress, and a summary when it stops.
`DEMO_SECONDS=N` publishes N seconds then exits (0 if the pipeline worked); without it the demo
loops until Ctrl-C. `DEMO_REPLICAS=N` runs N media-service processes as one cluster behind a
redis-server (docs/scale-out.md): the hook starts the stream on one of them, the first one's API
and dashboard answer for it. Every process it started is stopped on the way out.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from . import analysis
from .fixtures import cached_demo_media
from .services import http_json
from .stack import LocalStack

STREAM = "demo"


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def metric_total(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                pass
    return total


def running_on(stack) -> str:
    """The replica that runs the demo stream (any replica's list names each stream's)."""
    status, body = stack.media.api("GET", "/v1/streams")
    found = [s.get("replica", "?") for s in body.get("streams", []) if s["id"] == STREAM] if status == 200 else []
    return ",".join(found) or "?"


def main() -> int:
    seconds = float(os.environ.get("DEMO_SECONDS", "0") or 0)
    replicas = int(os.environ.get("DEMO_REPLICAS", "1") or 1)
    out_dir = Path(os.environ.get("DEMO_OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    say("preparing demo media (Piper speech over a music bed, flash/beep sync markers) ...")
    media = cached_demo_media()
    say(f"media: {media.path} ({media.duration:.0f} s, {len(media.speech_spans)} sentences, "
        f"{len(media.markers)} sync markers)")
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("now", True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))
    stack = LocalStack(workdir=out_dir / "run", rtmp=os.environ.get("LIVEDUB_RTMP_SERVER") or "auto",
                       publishers=(STREAM,), replicas=replicas)
    recording = out_dir / "demo-out.flv"
    failed = ""
    rec = pub = None
    printed: set[float] = set()
    snap: dict = {}
    try:
        server = "MediaMTX (deploy/mediamtx/mediamtx.yml)" if stack.rtmp_kind == "mediamtx" else "nginx-rtmp"
        services = "media-service" if replicas == 1 else f"{replicas} media-service replicas and redis-server"
        say(f"starting {server}, sts-service (loading models) and {services} ...")
        stack.start()
        in_url, out_url = stack.url(f"{STREAM}/in"), stack.url(f"{STREAM}/out")
        say(f"sts-service {stack.sts.url}  media-service {' '.join(m.url for m in stack.replicas)}  "
            f"rtmp {stack.rtmp.base_url}")
        rec = stack.record(f"{STREAM}/out", recording)
        extra = ["-t", f"{seconds:.1f}"] if seconds else []
        pub = analysis.publish(media.path, stack.publish_url(f"{STREAM}/in"), loop=True, extra_args=extra)
        say(f"publishing {in_url}" + (" as broadcaster demo (its own MediaMTX user)" if stack.rtmp_kind == "mediamtx"
                                      else ""))
        say(f"watch the dubbed stream: ffplay '{out_url}'   (or VLC: Media > Open Network Stream)")
        say(f"dashboard (state, transcripts, live preview, bypass): {stack.media.url}/  API token: {stack.api_token}")
        say("stop with Ctrl-C" if not seconds else f"running for {seconds:.0f} s + output delay")
        started = time.monotonic()
        last_print = 0.0
        while not stop["now"]:
            time.sleep(0.5)
            status, snap = stack.media.api("GET", f"/v1/streams/{STREAM}")
            if status == 200:
                for item in snap.get("recent", []):
                    if item["start_ms"] in printed:
                        continue
                    printed.add(item["start_ms"])
                    say(f"  {item['start_ms'] / 1000:7.2f}s  EN: {item['transcript']}")
                    for dub in item["dubs"]:
                        say(f"  {'':8}  {dub['language'].upper()}: {dub['text']}")
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    c = snap["counters"]
                    where = f"replica={running_on(stack)} " if replicas > 1 else ""
                    say(f"{where}state={snap['state']} sts={snap['sts']['state']} sent={c['fragments_sent']} "
                        f"ok={c['fragments_processed'].get('ok', 0)} fallbacks={sum(c['fallbacks'].values())} "
                        f"delay={snap['output_delay_measured_s']:.2f}s")
            if pub.poll() is not None:
                if seconds:
                    say("publisher finished; playing out the buffered output ...")
                    end_wait = time.monotonic() + 15
                    while time.monotonic() < end_wait:
                        _, snap = stack.media.api("GET", f"/v1/streams/{STREAM}")
                        if snap.get("output", {}).get("state") in ("idle", "closed"):
                            break
                        time.sleep(0.5)
                    break
                failed = f"publisher exited with {pub.returncode}: see {pub.log_path}"
                break
            if status != 200 and time.monotonic() - started > 20:
                failed = f"no dubbing worker for {STREAM}: {snap}"
                break
    except Exception as exc:  # report, then clean up below
        failed = f"{type(exc).__name__}: {exc}"
    finally:
        if pub is not None:
            analysis.stop_process(pub)
        if rec is not None:
            analysis.stop_process(rec)
        try:  # after Ctrl-C the services may already have stopped (they got the SIGINT too)
            _, metrics_sts = http_json(stack.sts.url + "/metrics", timeout=2)
        except OSError:
            metrics_sts = ""
        stack.stop()
    return summary(snap, recording, metrics_sts if isinstance(metrics_sts, str) else "", failed)


def summary(snap: dict, recording: Path, metrics_sts: str, failed: str) -> int:
    print("\n================ livedub demo summary ================")
    ok = not failed
    if snap and "counters" in snap:
        c = snap["counters"]
        print(f"fragments sent {c['fragments_sent']}, processed {c['fragments_processed']}, "
              f"dubs placed {c['dubs_placed']}, fallbacks {c['fallbacks'] or 'none'}")
        print(f"output delay: configured {snap['output_delay_s']:.1f} s, measured "
              f"{snap['output_delay_measured_s']:.3f} s; STS round trip p50/p95 "
              f"{snap['latency_ms']['p50'] or 0:.0f}/{snap['latency_ms']['p95'] or 0:.0f} ms")
        for item in snap.get("recent", [])[-5:]:
            for dub in item["dubs"]:
                print(f"  EN: {item['transcript']}\n  {dub['language'].upper()}: {dub['text']}")
        ok = ok and c["dubs_placed"] > 0
        if not c["dubs_placed"]:
            failed = failed or "no dub was placed"
    if metrics_sts:
        print(f"sts-service fragments: {metric_total(metrics_sts, 'sts_fragments_total'):.0f}")
    if recording.exists() and recording.stat().st_size > 0:
        try:
            offsets = analysis.av_offsets(recording)
            info = analysis.probe(recording)
            if offsets:
                worst = max(abs(o) for _, o in offsets) * 1000
                print(f"A/V sync at {len(offsets)} flash/beep markers: worst {worst:.1f} ms")
            print(f"recording: {recording} ({info.get('duration') or 0:.1f} s, "
                  f"{(info.get('video') or {}).get('codec')} + {(info.get('audio') or {}).get('codec')})")
        except Exception as exc:
            print(f"recording: {recording} (could not analyse: {exc})")
    else:
        ok = False
        failed = failed or "nothing was recorded from the output"
    print("result:", "OK" if ok else f"FAILED ({failed})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
