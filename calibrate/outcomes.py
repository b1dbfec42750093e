"""Outcome files (the calibrate/ input contract of ARCHITECTURE.md) and the
converters that produce them from other table shapes.

One JSON object per line:
  {"id", "prompt": str | [messages], "fast": 0..1, "strong": 0..1,
   "fast_cost"?, "strong_cost"?, "fast_tokens"?, "strong_tokens"?, "group"?}
`group` (optional, e.g. the MMLU subject) is only used by reports.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.features import as_messages

PROMPT_COLUMNS = ("prompt", "messages", "question", "input", "query", "turns", "problem")
_TRUE = {"true", "1", "yes", "y", "correct", "t"}
_FALSE = {"false", "0", "no", "n", "incorrect", "f", ""}
_OPTIONAL = ("fast_cost", "strong_cost", "fast_tokens", "strong_tokens", "group")
_CORE = ("id", "prompt", "fast", "strong")
_LABEL_CHARS = 200  # a longer string is a text (an answer, a verdict), not a label to split by


def _labels(row: dict[str, Any]) -> dict[str, Any]:
    """The optional fields, and every other short scalar field (a `category`, a
    `source`, a tenant), which `evaluate --split-by FIELD` may split on; answers
    and other long texts are not kept (a 14k-row table would hold them twice)."""
    out = {k: row[k] for k in _OPTIONAL if k in row}
    for k, v in row.items():
        if k in _CORE or k in out:
            continue
        if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= _LABEL_CHARS):
            out[k] = v
    return out


class OutcomeError(ValueError):
    """A malformed outcome or input table; the message names file and line."""


@dataclass
class Outcomes:
    ids: list[str]
    prompts: list[Any]  # str | list[message dict]
    fast: list[float]
    strong: list[float]
    extra: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def messages(self, i: int) -> list[dict[str, Any]]:
        return as_messages(self.prompts[i])

    def subset(self, idx: Iterable[int]) -> Outcomes:
        idx = list(idx)
        return Outcomes(
            [self.ids[i] for i in idx],
            [self.prompts[i] for i in idx],
            [self.fast[i] for i in idx],
            [self.strong[i] for i in idx],
            [self.extra[i] for i in idx] if self.extra else [],
        )

    def digest(self) -> str:
        """sha256 over the canonical rows: identifies the training data."""
        h = hashlib.sha256()
        for i in range(len(self)):
            row = [self.ids[i], self.prompts[i], self.fast[i], self.strong[i]]
            h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
            h.update(b"\n")
        return h.hexdigest()


def score(value: Any, where: str) -> float:
    """A correctness/quality value as a float in [0, 1]."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        text = str(value).strip().lower()
        if text in _TRUE:
            return 1.0
        if text in _FALSE:
            return 0.0
        try:
            v = float(text)
        except ValueError:
            raise OutcomeError(f"{where}: cannot read {value!r} as a score (true/false or 0..1)") from None
    if not 0.0 <= v <= 1.0:
        raise OutcomeError(f"{where}: score {v} is outside 0..1 (rescale it first)")
    return v


def read(path: str | Path) -> Outcomes:
    path = Path(path)
    out = Outcomes([], [], [], [], [])
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise OutcomeError(f"{where}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise OutcomeError(f"{where}: each line must be a JSON object")
            if "prompt" in row and "fast" not in row and "strong" not in row:
                # a prompt file, not an outcome table: the models' scores come from collect
                raise OutcomeError(
                    f"{where}: a prompt without outcomes (no 'fast' or 'strong' score); this looks like a prompt file: "
                    f"grade both models on it first with `thinkgate calibrate collect --prompts {path} -o outcomes.jsonl`"
                )
            for key in ("prompt", "fast", "strong"):
                if key not in row:
                    raise OutcomeError(f"{where}: missing '{key}'")
            prompt = row["prompt"]
            if not isinstance(prompt, (str, list)) or not prompt:
                raise OutcomeError(f"{where}: 'prompt' must be a non-empty string or message list")
            rid = str(row.get("id", n))
            if rid in seen:
                raise OutcomeError(f"{where}: duplicate id {rid!r}")
            seen.add(rid)
            out.ids.append(rid)
            out.prompts.append(prompt)
            out.fast.append(score(row["fast"], f"{where}: fast"))
            out.strong.append(score(row["strong"], f"{where}: strong"))
            out.extra.append(_labels(row))
    if not out.ids:
        raise OutcomeError(f"{path}: no outcomes")
    return out


def write(rows: Iterable[dict[str, Any]], path: str | Path | None) -> int:
    fh = sys.stdout if path in (None, "-") else open(path, "w", encoding="utf-8")
    n = 0
    try:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if fh is not sys.stdout:
            fh.close()
    return n


# -- converters ------------------------------------------------------------------


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.suffix in (".csv", ".jsonl", ".json", ".tsv")))
        elif p.exists():
            files.append(p)
        else:
            raise OutcomeError(f"{p}: no such file or directory")
    return files


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise OutcomeError(f"{path}:{n}: not JSON ({e.msg})") from None
        return
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ",")


def _score_columns(row: dict[str, Any], prompt_col: str) -> list[str]:
    """Columns holding per-model correctness: every value reads as a score and
    the name is not a response/prompt column (RouteLLM: one per model)."""
    cols = []
    for k, v in row.items():
        if k == prompt_col or k.endswith(("_response", "_cost", "_tokens")) or k in ("id", "group", "subject", "category"):
            continue
        try:
            score(v, k)
        except OutcomeError:
            continue
        cols.append(k)
    return cols


def convert(
    paths: Iterable[str | Path],
    *,
    fast: str | None = None,
    strong: str | None = None,
    prompt: str | None = None,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Rows of CSV/TSV/JSONL tables -> outcome rows.

    The prompt column is `prompt` or the first of PROMPT_COLUMNS present; the
    fast/strong columns are named, or detected as the two correctness columns
    (RouteLLM's one-column-per-model layout), the lower-scoring one taken as
    fast. Each file's stem becomes the `group` and the id prefix."""
    from tqdm import tqdm

    files = _expand(paths)
    tables: list[tuple[Path, list[dict[str, Any]]]] = []
    for path in tqdm(files, unit="file", desc="reading", disable=not progress or len(files) < 2, file=sys.stderr):
        rows = list(_rows(path))
        if rows:
            tables.append((path, rows))
    if not tables:
        raise OutcomeError("no rows in the input tables")
    first = tables[0][1][0]
    pcol = prompt or next((c for c in PROMPT_COLUMNS if c in first), None)
    if pcol is None or pcol not in first:
        raise OutcomeError(f"{tables[0][0]}: no prompt column (looked for {', '.join(PROMPT_COLUMNS)}; use --prompt-col)")
    fcol, scol = fast, strong
    if fcol is None and scol is None and "fast" in first and "strong" in first:
        fcol, scol = "fast", "strong"  # already in the outcome shape
    if fcol is None or scol is None:
        cands = [c for c in _score_columns(first, pcol) if c not in (fcol, scol)]
        if fcol is None and scol is None and len(cands) == 2:
            # Decided once over all rows of all files: the lower-scoring model is the fast one.
            means = {c: sum(score(r.get(c), c) for _, rows in tables for r in rows) for c in cands}
            fcol, scol = sorted(cands, key=lambda c: means[c])
            if progress:
                print(f"convert: fast = {fcol!r}, strong = {scol!r} (by mean score)", file=sys.stderr)
        elif len(cands) == 1 and (fcol is None) != (scol is None):
            fcol, scol = (cands[0], scol) if fcol is None else (fcol, cands[0])
        else:
            raise OutcomeError(
                f"{tables[0][0]}: cannot tell the fast and strong columns apart (candidates: {cands}); "
                "use --fast-col and --strong-col"
            )
    for path, rows in tables:
        for c in (pcol, fcol, scol):
            if c not in rows[0]:
                raise OutcomeError(f"{path}: no column {c!r} (have: {', '.join(rows[0])})")
        for n, r in enumerate(rows):
            p = r[pcol]
            if isinstance(p, str) and p[:1] == "[" and pcol in ("messages", "turns"):
                p = json.loads(p)
            if pcol == "turns" and isinstance(p, list) and p and isinstance(p[0], str):
                p = p[0]
            where = f"{path}:{n + 2}"
            out: dict[str, Any] = {
                "id": str(r.get("id") or f"{path.stem}-{n}"),
                "prompt": p,
                "fast": score(r[fcol], f"{where}: {fcol}"),
                "strong": score(r[scol], f"{where}: {scol}"),
                "group": str(r.get("group") or r.get("subject") or path.stem),
            }
            for k in ("fast_cost", "strong_cost", "fast_tokens", "strong_tokens"):
                if r.get(k) not in (None, ""):
                    out[k] = float(r[k]) if "cost" in k else int(float(r[k]))
            yield out
