"""Leave-one-source-out on real data, a subsample: the prior trained on two sources and
scored cold on the third's pair table, with alpha and width chosen inside each fold.
It prints the figures (pytest -s) so a run shows what the prior carries; the README's
table is the full-size run of the same command."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from calibrate.cli import main
from tests.components import missing

DATA = Path(os.environ.get("THINKGATE_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (DATA / "routellm").exists(), reason="../shared/data is not present")]


def _subsample(src: Path, out: Path, n: int) -> None:
    rows = src.read_text().splitlines()
    out.write_text("\n".join(rows[:: max(1, len(rows) // n)][:n]) + "\n")


def test_leave_one_source_out_on_a_subsample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not (importlib.util.find_spec("model2vec") and importlib.util.find_spec("skeletoken")):
        missing("model2vec and skeletoken (pip install 'thinkgate[static]', in the test extra)")
    tables = {}
    for name, src in (("routellm-gsm8k", DATA / "routellm" / "gsm8k_responses.csv"), ("routellm-mmlu", DATA / "routellm" / "mmlu")):
        full = tmp_path / f"{name}-full.jsonl"
        assert main(["convert", str(src), "-o", str(full)]) == 0
        tables[name] = tmp_path / f"{name}.jsonl"
        _subsample(full, tables[name], 500)
    corpus = tmp_path / "corpus.jsonl"
    args = ["prior", "corpus", "--rated", f"math-levels={DATA / 'math' / 'math.jsonl'}:level", "-o", str(corpus)]
    for name, path in tables.items():
        args += ["--table", f"{name}={path}"]
    assert main(args) == 0
    capsys.readouterr()
    args = ["prior", "loso", "--corpus", str(corpus), "--embedder", "static", "--no-cache", "--quiet", "--bootstrap", "200"]
    for name, path in tables.items():
        args += ["--pairs", f"{name}={path}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])["results"]
    with capsys.disabled():
        print("\nleave one source out (subsample of 500 per table; trained on the other table + MATH levels):")
        for line in out.strip().splitlines()[:-1]:
            print(" ", line)
    assert [r["held_out"] for r in res] == sorted(tables)
    for r in res:
        assert "math-levels" in r["trained_on"] and r["held_out"] not in r["trained_on"]
        lo, hi = r["prior"]["ci"]
        assert lo <= r["prior"]["apgr"] <= hi and r["n"] == 500
        assert r["embedding_dim"] in (0, 256)
