import json
import os
from pathlib import Path

import pytest

from calibrate.cli import main
from calibrate.outcomes import OutcomeError, convert, read, write

DATA = Path(os.environ.get("THINKGATE_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
ROUTELLM = DATA / "routellm"

needs_data = pytest.mark.skipif(not ROUTELLM.exists(), reason="../shared/data/routellm is not present")


@needs_data
def test_convert_routellm_gsm8k(tmp_path, capsys):
    out = tmp_path / "gsm8k.jsonl"
    assert main(["convert", str(ROUTELLM / "gsm8k_responses.csv"), "-o", str(out)]) == 0
    o = read(out)
    assert len(o) == 1319
    # SOURCES.md: weak (Mixtral) 63.7 %, strong (GPT-4) 85.8 %
    assert sum(o.fast) / len(o) == pytest.approx(0.637, abs=0.002)
    assert sum(o.strong) / len(o) == pytest.approx(0.858, abs=0.002)
    assert o.prompts[0].startswith("Janet")
    assert "Mixtral" in capsys.readouterr().err  # says which column became "fast"


@needs_data
def test_convert_routellm_mmlu_directory(tmp_path):
    out = tmp_path / "mmlu.jsonl"
    n = write(convert([ROUTELLM / "mmlu"], progress=False), out)
    assert n == 14042
    o = read(out)
    assert sum(o.fast) / n == pytest.approx(0.681, abs=0.002)
    assert sum(o.strong) / n == pytest.approx(0.806, abs=0.002)
    # the column roles are decided once for all files, not per subject
    groups = {e["group"] for e in o.extra}
    assert len(groups) == 57


def test_convert_generic_csv_and_jsonl(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("question,small_ok,big_ok,notes\nWhat is 2+2?,1,1,x\nProve Fermat.,0,1,y\n")
    rows = list(convert([csv], prompt="question", fast="small_ok", strong="big_ok", progress=False))
    assert [r["fast"] for r in rows] == [1.0, 0.0]
    assert rows[1]["prompt"] == "Prove Fermat."

    jl = tmp_path / "chat.jsonl"
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    jl.write_text(json.dumps({"id": "a", "messages": msgs, "fast": 0.2, "strong": 0.9, "fast_cost": 0.1}) + "\n")
    (row,) = convert([jl], progress=False)
    assert row["prompt"] == msgs and row["fast_cost"] == 0.1 and row["id"] == "a"


def test_convert_refuses_ambiguous_columns(tmp_path):
    csv = tmp_path / "three.csv"
    csv.write_text("prompt,a,b,c\nx,1,0,1\n")
    with pytest.raises(OutcomeError, match="--fast-col"):
        list(convert([csv], progress=False))


def test_read_validates(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "prompt": "x", "fast": 2, "strong": 1}\n')
    with pytest.raises(OutcomeError, match="outside 0..1"):
        read(bad)
    bad.write_text('{"id": "1", "prompt": "x", "fast": 1}\n')
    with pytest.raises(OutcomeError, match="missing 'strong'"):
        read(bad)
