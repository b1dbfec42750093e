"""The labelled data of `thinkgate calibrate selfref`, and grading answers against it.

An `Item` is one prompt with its gold answer, read from a JSONL file
(`load_items`) or generated as arithmetic of growing size (`arith_items`); a
`Record` is what the fast model made of it: its output, whether `grade` found it
right, and its confidence in every Self-Ref mode.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from policies.confidence_tags import strip_confidence_token
from policies.final_answer import answer_text


@dataclass
class Item:
    id: str
    prompt: str
    answer: str


@dataclass
class Record:
    id: str
    gold: str
    output: str = ""
    pred: str | None = None
    correct: bool = False
    conf: dict[str, float | None] = field(default_factory=dict)
    completion_tokens: int = 0
    latency_s: float = 0.0
    score_us: float = 0.0  # CPU time to score this response in every mode
    error: str | None = None


# ---------------------------------------------------------------- data


def arith_items(n: int, seed: int = 0, max_operand: int = 40) -> list[Item]:
    """Deterministic arithmetic prompts whose operands grow with the index, from
    single digits up to `max_operand` (products use operands a quarter as big).

    The default range suits SmolLM2-135M: it gets single digits mostly right and
    two-digit sums mostly wrong, about half right overall."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        hi = 4 + round((max_operand - 4) * i / max(n - 1, 1))
        op = rng.choice("+-*")
        if op == "*":
            hi = max(4, hi // 4)
        a, b = rng.randint(0, hi), rng.randint(0, hi)
        if op == "-" and b > a:
            a, b = b, a
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        items.append(Item(f"arith-{seed}-{i}", f"What is {a} {op} {b}?", str(value)))
    return items


def load_items(path: str | Path, limit: int | None = None, seed: int = 0) -> list[Item]:
    rows = []
    with open(path) as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            prompt = row.get("problem") or row.get("question") or row.get("prompt")
            if not isinstance(prompt, str) or "answer" not in row:
                raise ValueError(f"{path}:{n + 1}: needs 'problem' (or 'question'/'prompt') and 'answer'")
            rows.append(Item(str(row.get("id", f"row-{n}")), prompt, str(row["answer"])))
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    return rows


# ---------------------------------------------------------------- grading


def normalize(answer: str) -> str:
    s = answer.strip().strip("$").replace(",", "").replace("\\!", "").strip()
    s = s.rstrip(".").strip()
    try:
        x = float(s)
    except ValueError:
        return re.sub(r"\s+", " ", s.lower())
    if math.isfinite(x) and x == int(x):
        return str(int(x))
    return repr(x)


def grade(output: str, gold: str) -> tuple[str | None, bool]:
    pred = answer_text(strip_confidence_token(output))
    if pred is None:
        return None, False
    return pred, normalize(pred) == normalize(gold)
