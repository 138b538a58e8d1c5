"""deploy/k8s (issue 23 #6): the kustomization renders, every manifest is valid against the
Kubernetes schemas, and it says what the deployment needs (replicas, probes, drain times, who may
reach whom, secrets only from the file the user makes).

Rendered by the real kustomize in kubectl (`make setup` installs Debian's kubernetes-client when
there is no kubectl), validated with `kubernetes-validate`'s bundled schemas at K8S_VERSION.
"""

from __future__ import annotations

import base64
import copy
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from sts_service.config import StsConfig
from sts_service.server import SHUTDOWN_DRAIN_S

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.31.0"  # the oldest Kubernetes release the manifests are checked against
KUBECTL = shutil.which("kubectl")
SECRET_KEYS = ("STS_AUTH_TOKEN", "MEDIA_API_TOKEN", "MEDIA_HOOK_TOKEN", "MEDIAMTX_MEDIA_PASS", "REDIS_PASSWORD")
PUBLISHERS_PY = ROOT / "deploy" / "mediamtx" / "publishers.py"

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is missing (make setup installs kubernetes-client)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """{overlay: (documents, the secrets written)} for the base and each overlay, rendered from a
    copy with a secrets.env of generated values and MediaMTX's configuration rendered by
    publishers.py with one broadcaster (as a user's would be)."""
    work = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, work, ignore=shutil.ignore_patterns("secrets.env", "mediamtx.rendered.yml"))
    values = {k: secrets.token_hex(16) for k in SECRET_KEYS}
    (work / "base" / "secrets.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    added = subprocess.run([sys.executable, str(PUBLISHERS_PY), "--file", str(work / "publishers.env"),
                            "--out", str(work / "base" / "mediamtx.rendered.yml"), "add", "studio-a"],
                           capture_output=True, text=True, timeout=30,
                           env={"MEDIAMTX_MEDIA_PASS": values["MEDIAMTX_MEDIA_PASS"], "PATH": "/usr/bin:/bin"})
    assert added.returncode == 0, added.stderr
    out = {}
    for name in ("base", "overlays/gpu"):
        proc = subprocess.run([KUBECTL, "kustomize", str(work / name)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        out[name] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return {"docs": out, "secrets": values}


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found if name is None else found[0]


def container(docs, name):
    return find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def env_of(c) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


@pytest.mark.parametrize("overlay", ["base", "overlays/gpu"])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered, overlay):
    docs = rendered["docs"][overlay]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace", "NetworkPolicy",
                     "PodDisruptionBudget", "Secret", "Service"], kinds
    assert all(d["metadata"].get("namespace") == "livedub" for d in docs if d["kind"] != "Namespace")


def test_the_validator_refuses_a_broken_manifest(rendered):
    deployment = copy.deepcopy(find(rendered["docs"]["base"], "Deployment", "media-service"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(find(rendered["docs"]["base"], "Deployment", "media-service"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_secrets_come_from_the_users_file_only(rendered):
    docs = rendered["docs"]["base"]
    secret = find(docs, "Secret")
    assert len(secret) == 1
    data = {k: base64.b64decode(v).decode() for k, v in secret[0]["data"].items()}
    assert data == rendered["secrets"]
    name = secret[0]["metadata"]["name"]
    refs = [e["valueFrom"]["secretKeyRef"] for d in find(docs, "Deployment")
            for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs and all(r["name"] == name and r["key"] in SECRET_KEYS for r in refs), refs
    # The example has placeholders only, the real file is never committed.
    example = (K8S / "base" / "secrets.env.example").read_text()
    assert {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")} \
        == set(SECRET_KEYS)
    assert all(line.endswith("=change-me") for line in example.splitlines() if "=" in line and not line.startswith("#"))
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/k8s/base/secrets.env"], cwd=ROOT)
    assert ignored.returncode == 0, "deploy/k8s/base/secrets.env must be git-ignored"


def test_mediamtx_runs_the_compose_configuration(rendered):
    """The configuration publishers.py rendered from deploy/mediamtx/mediamtx.yml (users as hashes)
    and the same hook script as compose; media-service has credentials, MediaMTX the hook token."""
    docs = rendered["docs"]["base"]
    (mtx,) = [c for c in find(docs, "ConfigMap") if c["metadata"]["name"].startswith("mediamtx-config")]
    script = (ROOT / "deploy" / "mediamtx" / "livedub-hook.sh").read_text()
    assert (K8S / "base" / "livedub-hook.sh").read_text() == script, \
        "deploy/k8s/base/livedub-hook.sh differs from deploy/mediamtx/livedub-hook.sh: copy it over"
    assert mtx["data"]["livedub-hook.sh"] == script
    config = yaml.safe_load(mtx["data"]["mediamtx.rendered.yml"])
    users = {u["user"]: u for u in config["authInternalUsers"]}
    assert users["media-service"]["pass"].startswith("sha256:") and "@render" not in users["media-service"]["pass"]
    assert users["studio-a"]["permissions"] == [{"action": "publish", "path": "live/studio-a/in"}]
    assert rendered["secrets"]["MEDIAMTX_MEDIA_PASS"] not in mtx["data"]["mediamtx.rendered.yml"]
    spec = find(docs, "Deployment", "mediamtx")["spec"]["template"]["spec"]
    assert spec["volumes"][0]["configMap"]["name"] == mtx["metadata"]["name"]
    assert spec["containers"][0]["volumeMounts"][0]["mountPath"] == "/livedub"
    assert spec["containers"][0]["args"] == ["/livedub/mediamtx.rendered.yml"]
    mtx_env = env_of(spec["containers"][0])
    assert mtx_env["MEDIA_HOOK_URL"] == "http://media-service:8080/v1/hooks/mediamtx"
    assert mtx_env["MEDIA_HOOK_TOKEN"]["secretKeyRef"]["key"] == "MEDIA_HOOK_TOKEN"
    assert not [k for k in mtx_env if k.startswith("MTX_AUTHINTERNALUSERS") or k == "MEDIA_API_TOKEN"]
    rtmp = find(docs, "Service", "mediamtx-rtmp")
    assert rtmp["spec"]["type"] == "LoadBalancer" and rtmp["spec"]["ports"][0]["port"] == 1935
    find(docs, "Service", "media-service")
    media_env = env_of(container(docs, "media-service"))
    assert media_env["MEDIA_RTMP_BASE_URL"] == "rtmp://mediamtx:1935" and media_env["MEDIA_RTMP_USER"] == "media-service"
    assert media_env["MEDIA_RTMP_PASS"]["secretKeyRef"]["key"] == "MEDIAMTX_MEDIA_PASS"


def test_media_service_replicas_probes_drain_and_disruption_budget(rendered):
    docs = rendered["docs"]["base"]
    deployment = find(docs, "Deployment", "media-service")
    assert deployment["spec"]["replicas"] >= 2
    c = container(docs, "media-service")
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    from media_service.config import MediaConfig

    drain = MediaConfig.model_fields["shutdown_drain_s"].default
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(pre_stop[1]) + drain, (grace, pre_stop, drain)
    pdb = find(docs, "PodDisruptionBudget", "media-service")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert env_of(c)["STS_URL"] == "http://sts-service:8000"


def test_sts_service_is_headless_autoscaled_and_drains_within_its_grace(rendered):
    docs = rendered["docs"]["base"]
    service = find(docs, "Service", "sts-service")
    assert service["spec"]["clusterIP"] == "None"  # the name resolves to every pod: the pool sees them all
    deployment = find(docs, "Deployment", "sts-service")
    c = container(docs, "sts-service")
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    env = env_of(c)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(env["STS_DRAIN_TIMEOUT"]) + SHUTDOWN_DRAIN_S
    hpa = find(docs, "HorizontalPodAutoscaler", "sts-service")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sts-service"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_every_sts_variable_set_is_a_setting(rendered):
    known = {StsConfig.option(name)["env"] for name in StsConfig.model_fields} - {None}
    for overlay in ("base", "overlays/gpu"):
        names = set(env_of(container(rendered["docs"][overlay], "sts-service")))
        assert names <= known, names - known


def test_the_gpu_overlay_puts_the_asr_on_a_gpu(rendered):
    docs = rendered["docs"]["overlays/gpu"]
    c = container(docs, "sts-service")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = env_of(c)
    assert env["STS_ASR_DEVICE"] == "cuda" and env["STS_ASR_COMPUTE_TYPE"] == "float16"
    assert env["STS_AUTH_TOKEN"] == env_of(container(rendered["docs"]["base"], "sts-service"))["STS_AUTH_TOKEN"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"  # the patch merged, it did not replace
    assert find(docs, "HorizontalPodAutoscaler", "sts-service")["spec"]["minReplicas"] == 1


def sources(policy) -> list[dict]:
    return [src for rule in policy["spec"]["ingress"] for src in rule.get("from", [{}])]


def test_network_policies_let_only_media_service_reach_sts_and_redis(rendered):
    docs = rendered["docs"]["base"]
    policies = {p["metadata"]["name"]: p for p in find(docs, "NetworkPolicy")}
    assert set(policies) == {"sts-service", "redis", "media-service", "mediamtx"}
    prometheus = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}

    def pods(name):
        return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}

    for name in policies:
        selected = policies[name]["spec"]["podSelector"]["matchLabels"]
        assert selected == find(docs, "Deployment", name)["spec"]["selector"]["matchLabels"]
        assert policies[name]["spec"]["policyTypes"] == ["Ingress"]
    assert sources(policies["redis"]) == [pods("media-service")]
    assert sources(policies["sts-service"]) == [pods("media-service"), prometheus]
    # The media API: MediaMTX's hooks, the other replicas (forwarded calls) and the scraper.
    assert sources(policies["media-service"]) == [pods("mediamtx"), pods("media-service"), prometheus]
    mtx_rules = policies["mediamtx"]["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in mtx_rules] == [1935, 9997, 9998]
    assert "from" not in mtx_rules[0]  # RTMP: publishers and viewers from anywhere
    assert mtx_rules[1]["from"] == [pods("media-service")]


def test_every_pod_is_scraped_and_the_scrape_job_keeps_the_compose_job_names(rendered):
    docs = rendered["docs"]["base"]
    for d in find(docs, "Deployment"):
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        if d["metadata"]["name"] == "redis":
            continue  # no exporter
        port = int(annotations["prometheus.io/port"])
        ports = [p["containerPort"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]]
        assert annotations["prometheus.io/scrape"] == "true" and port in ports, d["metadata"]["name"]
    (scrape,) = [c for c in find(docs, "ConfigMap") if c["metadata"]["name"] == "livedub-prometheus-scrape"]
    job = yaml.safe_load(scrape["data"]["livedub-scrape.yml"])["scrape_configs"][0]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["livedub"]
    assert any(r.get("target_label") == "job" for r in job["relabel_configs"])


def test_the_services_run_as_the_images_unprivileged_user(rendered):
    dockerfile = (ROOT / "Dockerfile").read_text()
    for d in find(rendered["docs"]["base"], "Deployment"):
        ctx = d["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        if ctx.get("runAsNonRoot"):  # the kubelet checks a numeric user only
            assert isinstance(ctx.get("runAsUser"), int) and ctx["runAsUser"] > 0, d["metadata"]["name"]
        if d["metadata"]["name"] in ("media-service", "sts-service"):
            assert f"--uid {ctx['runAsUser']} " in dockerfile
