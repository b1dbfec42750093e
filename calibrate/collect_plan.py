"""What a `thinkgate calibrate collect` run will do before it calls any model: the
prompts still to run (resuming from OUT and its .missing.jsonl), each prompt's
grader, the instruction added to what the models are sent, and the cost bound
printed first (calibrate/collect_cost.py)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibrate import prompts as prompt_files
from calibrate.collect_cost import RowEstimate, row_estimate
from calibrate.prompts import PromptItem
from policies import grading
from policies.features import as_messages
from router import config

GRADERS = ("auto", "math", "choice", "exact", "judge-pairwise", "judge-absolute")
# added to the prompt sent to the models (not to the stored prompt) so the answer can be found
INSTRUCTIONS = {
    "math": "Please reason step by step, and put your final answer within \\boxed{}.",
    "choice": "Answer with the letter of the correct option.",
}


def with_instruction(prompt: str | list[dict[str, Any]], kind: str, mode: str) -> list[dict[str, Any]]:
    messages = [dict(m) for m in as_messages(prompt)]
    text = INSTRUCTIONS.get(kind) if mode == "auto" else None if mode == "none" else mode
    if text and messages and isinstance(messages[-1].get("content"), str):
        messages[-1]["content"] = f"{messages[-1]['content']}\n\n{text}"
    return messages


@dataclass
class Plan:
    settings: config.Settings
    fast: str
    strong: str
    judge: str | None
    todo: list[PromptItem]
    kinds: dict[str, str]
    estimates: dict[str, RowEstimate]
    done: int  # rows already in OUT
    out: Path
    missing: Path
    skipped: dict[str, int] = field(default_factory=dict)


def missing_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".missing.jsonl")


def done_ids(path: Path) -> set[str]:
    """Ids in an outcome file; a last line cut off by a hard kill is removed first,
    so the rows appended next stay one JSON object a line."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        print(f"collect: dropped an incomplete last line of {path} (an interrupted write)", file=sys.stderr)
        data = data[:cut]
    ids = set()
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{n}: not an outcome row; is -o the right file?") from None
    return ids


def grader_for(item: PromptItem, default: str, judge: str | None) -> str:
    kind = item.grader or default
    if kind not in GRADERS:
        raise ValueError(f"prompt {item.id!r}: unknown grader {kind!r} (have: {', '.join(GRADERS)})")
    if kind == "auto":
        if item.reference is not None:
            kind = grading.auto_kind(item.reference)
        elif judge is not None:
            kind = "judge-pairwise"
        else:
            raise ValueError(f"prompt {item.id!r} has no reference answer: pass --judge MODEL to grade it with a judge")
    if kind in grading.KINDS and item.reference is None:
        raise ValueError(f"prompt {item.id!r}: grader {kind!r} needs a reference answer (column reference|answer)")
    if kind.startswith("judge") and judge is None:
        raise ValueError(f"grader {kind!r} needs --judge MODEL (a configured model name)")
    if kind == "choice" and grading.choice_letter(item.reference or "") is None:
        raise ValueError(f"prompt {item.id!r}: reference {item.reference!r} is not a choice letter")
    return kind


def make_plan(args: argparse.Namespace) -> Plan:
    try:
        settings = config.load(args.config)
    except config.ConfigError as e:
        raise ValueError(str(e)) from None
    route = settings.routes.get(args.alias)
    if route is None:
        raise ValueError(f"no route alias {args.alias!r} in the configuration (have: {', '.join(settings.routes)})")
    fast = args.fast or route.fast
    strong = args.strong or route.reasoning
    for role, name in (("fast", fast), ("strong", strong), ("judge", args.judge)):
        if name is not None and name not in settings.models:
            raise ValueError(f"--{role} {name!r} is not a configured model (have: {', '.join(settings.models)})")
    if args.concurrency < 1 or args.max_tokens < 1:
        raise ValueError("--concurrency and --max-tokens must be at least 1")
    pset = prompt_files.load(args.prompts, prompt_col=args.prompt_col, reference_col=args.reference_col)
    items = pset.items
    if args.limit is not None and args.limit < len(items):
        keep = set(random.Random(args.seed).sample(range(len(items)), args.limit))
        items = [it for i, it in enumerate(items) if i in keep]
    kinds = {it.id: grader_for(it, args.grader, args.judge) for it in items}
    out = Path(args.out)
    missing = missing_path(out)
    done = done_ids(out) | done_ids(missing)
    todo = [it for it in items if it.id not in done]
    m = settings.models
    strong_max = args.strong_max_tokens or args.max_tokens
    estimates = {
        it.id: row_estimate(
            with_instruction(it.prompt, kinds[it.id], args.instruction),
            fast=m[fast].price,
            strong=m[strong].price,
            max_tokens=args.max_tokens,
            strong_max_tokens=strong_max,
            judge=m[args.judge].price if args.judge else None,
            judge_mode=kinds[it.id].removeprefix("judge-") if kinds[it.id].startswith("judge") else None,
            judge_max_tokens=args.judge_max_tokens,
            # a DEER model gets a thinking prompt on top of the messages: part of its prompt
            strong_system=m[strong].deer.thinking_prompt if m[strong].reasoning and m[strong].deer is not None else None,
        )
        for it in todo
    }
    return Plan(settings, fast, strong, args.judge, todo, kinds, estimates, len(items) - len(todo), out, missing, pset.skipped)


def describe(plan: Plan, args: argparse.Namespace) -> str:
    usd = sum(e.usd for e in plan.estimates.values())
    tokens = sum(e.tokens for e in plan.estimates.values())
    kinds: dict[str, int] = {}
    for it in plan.todo:
        kinds[plan.kinds[it.id]] = kinds.get(plan.kinds[it.id], 0) + 1
    lines = [
        f"collect: {len(plan.todo)} prompts to run ({plan.done} already in {plan.out}); "
        f"fast={plan.fast} ({plan.settings.models[plan.fast].model}), strong={plan.strong} "
        f"({plan.settings.models[plan.strong].model})" + (f", judge={plan.judge}" if plan.judge else ""),
        "collect: graders " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())),
        f"collect: estimated cost at most ${usd:.4f} ({tokens:,} tokens, every completion at max_tokens)",
    ]
    for why, n in plan.skipped.items():
        lines.append(f"collect: skipped {n} records {why}")
    if args.budget is not None and usd > args.budget:
        lines.append(f"collect: the budget ${args.budget:.4f} may stop the run before all prompts are done")
    return "\n".join(lines)
