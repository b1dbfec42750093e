"""The prompts `thinkgate calibrate collect` runs: a prompt file or a decision-log export.

A prompt file is JSONL or CSV/TSV, one prompt a row:
  id (or uid / question_id / unique_id; else the row number),
  the prompt (the first of calibrate.outcomes.PROMPT_COLUMNS: a string, or a
  message list, as JSON in a CSV cell; MT-Bench `turns` keeps the first turn),
  an optional reference answer (reference / answer / gold / target),
  an optional grader kind (grader), an optional group (group / subject / category).

A decision-log export (`GET /dashboard/api/export.jsonl`) is recognised by its
records' fields; it has prompts only when the gateway ran with
`decisions.store_prompt: true`, cut to `decisions.prompt_chars`. Records without
a prompt, errors and cache hits are skipped and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibrate.outcomes import PROMPT_COLUMNS, OutcomeError, _rows

ID_COLUMNS = ("id", "uid", "question_id", "unique_id")
REFERENCE_COLUMNS = ("reference", "answer", "gold", "target")
GROUP_COLUMNS = ("group", "subject", "category")
_DECISION_KEYS = {"route", "alias", "created", "endpoint"}


@dataclass
class PromptItem:
    id: str
    prompt: str | list[dict[str, Any]]
    reference: str | None = None
    grader: str | None = None
    group: str | None = None


@dataclass
class PromptSet:
    items: list[PromptItem]
    source: str  # "prompts" | "decisions"
    skipped: dict[str, int] = field(default_factory=dict)  # why -> rows left out


def load(path: str | Path, *, prompt_col: str | None = None, reference_col: str | None = None) -> PromptSet:
    path = Path(path)
    if not path.is_file():
        raise OutcomeError(f"{path}: no such file")
    rows = list(_rows(path))
    if not rows:
        raise OutcomeError(f"{path}: no rows")
    if isinstance(rows[0], dict) and _DECISION_KEYS <= set(rows[0]):
        out = _from_decisions(path, rows)
    else:
        out = _from_prompts(path, rows, prompt_col, reference_col)
    seen: set[str] = set()
    for item in out.items:
        if item.id in seen:
            raise OutcomeError(f"{path}: duplicate id {item.id!r} (collect resumes by id)")
        seen.add(item.id)
    if not out.items:
        why = ", ".join(f"{n} {k}" for k, n in out.skipped.items()) or "none usable"
        raise OutcomeError(f"{path}: no prompts to collect ({why})")
    return out


def _from_prompts(path: Path, rows: list[Any], prompt_col: str | None, reference_col: str | None) -> PromptSet:
    first = rows[0]
    if not isinstance(first, dict):
        raise OutcomeError(f"{path}:1: each row must be an object with a prompt")
    pcol = prompt_col or next((c for c in PROMPT_COLUMNS if c in first), None)
    if pcol is None or pcol not in first:
        raise OutcomeError(f"{path}: no prompt column (looked for {', '.join(PROMPT_COLUMNS)}; use --prompt-col)")
    rcol = reference_col or next((c for c in REFERENCE_COLUMNS if c in first), None)
    if reference_col and reference_col not in first:
        raise OutcomeError(f"{path}: no column {reference_col!r} (have: {', '.join(first)})")
    idcol = next((c for c in ID_COLUMNS if c in first), None)
    gcol = next((c for c in GROUP_COLUMNS if c in first), None)
    items = []
    for n, r in enumerate(rows, 1):
        where = f"{path}:{n + (1 if path.suffix in ('.csv', '.tsv') else 0)}"
        prompt = _prompt(r.get(pcol), pcol, where)
        ref = r.get(rcol) if rcol else None
        grader = r.get("grader") or None
        items.append(
            PromptItem(
                id=str(r[idcol]) if idcol and r.get(idcol) not in (None, "") else f"{path.stem}-{n}",
                prompt=prompt,
                reference=None if ref in (None, "") else str(ref),
                grader=str(grader) if grader else None,
                group=str(r[gcol]) if gcol and r.get(gcol) not in (None, "") else None,
            )
        )
    return PromptSet(items, "prompts")


def _prompt(value: Any, col: str, where: str) -> str | list[dict[str, Any]]:
    if isinstance(value, str) and value[:1] == "[" and col in ("messages", "turns"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise OutcomeError(f"{where}: {col} is not a JSON list") from None
    if col == "turns" and isinstance(value, list) and value and isinstance(value[0], str):
        value = value[0]  # MT-Bench: the first turn is a self-contained question
    if isinstance(value, list):
        if not value or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
            raise OutcomeError(f"{where}: {col} must be a list of {{role, content}} messages")
        return value
    if not isinstance(value, str) or not value.strip():
        raise OutcomeError(f"{where}: empty or missing prompt in column {col!r}")
    return value


def _from_decisions(path: Path, rows: list[dict[str, Any]]) -> PromptSet:
    items, skipped = [], {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for n, r in enumerate(rows, 1):
        if not r.get("prompt"):
            skip("without a prompt (decisions.store_prompt was off)")
        elif (r.get("status") or 200) >= 400:
            skip("failed requests")
        elif r.get("route") == "cache":
            skip("cache hits")
        else:
            items.append(PromptItem(id=str(r.get("id") or f"{path.stem}-{n}"), prompt=str(r["prompt"]), group=r.get("alias")))
    return PromptSet(items, "decisions", skipped)
