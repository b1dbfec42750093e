"""Prompt files for `thinkgate calibrate collect`, derived from the public data in
../shared/data (never copied into the repo; see its SOURCES.md).

  gsm8k-steps   the calculator steps of GSM8K's reference solutions (`<<48/2=24>>`)
                as arithmetic questions with their results: real quantities at a
                difficulty the packaged 135M/270M models can partly solve
  mt-bench      MT-Bench's first turns (no reference answers: for a judge)

    python scripts/derive_prompts.py gsm8k-steps ../shared/data/math/gsm8k.jsonl -o steps.jsonl
    python scripts/derive_prompts.py mt-bench ../shared/data/prompts/mt-bench.jsonl -o mt.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

STEP = re.compile(r"<<([^=<>]+)=([^<>]+)>>")


def gsm8k_steps(path: Path) -> list[dict]:
    out, seen = [], set()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for k, (expr, result) in enumerate(STEP.findall(row.get("cot") or "")):
            expr = expr.strip()
            # whole-number results of expressions with an operator: a question with one answer
            if not re.fullmatch(r"-?\d+", result.strip()) or not re.search(r"\d\s*[-+*/]\s*\(?\d", expr) or expr in seen:
                continue
            seen.add(expr)
            # spaced, in the source's ASCII operators (the small models read "*" better than "×")
            shown = re.sub(r"\s*([-+*/])\s*", r" \1 ", expr).strip()
            out.append({"id": f"{row['id']}-step{k}", "prompt": f"What is {shown}?", "answer": result.strip(), "group": str(row["id"])})
    return out


def mt_bench(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"id": f"mt-{r['question_id']}", "prompt": r["turns"][0], "group": r["category"]} for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["gsm8k-steps", "mt-bench"])
    p.add_argument("source", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows = gsm8k_steps(args.source) if args.kind == "gsm8k-steps" else mt_bench(args.source)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} prompts -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
