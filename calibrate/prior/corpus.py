"""Outcome corpora: many models' scores on the same items, one row per (item, model).

A row is `{"source", "item", "prompt", "model", "score"}` (score in 0..1, 1 = a good
answer). Sources are read from public result dumps that keep per-item scores:

- AlpacaEval (`tatsu-lab/alpaca_eval`, `results/<model>/<annotator>/annotations.json`):
  805 instructions, a judge's preference of each model's output over a baseline's.
  Each (model, annotator) is one column: annotators use different baselines.
- any thinkgate outcome table (RouteLLM's GSM8K / MMLU after `calibrate convert`, tables
  from `calibrate collect`): two models, `fast` and `strong`, named after the table.
- rated items (`read_rated`): a JSONL whose items carry a difficulty rating instead of
  outcomes, e.g. MATH-500's competition levels 1-5. Their rows have the reserved model
  name `RATING` and the rating as score; the prior's targets take the rating as the
  item's difficulty (what an item-response fit would estimate from outcomes).

`SOURCES` records where each comes from and under which licence; the builder writes
them into the corpus card so an artifact trained on it can say what it was made of."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibrate.outcomes import OutcomeError

SOURCES: dict[str, dict[str, str]] = {
    "alpaca_eval": {
        "what": "AlpacaEval per-instruction judge preferences over a baseline, one column per (model, annotator)",
        "where": "tatsu-lab/alpaca_eval, results/*/*/annotations.json",
        "licence": "code Apache-2.0; data CC BY-NC 4.0 (research use)",
    },
    "routellm-gsm8k": {
        "what": "GSM8K test: correctness of Mixtral-8x7B-Instruct and GPT-4-1106",
        "where": "lm-sys/RouteLLM routellm/evals/gsm8k (../shared/data/routellm/gsm8k_responses.csv)",
        "licence": "Apache-2.0",
    },
    "math-levels": {
        "what": "MATH-500: 500 competition problems with the MATH dataset's difficulty level (1-5), no outcomes",
        "where": "iie-ycx/DEER data/math (../shared/data/math/math.jsonl), from hendrycks/math via PRM800K's MATH-500",
        "licence": "MIT",
    },
    "routellm-mmlu": {
        "what": "MMLU (57 subjects): correctness of Mixtral-8x7B-Instruct and GPT-4-1106",
        "where": "lm-sys/RouteLLM routellm/evals/mmlu/responses (../shared/data/routellm/mmlu/)",
        "licence": "Apache-2.0",
    },
}


RATING = "@rating"  # the model name of a rated item's row: its score is the rating, not an outcome


@dataclass(frozen=True)
class Row:
    source: str
    item: str
    prompt: Any  # str | [messages]
    model: str
    score: float


def read_alpaca_eval(root: str | Path, *, source: str = "alpaca_eval") -> Iterator[Row]:
    """Rows from an AlpacaEval checkout (or its `results/` folder). The preference is
    in [1, 2] (2 = the model's output preferred to the baseline's); score = pref - 1.
    Items are keyed by instruction text, so every annotator's file joins on it."""
    root = Path(root)
    results = root / "results" if (root / "results").is_dir() else root
    files = sorted(results.glob("*/*/annotations.json")) + sorted(results.glob("*/*/*/annotations.json"))
    if not files:
        raise OutcomeError(f"{root}: no results/<model>/<annotator>/annotations.json files (an alpaca_eval checkout?)")
    seen: set[tuple[str, str]] = set()
    for f in files:
        try:
            entries = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise OutcomeError(f"{f}: cannot read ({e})") from None
        for e in entries:
            pref = e.get("preference")
            instruction = e.get("instruction")
            if pref is None or not instruction:
                continue
            try:
                score = float(pref) - 1.0
            except (TypeError, ValueError):
                continue
            if score != score or not 0.0 <= score <= 1.0:  # NaN or out of range: a failed judgement
                continue
            model = f"{e.get('generator_2', f.parent.parent.name)}@{e.get('annotator', f.parent.name)}"
            key = (model, instruction)
            if key in seen:  # the same (model, annotator) saved twice under two folders
                continue
            seen.add(key)
            yield Row(source, _item_id(instruction), instruction, model, score)


def read_outcome_table(path: str | Path, *, source: str, fast: str | None = None, strong: str | None = None) -> Iterator[Row]:
    """Rows from a thinkgate outcome JSONL: two columns, named `<source>:fast` and
    `<source>:strong` unless named."""
    from calibrate.outcomes import read

    o = read(path)
    fast = fast or f"{source}:fast"
    strong = strong or f"{source}:strong"
    for i in range(len(o)):
        item = str(o.ids[i])
        yield Row(source, item, o.prompts[i], fast, float(o.fast[i]))
        yield Row(source, item, o.prompts[i], strong, float(o.strong[i]))


def read_rated(path: str | Path, *, source: str, field: str, prompt: str = "problem") -> Iterator[Row]:
    """Rows from a JSONL of rated items (`prompt` field: the text; `field`: a number,
    higher = harder, e.g. MATH's `level`). A NaN rating is skipped; a missing or
    non-numeric one is an error naming its line."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                text, rating = d[prompt], float(d[field])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise OutcomeError(f"{path}:{n}: no {prompt!r} text with a numeric {field!r}") from None
            if rating == rating and isinstance(text, str) and text:
                yield Row(source, _item_id(text), text, RATING, rating)


def _item_id(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def write(rows: Iterable[Row], out: str | Path) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"source": r.source, "item": r.item, "prompt": r.prompt, "model": r.model, "score": r.score},
                                ensure_ascii=False) + "\n")
            n += 1
    return n


def read(path: str | Path) -> list[Row]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                rows.append(Row(str(d["source"]), str(d["item"]), d["prompt"], str(d["model"]), float(d["score"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise OutcomeError(f"{path}:{n}: not a corpus row ({e})") from None
    return rows


def card(rows: list[Row]) -> dict[str, Any]:
    """Per source: items, models, outcomes (or ratings), and where it came from."""
    out: dict[str, Any] = {}
    for src in sorted({r.source for r in rows}):
        mine = [r for r in rows if r.source == src]
        rated = sum(r.model == RATING for r in mine)
        out[src] = {
            "items": len({r.item for r in mine}), "models": len({r.model for r in mine if r.model != RATING}),
            "outcomes": len(mine) - rated, **({"ratings": rated} if rated else {}),
            **SOURCES.get(src, {"what": "a collected outcome table", "where": "local", "licence": "the collector's"}),
        }
    return out
