"""The deployment as users deploy it: both images built from the Dockerfile, docker-compose.yml run
on a Docker engine, a broadcaster publishing to MediaMTX with its own credentials.

One stack start serves every test of this module, in file order: images (the media image sends
srt:// with its own libsrt to a listener on the host) and the hardening of the
running containers, a credentialed publish dubbed in sync, Prometheus's view, a media-service
restart, an sts-service SIGKILL, then the stack scaled to two media-service replicas (`up --scale
media-service=2`: a hook-started stream runs once in the cluster, any replica and the `api` entry
point answer for it, the owner killed -> it comes back on the other, DELETE through the entry
point) for a second broadcaster's stream, and `down -v` leaving nothing behind.

The engine is the one that answers, or a dockerd this module starts and stops
(livedub_testkit.docker_engine). Images that cannot be pulled here get local stand-ins under the
exact names the Dockerfile and compose file use (livedub_testkit.standin_images), so both files run
unchanged: `python:3.11-slim-bookworm`, the MediaMTX image (the shared MediaMTX binary,
../shared/bin/mediamtx), Prometheus, Redis and nginx (Debian's programs). Grafana cannot be obtained here: its service is left out of
the run (its dashboard is checked as JSON by tests/integration/test_deploy.py).

Measured numbers (image sizes, build and start times) are printed in pytest's summary.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from livedub_testkit import analysis, docker_engine, standin_images
from livedub_testkit.compose_stack import ComposeError, ComposeStack, compose_command
from livedub_testkit.services import free_port, http_json

pytestmark = [pytest.mark.timeout(1500), pytest.mark.deploy]

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed in the venv (make setup installs it)")
docker = pytest.importorskip("docker", reason="the Docker SDK (`docker`, dev extra) is not installed: make setup")

ROOT = Path(__file__).resolve().parents[2]
MEDIAMTX_BINARY = ROOT.parent / "shared" / "bin" / "mediamtx"
PROJECT = "livedubdeploytest"
# Everything but grafana (no image of it can be obtained here).
SERVICES = ("mediamtx", "redis", "sts-service", "media-service", "api", "prometheus")
BUILT = {"media-service": "livedub/media-service:latest", "sts-service": "livedub/sts-service:latest"}
BROADCASTER = "studio-a"
SECOND = "studio-b"  # the broadcaster of the scaled part: its stream starts in the two-replica cluster
RTMP = "rtmp://127.0.0.1:1935"
MEDIA_API = "http://127.0.0.1:8080"
PROMETHEUS = "http://127.0.0.1:9090"
MEDIAMTX_METRICS = "http://127.0.0.1:9998/metrics"  # open to private networks (the host reaches it via docker-proxy)
MEDIA_IMAGE_MAX_BYTES = 400 * 10**6
RECONCILE_INTERVAL_S = 10.0  # media-service's default MEDIA_RECONCILE_INTERVAL (not set in compose)
OUTPUT_DELAY_S = 2.5  # the compose default MEDIA_OUTPUT_DELAY
HOST_PORTS = (1935, 8554, 8080, 9090, 9997, 9998)
REPLICAS = 2  # media-service replicas of the scaled part
CLUSTER_PREFIX = "livedub"  # media-service's Redis keys (cluster/node.py PREFIX)
FORWARDED = {"X-Livedub-Forwarded": "1"}  # a replica answers such a request from its own streams only


def base_image_of_dockerfile() -> str:
    return re.search(r"^FROM\s+(\S+)\s+AS\s+base\s*$", (ROOT / "Dockerfile").read_text(), re.M | re.I).group(1)


def ports_in_use() -> list[int]:
    import socket

    busy = []
    for port in HOST_PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def engine(deploy_report):
    try:
        eng = docker_engine.engine()
    except docker_engine.EngineUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    deploy_report["engine"] = "started by the test" if eng.process else "already running"
    deploy_report["storage driver"] = eng.storage_driver
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture(scope="module")
def workdir():
    """Not under pytest's basetemp: concurrent pytest sessions prune each other's old basetemps,
    and this module runs for minutes."""
    with tempfile.TemporaryDirectory(prefix="livedub-deploy-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def env_file(workdir):
    """A generated .env (fresh secrets) and the broadcaster's MediaMTX user, made by the operator's
    tool (deploy/mediamtx/publishers.py). Where that tool renders MediaMTX's configuration into
    deploy/mediamtx (it does when it has `--out`), a file already there is put back afterwards."""
    tool = ROOT / "deploy/mediamtx/publishers.py"
    store = workdir / "publishers.env"
    password = secrets.token_hex(16)
    values = {
        "STS_AUTH_TOKEN": secrets.token_hex(24),
        "MEDIA_API_TOKEN": secrets.token_hex(24),
        "MEDIA_HOOK_TOKEN": secrets.token_hex(24),
        "MEDIAMTX_MEDIA_PASS": secrets.token_hex(16),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
        "REDIS_PASSWORD": secrets.token_hex(16),
        "MEDIAMTX_PUBLISHERS_FILE": str(store),
    }
    path = workdir / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    usage = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True, timeout=30).stdout
    cmd = [sys.executable, str(tool), "--file", str(store)]
    rendered = saved = None
    if "--out" in usage:
        rendered = ROOT / "deploy/mediamtx/mediamtx.rendered.yml"
        if rendered.exists():
            saved = workdir / "mediamtx.rendered.yml.saved"
            shutil.copy2(rendered, saved)
        cmd += ["--out", str(rendered), "--env-file", str(path)]
    passwords = {BROADCASTER: password, SECOND: secrets.token_hex(16)}
    for name, pw in passwords.items():
        proc = subprocess.run([*cmd, "add", name, "--password", pw], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "MEDIAMTX_MEDIA_PASS": values["MEDIAMTX_MEDIA_PASS"]})
        assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        yield path, {**values, "BROADCASTER_PASS": password, "PASSWORDS": passwords}
    finally:
        if saved is not None:
            shutil.copy2(saved, rendered)
        elif rendered is not None:
            rendered.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def compose_config(engine, env_file, deploy_report) -> dict:
    env_path, _ = env_file
    cli = compose_command(engine.env())
    if cli is None:
        pytest.skip("neither `docker compose` (v2 plugin) nor `docker-compose` (Debian package) is installed")
    proc = subprocess.run([*cli, "--project-directory", str(ROOT), "--file", str(ROOT / "docker-compose.yml"),
                           "--env-file", str(env_path), "config"], cwd=ROOT, env=engine.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    deploy_report["compose"] = " ".join(Path(cli[0]).name if i == 0 else a for i, a in enumerate(cli))
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def images(engine, compose_config, deploy_report, progress, workdir) -> dict:
    """Stand-ins for what cannot be pulled, then both service images built from the Dockerfile."""
    if not MEDIAMTX_BINARY.exists():
        pytest.skip(f"the MediaMTX binary is missing ({MEDIAMTX_BINARY}; see ../shared/bin/README.md)")
    client = engine.client()
    cache = docker_engine.cache_dir()
    services = compose_config["services"]
    wanted = [
        (base_image_of_dockerfile(), standin_images.python_base_recipe(),
         lambda tmp: standin_images.make_python_base(tmp, cache), standin_images.PYTHON_BASE_CHANGES),
        (services["mediamtx"]["image"], standin_images.mediamtx_recipe(MEDIAMTX_BINARY),
         lambda tmp: standin_images.make_mediamtx(tmp, MEDIAMTX_BINARY), standin_images.MEDIAMTX_CHANGES),
        (services["prometheus"]["image"], standin_images.prometheus_recipe(),
         standin_images.make_prometheus, standin_images.PROMETHEUS_CHANGES),
        (services["redis"]["image"], standin_images.redis_recipe(),
         standin_images.make_redis, standin_images.REDIS_CHANGES),
        (services["api"]["image"], standin_images.nginx_recipe(),
         standin_images.make_nginx, standin_images.NGINX_CHANGES),
    ]
    try:
        for name, recipe, make, changes in wanted:
            started = time.monotonic()
            how = standin_images.ensure(client, name, recipe, make, changes=changes, log=progress)
            size = client.images.get(name).attrs["Size"] / 1e6
            deploy_report[f"image {name}"] = f"{how} ({time.monotonic() - started:.0f} s, {size:.0f} MB)"
            progress(f"{name}: {how}")
    except standin_images.StandinUnavailable as exc:
        pytest.skip(f"cannot make a stand-in image: {exc}")
    built = {}
    for service, tag in BUILT.items():
        assert services[service]["image"] == tag, "the compose file names the image the test builds"
        progress(f"building {service} (target {service} of the Dockerfile; full log in {workdir}/build-{service}.log)")
        with open(workdir / f"build-{service}.log", "w") as build_log:
            def step(line: str, build_log=build_log) -> None:
                build_log.write(line + "\n")
                if line.startswith("Step "):
                    progress(f"  {line[:120]}")

            seconds = docker_engine.build_image(client, ROOT, service, tag, log=step)
        image = client.images.get(tag)
        built[service] = image
        deploy_report[f"build {service}"] = f"{seconds:.0f} s"
        deploy_report[f"size {service}"] = f"{image.attrs['Size'] / 1e6:.0f} MB"
    yield built
    client.close()


@pytest.fixture(scope="module")
def stack(engine, images, env_file, deploy_report, deploy_stack_holder):
    env_path, values = env_file
    busy = ports_in_use()
    if busy:
        pytest.fail(f"host ports the compose file publishes are taken: {busy}")
    compose = ComposeStack(ROOT, engine, env_path, PROJECT)
    compose.values = values
    try:
        compose.run("down", "-v", "--remove-orphans", timeout=120)  # what an interrupted run left
        started = time.monotonic()
        compose.run("up", "-d", "--no-build", *SERVICES, timeout=300)
        took = compose.wait_healthy(SERVICES, timeout=240)
        deploy_report["stack start (up -d to all healthy)"] = f"{time.monotonic() - started:.0f} s " + \
            "(" + ", ".join(f"{s} {t:.0f} s" for s, t in sorted(took.items(), key=lambda kv: kv[1])) + ")"
        deploy_stack_holder["stack"] = compose
        yield compose
    finally:
        deploy_stack_holder.pop("stack", None)
        try:
            compose.run("down", "-v", "--remove-orphans", timeout=180)
        except ComposeError as exc:
            print(exc)
        compose.close()


def api(stack, method: str, path: str, body: dict | None = None):
    return http_json(MEDIA_API + path, method=method, body=body, token=stack.values["MEDIA_API_TOKEN"])


def publish_url(stack, name: str = BROADCASTER) -> str:
    return f"{RTMP}/live/{name}/in?user={name}&pass={stack.values['PASSWORDS'][name]}"


def output_url(name: str = BROADCASTER) -> str:
    return f"{RTMP}/live/{name}/out"


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def stream(stack, name: str = BROADCASTER) -> dict | None:
    """The stream's snapshot; None while it does not exist or media-service does not answer."""
    try:
        status, snap = api(stack, "GET", f"/v1/streams/{name}")
    except OSError:  # restarting: docker-proxy accepts, then closes (RemoteDisconnected is one)
        return None
    return snap if status == 200 else None


def output_ready(name: str = BROADCASTER) -> bool:
    """MediaMTX has live/<name>/out published (what a viewer can read), by its own metrics."""
    try:
        with urllib.request.urlopen(MEDIAMTX_METRICS, timeout=5) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
    except OSError:
        return False
    return f'paths{{name="live/{name}/out",state="ready"}} 1' in text


def events(stack, kind: str | None = None) -> list[dict]:
    status, body = api(stack, "GET", f"/v1/events?stream={BROADCASTER}")
    assert status == 200, body
    return [e for e in body["events"] if kind is None or e["type"] == kind]


def sample_output(path: Path, seconds: float, name: str = BROADCASTER) -> Path:
    """Read the dubbed output from MediaMTX, as a viewer on the host would, for `seconds`."""
    proc = analysis.record_stream(output_url(name), path, seconds, copyts=False)  # -t counts from the first packet
    proc.wait(timeout=seconds + 30)
    return path


def prometheus(query: str) -> list[dict]:
    url = f"{PROMETHEUS}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


# ------------------------------------------------------------------------------ images
def test_images_fit_for_production(images, engine):
    media, sts = images["media-service"], images["sts-service"]
    print(f"media-service {media.attrs['Size'] / 1e6:.0f} MB, sts-service {sts.attrs['Size'] / 1e6:.0f} MB")
    assert media.attrs["Size"] <= MEDIA_IMAGE_MAX_BYTES, f"media-service image is {media.attrs['Size'] / 1e6:.0f} MB"
    for image in (media, sts):
        assert image.attrs["Config"]["User"] == "livedub"
    client = engine.client()
    try:
        # No ffmpeg program in the media-service image: the relay uses PyAV's libraries (and libsrt for srt).
        out = client.containers.run(BUILT["media-service"], ["sh", "-c", "command -v ffmpeg || echo none"],
                                    remove=True, network_mode="none").decode().strip()
    finally:
        client.close()
    assert out == "none", out


def test_media_image_publishes_srt_without_ffmpeg(images, engine, short_media, workdir):
    """srt:// out of the shipped image: its srt_relay (libsrt) sends MPEG-TS to an SRT listener on
    the host (ffmpeg, which records it), with a passphrase and a stream id in the URL."""
    ts = workdir / "srt-in.ts"
    subprocess.run([shutil.which("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-i", str(short_media.path),
                    "-t", "4", "-map", "0", "-c", "copy", "-f", "mpegts", str(ts)], check=True, timeout=60)
    ts.chmod(0o644)
    port = free_port()
    passphrase = secrets.token_hex(12)
    received = workdir / "srt-out.ts"
    listener = subprocess.Popen([shutil.which("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "warning", "-y",
                                 "-i", f"srt://127.0.0.1:{port}?mode=listener&passphrase={passphrase}",
                                 "-map", "0", "-c", "copy", "-f", "mpegts", str(received)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The muxer hands the relay a live stream: paced here in 16 KiB pieces (the image has no ffmpeg -re).
    feed = ("import sys, time\n"
            "data = open('/in.ts', 'rb').read()\n"
            "for at in range(0, len(data), 16384):\n"
            "    sys.stdout.buffer.write(data[at:at + 16384]); sys.stdout.flush(); time.sleep(0.02)\n")
    client = engine.client()
    try:
        time.sleep(1)  # the listener binds
        client.containers.run(
            BUILT["media-service"],
            ["sh", "-c", 'python -c "$FEED" | python -m media_service.media_io.srt_relay --rw-timeout-us 5000000'],
            environment={"FEED": feed, "LIVEDUB_RELAY_URL": f"srt://127.0.0.1:{port}?streamid=publish:live/x"
                                                            f"&passphrase={passphrase}&latency=200000"},
            volumes={str(ts): {"bind": "/in.ts", "mode": "ro"}}, network_mode="host", remove=True)
        listener.wait(timeout=30)  # ends when the caller closes the connection
    finally:
        client.close()
        if listener.poll() is None:
            analysis.stop_process(listener)
        log = listener.stderr.read().decode(errors="replace")
        listener.stderr.close()
    got = analysis.probe(received)
    assert got["video"]["codec"] == "h264" and got["audio"]["codec"] == "aac", (got, log)
    sent = [payload for _, payload in analysis.video_packets(ts)]
    arrived = [payload for _, payload in analysis.video_packets(received)]
    assert len(arrived) >= 0.9 * len(sent) and set(arrived) <= set(sent), (len(arrived), len(sent), log)


def test_containers_run_read_only_without_capabilities(stack):
    users = {"media-service": "livedub", "sts-service": "livedub", "redis": "999:999", "api": "101:101"}
    for service, user in users.items():
        attrs = stack.container(service).attrs
        host = attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), service
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), service
        assert "/tmp" in (host.get("Tmpfs") or {}), service
        assert attrs["Config"]["User"] == user, service
        assert attrs["State"]["Health"]["Status"] == "healthy", service
    # Only the entry point publishes the media API on the host: media-service can be scaled.
    assert not stack.container("media-service").attrs["HostConfig"].get("PortBindings")


# ------------------------------------------------------------------------------ a broadcast
@pytest.fixture(scope="module")
def broadcast(stack, short_media, workdir):
    """The fixture published once with the broadcaster's own credentials; the output recorded."""
    out = workdir / "out.flv"
    pub = analysis.publish(short_media.path, publish_url(stack), log_path=workdir / "publish.log")
    try:
        wait_for("the hook-started stream's output", output_ready, timeout=30, every=0.2)
        rec = analysis.record_stream(output_url(), out, log_path=workdir / "record.log")
        assert pub.wait(timeout=60) == 0, (workdir / "publish.log").read_text()
        # runOnNotReady stops the stream; its output plays out what was buffered, then closes.
        wait_for("the output to finish", lambda: stream(stack) is None or
                 stream(stack)["output"]["state"] in ("idle", "closed"), timeout=30)
        time.sleep(1.0)
    finally:
        analysis.stop_process(pub)
    analysis.stop_process(rec)
    return {"info": short_media, "out": out, "events": events(stack)}


def test_credentialed_publish_starts_the_stream_through_the_hook(broadcast):
    kinds = [e["type"] for e in broadcast["events"]]
    assert "hook_publish" in kinds and "input_open" in kinds, kinds
    assert any(e["type"] == "sts_state" and e["data"]["state"] == "connected" for e in broadcast["events"])


def test_unknown_broadcaster_is_refused(stack, short_media, workdir):
    url = f"{RTMP}/live/{BROADCASTER}/in?user={BROADCASTER}&pass=wrong-{secrets.token_hex(8)}"
    pub = analysis.publish(short_media.path, url, log_path=workdir / "refused.log")
    try:
        assert pub.wait(timeout=30) != 0
    finally:
        analysis.stop_process(pub)


def test_speech_is_dubbed(broadcast):
    info, evs = broadcast["info"], broadcast["events"]
    dubbed = [e["data"] for e in evs if e["type"] == "dubbed"]
    fallbacks = [e["data"] for e in evs if e["type"] == "fallback"]
    assert len(fallbacks) <= 1, fallbacks  # one timing miss tolerated (analysis.timing_misses)
    assert len(dubbed) >= len(info.speech_spans) - 1, (dubbed, fallbacks)
    spanish = " ".join(d["text"] for e in dubbed for d in e["dubs"] if d["language"] == "es").lower()
    assert re.search(r"\b(el|la|de|y|en|los|las|una|un|es)\b", spanish), spanish


def test_video_is_passed_through_and_av_in_sync(broadcast):
    info, out = broadcast["info"], broadcast["out"]
    # MediaMTX re-packs what it serves (SPS/PPS before every keyframe): the coded pictures are compared.
    src = [(t, analysis.h264_slices(p)) for t, p in analysis.video_packets(info.path)]
    got = [(t, analysis.h264_slices(p)) for t, p in analysis.video_packets(out)]
    assert got, "nothing recorded from live/<name>/out"
    payloads = [p for _, p in src]
    first = payloads.index(got[0][1])
    assert len(got) >= len(src) - first - 1, (len(got), len(src), first)
    assert all(o[1] == s for o, s in zip(got[:-1], payloads[first:])), "the coded pictures must be identical"
    shift = got[0][0] - src[first][0]
    expected = [m for m in info.markers if m + shift >= got[0][0]]
    offsets = analysis.av_offsets(out)
    print("A/V offsets (ms):", [round(o * 1000, 2) for _, o in offsets])
    assert len(offsets) >= len(expected) - 1, (offsets, expected)
    assert max(abs(o) for _, o in offsets) <= 0.005, offsets


# ------------------------------------------------------------------------------ faults
@pytest.fixture(scope="module")
def looping_publisher(stack, short_media, workdir):
    """The broadcaster publishing without end, for the restart and kill checks."""
    pub = analysis.publish(short_media.path, publish_url(stack), loop=True, log_path=workdir / "loop.log")
    try:
        wait_for("the stream's output", output_ready, timeout=30, every=0.2)
        yield pub
    finally:
        analysis.stop_process(pub)


def test_media_service_restart_brings_the_stream_back(stack, looping_publisher, workdir, deploy_report):
    stack.run("restart", "media-service", timeout=120)
    restarted = time.monotonic()
    took = wait_for("output flowing after the media-service restart",
                    lambda: output_ready() and time.monotonic() - restarted,
                    timeout=RECONCILE_INTERVAL_S + OUTPUT_DELAY_S + 20)
    deploy_report["media-service restart -> output writing"] = f"{took:.1f} s"
    sample = sample_output(workdir / "after-restart.flv", 3)
    assert len(analysis.video_packets(sample)) > 30, "no video from live/<name>/out after the restart"
    # From its spec in Redis (the replica that comes back takes it over), or from MediaMTX's path list.
    kinds = [e["type"] for e in events(stack)]
    assert {"taken_over", "reconciled"} & set(kinds), kinds


def test_sts_service_killed_output_keeps_flowing_then_dubs_return(stack, looping_publisher, workdir):
    wait_for("a dub before the kill", lambda: events(stack, "dubbed"), timeout=60)
    stack.run("kill", "-s", "SIGKILL", "sts-service", timeout=60)
    killed_seq = max(e["seq"] for e in events(stack))
    during = sample_output(workdir / "sts-down.flv", 8)
    video, audio = analysis.packet_times(during, "video"), analysis.packet_times(during, "audio")
    assert len(video) > 150 and len(audio) > 250, (len(video), len(audio))
    assert analysis.max_gap(during, "video") < 0.5 and analysis.max_gap(during, "audio") < 0.5
    levels = [db for _, db in analysis.audio_rms_series(during)]
    assert max(levels) > -40, "the original audio must keep playing"
    down = [e for e in events(stack, "fallback") if e["seq"] > killed_seq]
    assert down and {e["data"]["reason"] for e in down} <= {"sts_unavailable", "sts_disconnected", "closed",
                                                             "failed", "timeout", "deadline_exceeded"}, down

    # `kill` counts as a manual stop for the restart policy (unless-stopped): the operator starts it.
    stack.run("start", "sts-service", timeout=60)
    stack.wait_healthy(["sts-service"], timeout=180)
    back_seq = max(e["seq"] for e in events(stack))
    wait_for("a dub after the sts-service restart",
             lambda: [e for e in events(stack, "dubbed") if e["seq"] > back_seq], timeout=90)


def test_prometheus_scrapes_every_service(stack, looping_publisher):
    def up() -> dict[str, float]:
        return {r["metric"]["job"]: float(r["value"][1]) for r in prometheus("up")}

    jobs = wait_for("every target up in Prometheus",
                    lambda: (u := up()) and all(u.get(j) == 1 for j in ("media-service", "sts-service", "mediamtx"))
                    and u, timeout=60, every=2)
    print("up:", jobs)
    for family in ("media_fallback_total", "media_fragment_roundtrip_seconds_count"):
        wait_for(f"samples of {family}", lambda f=family: prometheus(f), timeout=60, every=2)


# ------------------------------------------------------------------------------ scaled out
def redis_cli(stack, *args: str) -> list[str]:
    """redis-cli in the redis container (the password from its environment, not the command line)."""
    code, out = stack.container("redis").exec_run(["redis-cli", *args],
                                                  environment={"REDISCLI_AUTH": stack.values["REDIS_PASSWORD"]})
    assert code == 0, out
    return [line for line in out.decode().splitlines() if line]


def registered(stack) -> dict[str, str]:
    """Replica id -> advertised URL, from the load board in Redis (live replicas only: TTL keys)."""
    keys = redis_cli(stack, "--scan", "--pattern", f"{CLUSTER_PREFIX}:replica:*")
    boards = [json.loads(redis_cli(stack, "GET", key)[0]) for key in keys]
    return {b["id"]: b["url"] for b in boards}


def lease_holder(stack, name: str = SECOND) -> str | None:
    """The replica id holding the stream's lease (`<replica>|<fence>`), None when nobody does."""
    got = redis_cli(stack, "GET", f"{CLUSTER_PREFIX}:lease:{name}")
    return got[0].split("|")[0] if got else None


def replicas(stack) -> dict[str, object]:
    """Container address -> container, for the running media-service replicas."""
    found = {}
    for c in stack.containers("media-service"):
        c.reload()
        nets = c.attrs["NetworkSettings"]["Networks"]
        found[next(iter(nets.values()))["IPAddress"]] = c
    return found


def replica_call(stack, ip: str, path: str, *, local: bool = False, timeout: float = 10) -> tuple[int, dict | str]:
    """A request straight to one replica at its container address (the host reaches the project's
    bridge network), as another replica or Prometheus would make it; `local`: its own streams only."""
    req = urllib.request.Request(f"http://{ip}:8080{path}", headers={
        "Authorization": f"Bearer {stack.values['MEDIA_API_TOKEN']}", **(FORWARDED if local else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the test's own network
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def running_on(stack) -> list[str]:
    """Addresses of the replicas that run the stream themselves (exactly one when all is well)."""
    on = []
    for ip in replicas(stack):
        try:
            status, body = replica_call(stack, ip, "/v1/streams", local=True)
        except OSError:
            continue
        if status == 200 and any(st["id"] == SECOND for st in body["streams"]):
            on.append(ip)
    return on


def healthy_replicas(stack) -> int:
    return sum(c.attrs["State"].get("Health", {}).get("Status") == "healthy" for c in replicas(stack).values())


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


@pytest.fixture(scope="module")
def scaled(stack, looping_publisher, short_media, workdir, deploy_report):
    """The stack scaled to REPLICAS media-service replicas, and a second broadcaster publishing, so
    that the hook starts its stream in the cluster. The first one's stream is stopped (it would
    wait for its input for a while after the publisher goes): the machine has two cores."""
    analysis.stop_process(looping_publisher)
    status, body = api(stack, "DELETE", f"/v1/streams/{BROADCASTER}")
    assert status in (200, 202, 204, 404), (status, body)
    wait_for(f"{BROADCASTER}'s lease to go", lambda: lease_holder(stack, BROADCASTER) is None, timeout=30)
    started = time.monotonic()
    stack.run("up", "-d", "--no-build", "--no-recreate", "--scale", f"media-service={REPLICAS}", *SERVICES,
              timeout=300)
    wait_for(f"{REPLICAS} media-service replicas healthy", lambda: healthy_replicas(stack) == REPLICAS,
             timeout=120, every=1)
    wait_for(f"{REPLICAS} replicas registered in Redis", lambda: len(registered(stack)) == REPLICAS, timeout=30)
    deploy_report[f"scale to {REPLICAS} media-service (up to healthy and registered)"] = \
        f"{time.monotonic() - started:.0f} s"
    pub = analysis.publish(short_media.path, publish_url(stack, SECOND), loop=True, log_path=workdir / "scaled.log")
    try:
        wait_for("the hook-started stream's output", lambda: output_ready(SECOND), timeout=30, every=0.2)
        yield pub
    finally:
        analysis.stop_process(pub)


def test_every_replica_is_healthy_and_registered_in_redis(stack, scaled):
    ips = set(replicas(stack))
    assert len(ips) == REPLICAS
    boards = registered(stack)
    # Each advertises its container address (MEDIA_ADVERTISE_URL unset) and answers requests to it.
    assert {host_of(url) for url in boards.values()} == ips, boards
    for ip in ips:
        status, _ = replica_call(stack, ip, "/health")
        assert status == 200, ip
    # The password in MEDIA_REDIS_URL never reaches a log (redaction: redis://***@redis:6379/0).
    logs = stack.logs("media-service", tail=2000)
    assert "redis://***@redis:6379/0" in logs and stack.values["REDIS_PASSWORD"] not in logs


def test_a_hook_started_stream_runs_exactly_once_in_the_cluster_and_plays(stack, scaled, workdir):
    on = wait_for("the stream running on one replica", lambda: running_on(stack), timeout=30)
    assert len(on) == 1, on
    holder = lease_holder(stack)
    assert host_of(registered(stack)[holder]) == on[0], "the lease holder is the replica that runs it"
    sample = sample_output(workdir / "scaled.flv", 4, SECOND)
    assert len(analysis.video_packets(sample)) > 40, "no video from live/<name>/out"
    assert len(analysis.packet_times(sample, "audio")) > 100, "no audio from live/<name>/out"

    def dubbed() -> list[dict]:  # the owner's events, through the entry point
        status, body = api(stack, "GET", f"/v1/streams/{SECOND}/events")
        return [e for e in body["events"] if e["type"] == "dubbed"] if status == 200 else []

    wait_for("a dub placed in the cluster's stream", dubbed, timeout=60)
    assert running_on(stack) == on, "still exactly one replica runs it"


def test_any_replica_and_the_entry_point_answer_for_the_stream(stack, scaled):
    owner_ip = running_on(stack)[0]
    owner = lease_holder(stack)
    other_ip = next(ip for ip in replicas(stack) if ip != owner_ip)
    # Through the entry point (requests spread over both replicas): listed once, by its owner.
    for _ in range(2 * REPLICAS):
        status, body = api(stack, "GET", "/v1/streams")
        assert status == 200, body
        listed = [st for st in body["streams"] if st["id"] == SECOND]
        assert len(listed) == 1 and listed[0]["replica"] == owner, body
    # Straight at each replica: the cluster's list; the other forwards the snapshot to the owner.
    for ip in (owner_ip, other_ip):
        status, body = replica_call(stack, ip, "/v1/streams")
        assert status == 200 and [st["replica"] for st in body["streams"] if st["id"] == SECOND] == [owner]
        status, snap = replica_call(stack, ip, f"/v1/streams/{SECOND}")
        assert status == 200 and snap["id"] == SECOND, (ip, status, snap)
    # The other redirects the events to the owner's container address; the entry point follows it.
    for _ in range(2 * REPLICAS):
        status, body = api(stack, "GET", f"/v1/streams/{SECOND}/events")
        assert status == 200 and "input_open" in [e["type"] for e in body["events"]], (status, body)


def test_prometheus_scrapes_every_replica(stack, scaled):
    def up() -> list[float]:
        return [float(r["value"][1]) for r in prometheus('up{job="media-service"}')]

    wait_for(f"{REPLICAS} media-service targets up", lambda: up() == [1.0] * REPLICAS, timeout=60, every=2)


def test_killing_the_owner_brings_the_stream_back_on_the_other(stack, scaled, workdir, deploy_report):
    owner_ip = running_on(stack)[0]
    owner = lease_holder(stack)
    survivor_ip = next(ip for ip in replicas(stack) if ip != owner_ip)
    victim = replicas(stack)[owner_ip]
    victim.kill()  # SIGKILL: no hand-over, the lease expires
    killed = time.monotonic()
    wait_for("the stream running on the other replica",
             lambda: lease_holder(stack) not in (None, owner) and running_on(stack) == [survivor_ip], timeout=90)
    took = wait_for("output flowing again", lambda: output_ready(SECOND) and time.monotonic() - killed, timeout=60)
    deploy_report["owner replica SIGKILL -> output ready on the other"] = f"{took:.1f} s"
    sample = sample_output(workdir / "after-kill.flv", 3, SECOND)
    assert len(analysis.video_packets(sample)) > 30, "no video from live/<name>/out after the takeover"
    status, body = api(stack, "GET", f"/v1/streams/{SECOND}/events")
    taken = [e for e in body["events"] if e["type"] == "taken_over"]
    assert taken, [e["type"] for e in body["events"]]
    # The killed replica is started again (`docker kill` is a manual stop for the restart policy).
    victim.start()
    wait_for(f"{REPLICAS} replicas registered again", lambda: len(registered(stack)) == REPLICAS, timeout=90)


def test_delete_through_the_entry_point_stops_it_wherever_it_runs(stack, scaled):
    status, body = api(stack, "DELETE", f"/v1/streams/{SECOND}")
    assert status in (200, 202, 204), (status, body)
    wait_for("the stream gone from every replica", lambda: not running_on(stack) and lease_holder(stack) is None,
             timeout=30)
    for ip in replicas(stack):  # and stays gone while the input is still published (reconcile leaves it)
        status, body = replica_call(stack, ip, "/v1/streams")
        assert status == 200 and SECOND not in [st["id"] for st in body["streams"]], body


# ------------------------------------------------------------------------------ the end
def test_down_leaves_nothing_behind(stack, looping_publisher, deploy_report):
    analysis.stop_process(looping_publisher)  # already stopped when the scaled part ran
    started = time.monotonic()
    stack.run("down", "-v", "--remove-orphans", timeout=180)
    deploy_report["compose down -v"] = f"{time.monotonic() - started:.0f} s"
    left = stack.leftovers()
    assert left == {"containers": [], "networks": [], "volumes": []}, left
