"""The data the commands read: outcome files and gateway outcome logs -> one
Outcomes table, prompts -> embeddings and cheap features, the CV groups of
repeated prompts; and `convert`, which writes outcome files from other tables."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from calibrate.commands.common import _err


def load_outcomes(paths: list[str], tenant: str | None = None) -> Any:
    """Read and concatenate outcome files and gateway outcome logs (a log's JSONL
    or redis://...?stream=KEY; calibrate/outcome_log.py), ids prefixed when several."""
    from calibrate.outcome_log import is_log, read_log
    from calibrate.outcomes import Outcomes, read

    parts = [read_log(p, tenant=tenant) if is_log(p) else read(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    out = Outcomes([], [], [], [], [])
    for path, o in zip(paths, parts):
        out.ids += [f"{Path(path).stem}:{i}" for i in o.ids]
        out.prompts += o.prompts
        out.fast += o.fast
        out.strong += o.strong
        out.extra += o.extra or [{} for _ in o.ids]
    return out


def featurise(o: Any, embedder: str, cache: bool, progress: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    from calibrate.embed import embed_prompts
    from policies.features import cheap_features
    from router.embedding.encoders import make_encoder

    enc = make_encoder(embedder)
    E = embed_prompts(o.prompts, encoder=enc, use_cache=cache, progress=progress)
    F = np.asarray([cheap_features(o.messages(i)) for i in range(len(o))], np.float64)
    return E, F, enc.id


def _groups(o: Any) -> np.ndarray | None:
    """Rows repeating a prompt (as the router sees it) share a CV fold; None
    when every prompt is distinct (calibrate/folds.py says why)."""
    from calibrate.folds import prompt_groups
    from policies.features import conversation_text

    return prompt_groups([conversation_text(o.messages(i)) for i in range(len(o))])


def _convert_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="CSV/TSV/JSONL files or directories (e.g. routellm/mmlu/)")
    p.add_argument("-o", "--out", default="-", help="outcome JSONL to write (default stdout)")
    p.add_argument("--prompt-col", help="prompt column (default: prompt, messages, question, ...)")
    p.add_argument("--fast-col", help="fast model's score column (default: detected)")
    p.add_argument("--strong-col", help="strong model's score column (default: detected)")


def _convert_run(args: argparse.Namespace) -> int:
    from calibrate.outcomes import convert, write

    n = write(convert(args.inputs, fast=args.fast_col, strong=args.strong_col, prompt=args.prompt_col), args.out)
    _err(f"wrote {n} outcomes to {args.out if args.out != '-' else 'stdout'}")
    return 0


convert = SimpleNamespace(configure=_convert_configure, run=_convert_run)


def domains(o: Any, field: str | None, folds: int) -> np.ndarray | None:
    """--split-by FIELD: each row's value of that field as an integer id (None
    without the option); too few values for the folds, or rows without the
    field, are a clear error."""
    if not field:
        return None
    names = [(e or {}).get(field) for e in (o.extra or [{} for _ in o.ids])]
    if any(x is None for x in names):
        raise ValueError(f"--split-by {field}: {sum(x is None for x in names)} outcomes have no {field!r} field")
    names = [str(x) for x in names]
    uniq = sorted(set(names))
    if len(uniq) < folds:
        raise ValueError(f"--split-by {field}: {len(uniq)} distinct values are too few for {folds}-fold CV (at least {folds})")
    ids = {g: i for i, g in enumerate(uniq)}
    return np.asarray([ids[x] for x in names], np.int64)
