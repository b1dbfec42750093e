"""The image, built by scripts/build_image.sh (buildah, a debootstrap'd Debian base, no
registry) and run the way deploy/kubernetes/ runs it: user 10001, read-only root
filesystem with only /tmp writable, the config mounted read-only, no capabilities.
Through a scripted OpenAI-compatible upstream on loopback it must answer /healthz,
/readyz and a chat request routed by the ONNX classifier that was exported at build
time (nothing written at start), and on SIGTERM finish the streams in flight and exit 0
within the Deployment's grace period.

The build is cached by content hash (scripts/build_image.sh), so only a change to
what goes into the image rebuilds it."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.components import missing
from tests.e2e.serve import free_port
from tests.e2e.tool_upstream import ToolUpstream

# the image build (cached by content hash) can take many minutes on a cold cache: beyond the
# suite's 300 s per-test timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# crun and podman's default rlimits/cgroup manager fail on hosts like CI's: runc,
# cgroupfs and explicit limits work on both
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]


def deployment() -> dict[str, Any]:
    return yaml.safe_load((K8S / "deployment.yaml").read_text())


def container_spec() -> dict[str, Any]:
    return deployment()["spec"]["template"]["spec"]["containers"][0]


def gateway_config(upstream_base: str) -> str:
    """The ConfigMap's config with its models pointed at the scripted upstream (and no
    Redis: the compose test covers the cache); server, routes, classifier (the
    image's ONNX embedder) and limits stay as deployed."""
    cm = yaml.safe_load((K8S / "configmap.yaml").read_text())
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    model = {"provider": "openai", "api_base": upstream_base, "logprobs": False, "timeout": 30}
    cfg["models"] = {
        "fast": {**model, "model": "tool-fast"},
        "reasoning": {**model, "model": "tool-think", "reasoning": True},
        "slow": {**model, "model": "tool-slow"},
    }
    for part in ("cache", "decisions"):
        cfg.pop(part, None)
    return yaml.safe_dump(cfg)


@pytest.fixture(scope="module")
def image() -> str:
    for tool in ("podman", "buildah", "runc"):
        if not shutil.which(tool):
            missing(f"{tool} is not installed: run scripts/setup_image_tools.sh")
    t0 = time.monotonic()
    p = subprocess.run(["scripts/build_image.sh"], cwd=ROOT, capture_output=True, text=True, timeout=2400)
    assert p.returncode == 0, p.stderr[-5000:]
    ref = p.stdout.strip().splitlines()[-1]
    size = int(subprocess.run(PODMAN + ["image", "inspect", "--format", "{{.Size}}", ref],
                              capture_output=True, text=True, check=True).stdout)  # fmt: skip
    print(f"\nimage {ref}: {size / 1e6:.0f} MB, scripts/build_image.sh took {time.monotonic() - t0:.1f} s")
    return ref


@contextmanager
def run_container(image: str, tmp: Path, upstream_base: str) -> Iterator[tuple[str, str, float]]:
    """Yields (container name, gateway URL, seconds from `podman run` to /readyz 200)."""
    conf = tmp / "etc-thinkgate"
    conf.mkdir()
    (conf / "config.yaml").write_text(gateway_config(upstream_base))
    conf.chmod(0o755)
    (conf / "config.yaml").chmod(0o644)
    name = f"thinkgate-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    spec = container_spec()
    user = f"{spec['securityContext']['runAsUser']}:{deployment()['spec']['template']['spec']['securityContext']['runAsGroup']}"
    tmp_limit = next(v["emptyDir"]["sizeLimit"] for v in deployment()["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp")
    args = list(spec["args"])
    # the deployed args, on loopback and a free port (the host network is shared)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    env = [f"--env={e['name']}={e['value']}" for e in spec["env"] if "value" in e]
    t0 = time.monotonic()
    subprocess.run(
        PODMAN + ["run", "-d", "--name", name, "--network", "host", "--user", user,
                  "--read-only", "--read-only-tmpfs=false", "--tmpfs", f"/tmp:rw,size={tmp_limit.replace('Mi', 'm')},mode=1777",
                  "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                  "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
                  "-v", f"{conf}:/etc/thinkgate:ro", *env, image, *args],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = podman_out("inspect", "--format", "{{.State.Status}}", name)
            if state not in ("running", "created", "configured") or time.monotonic() > deadline:
                pytest.fail(f"the container is {state}, not ready:\n{logs(name)[-4000:]}")
            time.sleep(0.2)
        yield name, url, time.monotonic() - t0
    finally:
        subprocess.run(PODMAN + ["rm", "-f", "-t", "0", name], capture_output=True, timeout=60)


def podman_out(*args: str) -> str:
    return subprocess.run(PODMAN + list(args), capture_output=True, text=True, timeout=60).stdout.strip()


def logs(name: str) -> str:
    p = subprocess.run(PODMAN + ["logs", name], capture_output=True, text=True, timeout=60)
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def upstream() -> Iterator[ToolUpstream]:
    with ToolUpstream() as up:
        yield up


def test_the_image_runs_as_deployed_and_routes_with_its_built_in_onnx_export(image, upstream, tmp_path):
    assert podman_out("image", "inspect", "--format", "{{.Config.User}}", image).split(":")[0] == "10001"
    with run_container(image, tmp_path, upstream.api_base) as (name, url, ready_s):
        print(f"\npodman run -> /readyz 200 in {ready_s:.1f} s")
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz", timeout=5).json()
        assert ready["status"] == "ready", ready
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Hello from the tool upstream."
        # routed by the classifier: a difficulty was computed, with the ONNX embedder
        assert r.headers["x-thinkgate-route"] in ("fast", "reasoning")
        assert r.headers["x-thinkgate-difficulty"] not in ("", None)
        out = logs(name)
        # the export made at build time was found: nothing exported (or written) at start
        assert "exporting all-MiniLM" not in out, out[-3000:]
        whoami = podman_out("exec", name, "python", "-c", "import os; print(os.getuid(), os.getgid())")
        assert whoami == "10001 10001"
        # the root filesystem is read-only, /tmp is not
        probe = "import pathlib as p\nfor d in ('/opt/thinkgate-cache', '/app', '/tmp'):\n try: (p.Path(d) / 'w').write_text('x'); print(d, 'rw')\n except OSError: print(d, 'ro')"
        assert podman_out("exec", name, "python", "-c", probe).split("\n") == ["/opt/thinkgate-cache ro", "/app ro", "/tmp rw"]
        # nothing of the build's secrets or wheels was left in the image
        leftovers = podman_out("exec", name, "sh", "-c", "ls /run/secrets /wheels 2>/dev/null; find / -xdev -name 'torch-*.whl' 2>/dev/null")
        assert leftovers == ""


def test_sigterm_drains_the_streams_in_flight_and_exits_0_within_the_grace_period(image, upstream, tmp_path):
    grace = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    with run_container(image, tmp_path, upstream.api_base) as (name, url, _):
        got: list[list[str]] = [[] for _ in range(3)]
        first = threading.Event()
        errors: list[BaseException] = []

        def stream(i: int) -> None:
            try:
                body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
                with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            got[i].append(line[6:])
                            first.set()
            except BaseException as e:  # reported by the test below
                errors.append(e)
                first.set()

        streams = [threading.Thread(target=stream, args=(i,)) for i in range(len(got))]
        for t in streams:
            t.start()
        assert first.wait(30)
        t0 = time.monotonic()
        subprocess.run(PODMAN + ["kill", "--signal", "TERM", name], check=True, capture_output=True, timeout=30)
        code = subprocess.run(PODMAN + ["wait", name], capture_output=True, text=True, timeout=grace + 30).stdout.strip()
        took = time.monotonic() - t0
        for t in streams:
            t.join(30)
        print(f"\nSIGTERM -> exit {code} in {took:.1f} s, {len(streams)} streams in flight")
        assert not errors, errors
        assert code == "0", logs(name)[-3000:]
        assert took < grace
        # every stream ran to its end: all words, then [DONE]
        for events in got:
            assert events[-1] == "[DONE]"
            chunks = [json.loads(d) for d in events[:-1]]
            words = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
            assert words == "Hello from the tool upstream."
