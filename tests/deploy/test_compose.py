"""docker-compose.yml brought up with podman-compose, not only parsed. The images this
machine cannot pull are swapped by tests/deploy/compose/override.yml: the vLLM server
(an NVIDIA GPU and vllm/vllm-openai) by a fake OpenAI server run from the gateway's own
image, Redis by Debian's redis-server on the local base. The gateway is the image
scripts/build_image.sh built, with the compose file's config, volumes, network and
healthcheck. The stack starts, the gateway's own healthcheck passes, and a request is
answered once by the upstream, then from the cache in the compose Redis."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.components import missing
from tests.deploy.test_image import image  # noqa: F401  (the module-scoped build fixture)

# the image build (cached by content hash) can take many minutes on a cold cache: beyond the
# suite's 300 s per-test timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "compose"
# what tests/deploy/test_image.py passes on the command line, for podman-compose's calls
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def compose_tool() -> str:
    venv = Path(os.environ.get("THINKGATE_IMAGE_VENV") or Path.home() / ".cache" / "thinkgate-venvs" / "image")
    exe = venv / "bin" / "podman-compose"
    if not exe.exists():
        missing("podman-compose is not installed: run scripts/setup_image_tools.sh")
    return str(exe)


def redis_image(env: dict[str, str]) -> str:
    """Debian's redis-server on the gateway image's local base, tagged by the hash of
    its Dockerfile and base (built once)."""
    base = os.environ.get("THINKGATE_IMAGE_BASE", "localhost/thinkgate-base:bookworm")
    base_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", base],
                             capture_output=True, text=True, env=env, check=True).stdout.strip()  # fmt: skip
    dockerfile = HERE / "redis.Dockerfile"
    ref = "localhost/thinkgate-test-redis:" + hashlib.sha256(dockerfile.read_bytes() + base_id.encode()).hexdigest()[:16]
    if subprocess.run(["podman", "image", "exists", ref], env=env).returncode != 0:
        p = subprocess.run(
            ["buildah", "bud", "--isolation", "chroot", "--network", "host", "--build-arg", f"BASE={base}",
             "-t", ref, "-f", str(dockerfile), str(HERE)],
            capture_output=True, text=True, timeout=900, env=env,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return ref


@pytest.fixture
def stack(image: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], list[str], str]]:  # noqa: F811
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    key = f"tg-{uuid.uuid4().hex}"
    env.update(THINKGATE_TEST_IMAGE=image, THINKGATE_TEST_REDIS_IMAGE=redis_image(env), THINKGATE_TEST_KEY=key)
    # docker-compose.yml refuses to start without keys (`${THINKGATE_API_KEYS:?...}`, checked
    # before the override is merged): a user sets it exactly like this
    env["THINKGATE_API_KEYS"] = key
    project = f"tgtest{uuid.uuid4().hex[:8]}"
    cmd = [compose_tool(), "-p", project, "-f", str(ROOT / "docker-compose.yml"), "-f", str(HERE / "override.yml")]
    up = subprocess.run(cmd + ["up", "-d"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield env, cmd, key
    finally:
        down = subprocess.run(cmd + ["down", "-t", "5"], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
        if down.returncode != 0:
            print(down.stdout[-2000:], down.stderr[-2000:])


def containers(env: dict[str, str], cmd: list[str]) -> dict[str, str]:
    """service -> container name"""
    p = subprocess.run(cmd + ["ps", "--format", "{{.Names}} {{.Labels}}"], cwd=ROOT, capture_output=True, text=True, env=env)
    out = {}
    for line in p.stdout.splitlines():
        name = line.split()[0]
        for service in ("thinkgate", "redis", "vllm"):
            if f"com.docker.compose.service:{service}" in line or f"com.docker.compose.service={service}" in line:
                out[service] = name
    return out


def wait_ready(url: str, auth: dict[str, str], env: dict[str, str], name: str) -> None:
    deadline = time.monotonic() + 180
    ready: dict = {}
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", headers=auth, timeout=3)
            ready = r.json()
            # the cache's Redis is a check of its own: ready with it, not degraded
            if r.status_code == 200 and not ready.get("degraded"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True, env=env)
    pytest.fail(f"the gateway did not get ready: {ready}\n{(logs.stdout + logs.stderr)[-3000:]}")


def test_the_compose_stack_starts_and_caches_a_request_in_its_redis(stack):
    env, cmd, key = stack
    names = containers(env, cmd)
    assert set(names) == {"thinkgate", "redis", "vllm"}, names
    port = subprocess.run(["podman", "port", names["thinkgate"], "8000"], capture_output=True, text=True, env=env)
    url = "http://" + port.stdout.strip().splitlines()[0].replace("0.0.0.0", "127.0.0.1")
    auth = {"authorization": f"Bearer {key}"}
    wait_ready(url, auth, env, names["thinkgate"])
    # the compose file's own healthcheck, run the way the engine runs it
    health = subprocess.run(["podman", "healthcheck", "run", names["thinkgate"]], capture_output=True, text=True, env=env)
    assert health.returncode == 0, health.stdout + health.stderr

    # temperature 0: only greedy answers are cached (a sampled one is not, by design)
    body = {"model": "fast", "temperature": 0,
            "messages": [{"role": "user", "content": f"What is the capital of France? {uuid.uuid4()}"}]}  # fmt: skip
    first = httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=60)
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["content"] == "Paris is the capital of France."
    assert first.headers["x-thinkgate-cache"] == "miss"

    def upstream_calls() -> int:
        p = subprocess.run(["podman", "exec", names["vllm"], "python", "-c",
                            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/stats').read().decode())"],
                           capture_output=True, text=True, env=env)  # fmt: skip
        return int(json.loads(p.stdout)["chat"])

    def cached_reply() -> httpx.Response:
        """The repeat, answered from the cache without an upstream call. A Redis reply
        over the cache's 20 ms budget is a miss by design (seen under load), so up to
        five tries; every hit must leave the upstream's count alone."""
        for _ in range(5):
            before = upstream_calls()
            r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "Paris is the capital of France."
            if r.headers["x-thinkgate-cache"] == "exact":
                assert upstream_calls() == before
                return r
            time.sleep(0.5)
        pytest.fail("no exact cache hit in five repeats")

    assert upstream_calls() >= 1
    cached_reply()
    keys = subprocess.run(["podman", "exec", names["redis"], "redis-cli", "--scan", "--pattern", "thinkgate:cache:*"],
                          capture_output=True, text=True, env=env)  # fmt: skip
    entries = [k for k in keys.stdout.split() if not k.endswith(":epoch")]
    assert entries, keys.stdout + keys.stderr  # the entry is in the compose Redis
    # the entry is in the compose Redis, not the gateway's memory: a restarted gateway
    # still answers from it
    subprocess.run(["podman", "restart", "-t", "5", names["thinkgate"]], check=True, capture_output=True, env=env)
    wait_ready(url, auth, env, names["thinkgate"])
    cached_reply()
