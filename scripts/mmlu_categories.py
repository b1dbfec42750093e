"""Add MMLU's four subject categories to an outcome table, for a coarse domain shift:

    python scripts/mmlu_categories.py mmlu.jsonl -o mmlu.cat.jsonl
    thinkgate calibrate evaluate --outcomes mmlu.cat.jsonl --cv 4 --split-by category

With `--cv 4 --split-by category` every fold trains on three categories and is scored on the
fourth (STEM, humanities, social sciences, other), a larger shift than holding out subjects
(neighbouring subjects such as high-school and college physics then stay on one side).
The mapping is the one of the MMLU paper (Hendrycks et al., 2021) and its reference code.
Rows are read from the outcome table's `group` (`mmlu_<subject>`, as `calibrate convert
--from routellm` writes it) or `subject` field; a row whose subject is unknown is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_STEM = """abstract_algebra anatomy astronomy college_biology college_chemistry college_computer_science
college_mathematics college_physics computer_security conceptual_physics electrical_engineering
elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science
high_school_mathematics high_school_physics high_school_statistics machine_learning"""
_HUMANITIES = """formal_logic high_school_european_history high_school_us_history high_school_world_history
international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy prehistory
professional_law world_religions"""
_SOCIAL = """econometrics high_school_geography high_school_government_and_politics high_school_macroeconomics
high_school_microeconomics high_school_psychology human_sexuality professional_psychology public_relations
security_studies sociology us_foreign_policy"""
_OTHER = """business_ethics clinical_knowledge college_medicine global_facts human_aging management marketing
medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology"""

CATEGORY = {s: cat for cat, names in (("stem", _STEM), ("humanities", _HUMANITIES), ("social", _SOCIAL), ("other", _OTHER))
            for s in names.split()}


def category(row: dict) -> str:
    subject = str(row.get("subject") or row.get("group") or "").removeprefix("mmlu_")
    if subject not in CATEGORY:
        raise ValueError(f"row {row.get('id')!r}: unknown MMLU subject {subject!r}")
    return CATEGORY[subject]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path, help="an MMLU outcome JSONL")
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args(argv)
    with a.table.open() as f:  # not str.splitlines(): it also splits at U+2028 inside prompts
        rows = [json.loads(line) for line in f if line.strip()]
    with a.out.open("w") as f:
        for row in rows:
            f.write(json.dumps({**row, "category": category(row)}) + "\n")
    counts: dict[str, int] = {}
    for row in rows:
        counts[category(row)] = counts.get(category(row), 0) + 1
    print(f"{len(rows)} rows -> {a.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
