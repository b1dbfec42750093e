"""cheap_features counts whole-word patterns from the text's words instead of one regex
scan per pattern (policies/features.py, _structure_counts). The shipped artifacts were
trained on the regex counts, so the fast path must give exactly those: checked here
against the plain regex counts on every prompt of ../shared/data (where CI has it) and on
fuzzed text built from the patterns' own words, odd case, Unicode letters and digits."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest

from policies.features import _STRUCTURE_RE, _WORD, _structure_counts

DATA = Path(os.environ.get("THINKGATE_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")


def regex_counts(text: str) -> list[int]:
    return [len(r.findall(text)) for r in _STRUCTURE_RE.values()]


def real_prompts() -> list[str]:
    out: list[str] = []
    for name, key in (("math/gsm8k.jsonl", "problem"), ("math/math.jsonl", "problem"), ("math/aime.jsonl", "problem"),
                      ("math/amc.jsonl", "problem"), ("prompts/arena-hard-v2.jsonl", "prompt")):
        if (DATA / name).exists():
            out += [str(json.loads(line).get(key, "")) for line in (DATA / name).open() if line.strip()]
    if (DATA / "prompts/mt-bench.jsonl").exists():
        out += [t for line in (DATA / "prompts/mt-bench.jsonl").open() if line.strip() for t in json.loads(line)["turns"]]
    for f in sorted((DATA / "routellm" / "mmlu").glob("*.csv"))[:20]:
        with f.open(newline="") as fh:
            out += [row["prompt"] for row in csv.DictReader(fh)]
    return out


def test_the_same_counts_on_every_real_prompt() -> None:
    prompts = real_prompts()
    if len(prompts) < 1000:
        pytest.skip(f"../shared/data is not beside the checkout ({len(prompts)} prompts found)")
    differ = [p[:80] for p in prompts if _structure_counts(p, _WORD.findall(p)) != regex_counts(p)]
    assert not differ, f"{len(differ)} of {len(prompts)} prompts differ, e.g. {differ[:3]}"


def test_the_same_counts_on_fuzzed_text() -> None:
    rng = random.Random(0)
    vocab = ["hours", "Hour", "HOURS", "per", "each", "more", "than", "twice", "half", "dollars", "cents", "$", "kg", "KM",
             "inches", "Inch", "and", "AND", "if", "then", "first", "Next", "3/4", "12", "1.5", "%", "percent", "percentage",
             "Tom", "Mary", "hours_2", "2hours", "and-then", "ſeconds", "Kg", "café", "naïve", "one", "Twenty", "dozen",
             "x", "?", ".", "!", ",", "\n", "  ", "_", "hourly", "perhaps", "remaining", "left", "lefty"]
    for _ in range(3000):
        text = "".join(rng.choice(vocab) + rng.choice([" ", "", ". ", "\n", "-"]) for _ in range(rng.randint(0, 40)))
        assert _structure_counts(text, _WORD.findall(text)) == regex_counts(text), text
