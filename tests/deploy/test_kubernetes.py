"""deploy/kubernetes/ and the Dockerfile: valid against the Kubernetes schemas
(kubernetes-validate, strict), clean under checkov (each skip with its reason),
and consistent with each other and with thinkgate itself (probe paths, the
config in the ConfigMap, the keys in the Secret, the user, the drain deadline).

The Dockerfile is also checked here by checkov's Dockerfile policies and by the
hadolint-style rules below; tests/deploy/test_image.py builds the image and runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from router import config
from tests.components import missing

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests promise to apply on


def tool(name: str) -> str:
    venv = Path(os.environ.get("THINKGATE_K8S_VENV") or Path.home() / ".cache" / "thinkgate-venvs" / "k8s")
    exe = venv / "bin" / name
    if not exe.exists():
        missing(f"{name} is not installed: run scripts/setup_k8s_tools.sh")
    return str(exe)


def docs() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[doc["kind"]] = doc
    return out


def validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    cmd = [tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def checkov(*args: str) -> dict[str, Any]:
    cmd = [tool("checkov"), *args, "--skip-download", "-o", "json"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert p.stdout.strip(), p.stderr[-2000:]
    report = json.loads(p.stdout)
    return report[0] if isinstance(report, list) else report


# -- the schemas ---------------------------------------------------------------


def test_every_manifest_is_valid_against_the_kubernetes_schemas():
    files = sorted(K8S.glob("*.yaml"))
    assert {d["kind"] for d in docs().values()} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"
    }  # fmt: skip
    p = validate(files)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_validator_rejects_a_misspelt_field(tmp_path):
    # strict validation must be able to fail: a typo in a probe is an unknown property
    bad = tmp_path / "deployment.yaml"
    bad.write_text((K8S / "deployment.yaml").read_text().replace("readinessProbe:", "readynessProbe:"))
    p = validate([bad])
    assert p.returncode != 0 and "readynessProbe" in p.stdout + p.stderr


# -- checkov ---------------------------------------------------------------------


@pytest.mark.slow
def test_checkov_finds_nothing_in_the_manifests_and_every_skip_says_why():
    report = checkov("-d", str(K8S), "--framework", "kubernetes")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 50  # it really scanned the Deployment
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_35", "CKV_K8S_43"}
    for c in skipped:
        assert len(c["check_result"].get("suppress_comment", "")) > 20, c  # a reason, not just an id


@pytest.mark.slow
def test_checkov_sees_a_writable_root_filesystem(tmp_path):
    # the scan must be able to fail: the same Deployment with a writable root FS
    text = (K8S / "deployment.yaml").read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    (tmp_path / "deployment.yaml").write_text(text)
    report = checkov("-d", str(tmp_path), "--framework", "kubernetes")
    assert "CKV_K8S_22" in {c["check_id"] for c in report["results"]["failed_checks"]}


@pytest.mark.slow
def test_checkov_finds_nothing_in_the_dockerfile(tmp_path):
    # checkov does not resolve ARGs: it scans the Dockerfile with each FROM's ${ARG}
    # replaced by its default, as a plain `docker build .` builds it
    args = dict(rest.split("=", 1) for word, rest in dockerfile() if word == "ARG" and "=" in rest)
    text = re.sub(r"^(FROM\s+)\$\{(\w+)\}", lambda m: m[1] + args.get(m[2], m[0]), DOCKERFILE.read_text(), flags=re.M)
    assert "${" not in "".join(ln for ln in text.splitlines() if ln.startswith("FROM"))
    resolved = tmp_path / "Dockerfile"
    resolved.write_text(text)
    report = checkov("-f", str(resolved), "--framework", "dockerfile")
    assert report["results"]["failed_checks"] == []
    assert report["summary"]["passed"] > 10


# -- the manifests agree with each other and with thinkgate ----------------------


def pod_spec() -> dict[str, Any]:
    return docs()["Deployment"]["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    (c,) = pod_spec()["containers"]
    return c


def test_probes_use_readyz_for_readiness_and_healthz_for_liveness():
    c = container()
    ready = " ".join(c["readinessProbe"]["exec"]["command"])
    assert "/readyz" in ready and "THINKGATE_PROBE_KEY" in ready  # /readyz needs a key once keys exist
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["port"] == c["ports"][0]["name"]


def test_the_readiness_command_really_probes_a_gateway(unused_tcp_port):
    # run the probe's own command against a real (fake-upstream) thinkgate with keys on
    import sys
    import time

    import httpx

    cfg = {
        "models": {"fast": {"provider": "fake"}},
        "routes": {"auto": {"pin": "fast"}},
        "classifier": {"enabled": False},
        "cache": {"enabled": False},
        "auth": {"keys": [{"key": "probe-key", "tenant": "probe"}]},
    }
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tg-probe-{unused_tcp_port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    srv = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--config", str(path), "--port", str(unused_tcp_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{unused_tcp_port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        cmd = [sys.executable if a == "python" else a.replace("8000", str(unused_tcp_port)) for a in container()["readinessProbe"]["exec"]["command"]]
        ok = subprocess.run(cmd, env={**env, "THINKGATE_PROBE_KEY": "probe-key"}, capture_output=True, timeout=10)
        bad = subprocess.run(cmd, env={**env, "THINKGATE_PROBE_KEY": "wrong"}, capture_output=True, timeout=10)
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        path.unlink()
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode != 0  # a 401 fails the probe


def test_security_context_non_root_read_only_no_privilege():
    sc = container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert pod_spec()["automountServiceAccountToken"] is False
    mounts = {m["mountPath"] for m in container()["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable path (HOME in the image)


def test_resources_are_requested_and_limited():
    r = container()["resources"]
    assert set(r["requests"]) == set(r["limits"]) == {"cpu", "memory"}


def test_hpa_pdb_and_service_select_the_deployment():
    d = docs()
    deploy = d["Deployment"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert d["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    assert d["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    for kind in ("PodDisruptionBudget", "Service"):
        sel = d[kind]["spec"]["selector"]
        sel = sel.get("matchLabels", sel)
        assert sel.items() <= labels.items(), kind
    namespaces = {doc["metadata"].get("namespace") for kind, doc in d.items() if kind != "Namespace"}
    assert namespaces == {d["Namespace"]["metadata"]["name"]}


def test_the_configmap_is_a_valid_thinkgate_config_and_the_secret_has_every_key():
    d = docs()
    secret = d["Secret"]["stringData"]
    env = {e["name"]: e.get("value") or secret[e["valueFrom"]["secretKeyRef"]["key"]] for e in container()["env"]}
    for e in container()["env"]:
        if "valueFrom" in e:
            assert e["valueFrom"]["secretKeyRef"]["name"] == d["Secret"]["metadata"]["name"]
    settings = config.from_dict(yaml.safe_load(d["ConfigMap"]["data"]["config.yaml"]), env)
    assert settings.cache.redis_url and settings.cache.redis_url.startswith("redis://")  # an existing Redis service
    assert settings.models["reasoning"].api_base.startswith("http://vllm.")  # an existing vLLM service
    # the config file is where the container's command reads it
    args = container()["args"]
    mount = next(m["mountPath"] for m in container()["volumeMounts"] if m["name"] == "config")
    assert args[args.index("--config") + 1] == f"{mount}/config.yaml"
    assert args[args.index("--port") + 1] == str(settings.server.port) == str(container()["ports"][0]["containerPort"])
    # uvicorn's drain ends before the kubelet's SIGKILL (grace period minus the preStop sleep)
    pre_stop = float(re.search(r"sleep\((\d+(?:\.\d+)?)\)", " ".join(container()["lifecycle"]["preStop"]["exec"]["command"]))[1])
    assert settings.server.drain_s + pre_stop < pod_spec()["terminationGracePeriodSeconds"]


# -- the Dockerfile's text (tests/deploy/test_image.py builds and runs it) -------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, rest) pairs; a FROM's ${ARG} is its default (what a plain
    `docker build .` uses)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    args: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            if word.upper() == "ARG" and "=" in rest:
                name, _, default = rest.strip().partition("=")
                args[name] = default
            if word.upper() == "FROM":
                rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), rest)
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_the_manifests_user_and_exports_onnx_at_build_time():
    ins = dockerfile()
    user = [rest for word, rest in ins if word == "USER"]
    assert user and user[-1].split(":")[0] == str(container()["securityContext"]["runAsUser"])
    runs = [rest for word, rest in ins if word == "RUN"]
    assert any("thinkgate calibrate export-onnx" in r for r in runs)
    # the export lands where the runtime looks, in the final stage
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    envs = " ".join(rest for word, rest in final if word == "ENV")
    assert "THINKGATE_CACHE=/opt/thinkgate-cache" in envs and "HOME=/tmp" in envs
    assert any(w == "COPY" and "/opt/thinkgate-cache" in r for w, r in final)
    cmd = json.loads(next(rest for word, rest in reversed(ins) if word == "CMD"))
    assert cmd == container()["args"] or cmd[:3] == container()["args"][:3]


def test_dockerfile_hadolint_style_rules():
    ins = dockerfile()
    for word, rest in ins:
        if word == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), f"DL3006/DL3007: pin {image}"
        if word == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest, "DL3015"
            assert "rm -rf /var/lib/apt/lists/*" in rest, "DL3009"
            assert "-y" in rest, "DL3014"
        if word == "RUN" and "pip install" in rest:
            assert "--no-cache-dir" in rest, "DL3042"
        assert word != "MAINTAINER", "DL4000"
    assert [w for w, _ in ins].count("CMD") == 1, "DL4003"
    if shutil.which("hadolint"):  # the real linter, where installed
        p = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout
