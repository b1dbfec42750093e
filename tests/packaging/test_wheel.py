"""The wheel and sdist `python -m build` makes (sdist first, the wheel built from it):
`twine check` passes, they carry what runs (the default router artifact, the dashboard's
static files, the embedded config, the ONNX export code), and the wheel, installed
into a fresh venv outside the checkout, serves the embedded default and runs
`thinkgate calibrate evaluate`.

The heavy dependencies (torch, llama-cpp-python, the SmolLM2 GGUF package, ...) are
not installed again: the fresh venv sees this interpreter's site-packages through a
.pth line, after its own. thinkgate itself comes only from the wheel: a .pth line adds
a directory to sys.path without processing the .pth files in it, so the editable
install's path hook there never runs (the test checks where each module came from)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.components import missing
from tests.e2e.serve import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CARRIED = [
    "share/thinkgate/models/default/meta.json",
    "share/thinkgate/models/default/weights.npz",
    "share/thinkgate/models/static-default/meta.json",  # the default static encoder's artifact
    "share/thinkgate/models/static-default/weights.npz",
    "router/dashboard/static/index.html",
    "router/dashboard/static/dashboard.js",
    "router/embedded.yaml",
    "router/embedding/encoders.py",  # the ONNX export
    "calibrate/commands/artifacts.py",  # `calibrate export-onnx`
]


def tools_python() -> str:
    venv = Path(os.environ.get("THINKGATE_IMAGE_VENV") or Path.home() / ".cache" / "thinkgate-venvs" / "image")
    if not (venv / "bin" / "twine").exists():
        missing("build and twine are not installed: run scripts/setup_image_tools.sh")
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    p = subprocess.run([tools_python(), "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    wheel = next(out.glob("*.whl"))
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1e6:.2f} MB")
    return out


def test_twine_check_passes(dist):
    p = subprocess.run([str(Path(tools_python()).parent / "twine"), "check", "--strict", *map(str, sorted(dist.iterdir()))],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("PASSED") == 2


def test_the_wheel_and_the_sdist_carry_what_runs(dist):
    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    for want in CARRIED:
        assert any(n == want or n.endswith(".data/data/" + want) for n in names), want
    assert not any(n.startswith(("tests/", "bench/", "models/")) for n in names)
    with tarfile.open(next(dist.glob("*.tar.gz"))) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    assert {"models/default/weights.npz", "models/static-default/weights.npz", "router/dashboard/static/index.html", "requirements.lock"} <= members


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    v = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(v)], check=True, timeout=300)
    site = Path(subprocess.run([str(v / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_heavy_dependencies.pth").write_text("\n".join(sorted(here)) + "\n")
    wheel = next(dist.glob("*.whl"))
    p = subprocess.run([str(v / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    return v


def run_outside(venv: Path, cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_thinkgate_comes_from_the_wheel_not_the_checkout(venv, tmp_path):
    code = ("import router, policies.difficulty as d, calibrate, importlib.metadata as m; "
            "print(router.__file__); print(calibrate.__file__); print(d.MODELS_DIR); print(m.distribution('thinkgate')._path)")  # fmt: skip
    p = run_outside(venv, tmp_path, str(venv / "bin" / "python"), "-c", code)
    assert p.returncode == 0, p.stderr
    paths = p.stdout.split()
    assert all(str(venv) in x and str(ROOT) not in x for x in paths), paths
    assert (Path(paths[2]) / "default" / "meta.json").is_file()


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[str]:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        missing("llama-cpp-python is not installed: run scripts/install.sh")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "thinkgate"), "serve", "--port", str(port)], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"thinkgate serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not ready in 240 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_installed_wheel_serves_the_embedded_default(served):
    r = httpx.post(f"{served}/v1/chat/completions", timeout=120,
                   json={"model": "fast", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi."}]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    routed = httpx.post(f"{served}/v1/chat/completions", timeout=300,
                        json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "What is 2 + 2?"}]})  # fmt: skip
    assert routed.status_code == 200, routed.text
    assert routed.headers["x-thinkgate-difficulty"]  # the packaged default artifact scored it
    dash = httpx.get(f"{served}/dashboard", timeout=10, follow_redirects=True)
    assert dash.status_code == 200 and "<html" in dash.text.lower()


def test_the_installed_wheel_runs_calibrate_evaluate(venv, tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        hard = i % 2 == 0
        words = ["prove", "integral", "theorem"] if hard else ["capital", "colour", "name"]
        rows.append({"id": str(i), "prompt": f"{rng.choice(words)} item {i} of {rng.choice(words)}",
                     "fast": float(rng.random() < 0.3), "strong": float(rng.random() < (0.9 if hard else 0.3))})  # fmt: skip
    table = tmp_path / "outcomes.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = run_outside(venv, tmp_path, str(venv / "bin" / "thinkgate"), "calibrate", "evaluate", "--outcomes", str(table),
                    "--cv", "3", "--json", "--quiet", "--embedder", "hash", "--no-cache", "--bootstrap", "100")  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert 0.0 <= summary["apgr"] <= 1.5 and summary["ci"]["verdict"]
