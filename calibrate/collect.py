"""`thinkgate calibrate collect`: build an outcome table from your own prompts.

Each prompt (a prompt file or a decision-log export, see calibrate.prompts) is
sent to the configured fast and reasoning models through the gateway's own
clients (the reasoning model through DEER when it is configured so), both answers
are graded, and one outcome row (ARCHITECTURE.md) is appended to OUT:

  id, prompt, fast, strong (0..1), fast_cost, strong_cost (USD, config prices),
  fast_tokens, strong_tokens (prompt + completion), latency {fast, strong} (s),
  fast_confidence (Self-Ref confidence of the fast answer from its logprobs,
  selfref.mode of the config), grader, fast_answer, strong_answer, [judge, group]

  thinkgate calibrate collect --prompts gsm8k.jsonl --config pair.yaml -o gsm8k.outcomes.jsonl \\
      --grader math --limit 200 --max-tokens 256 --concurrency 2 --budget 0.50

Graders (--grader, or a `grader` column per row): math, choice, exact (against
the row's reference answer; auto picks one from the reference), judge-pairwise
and judge-absolute (an LLM judge, --judge MODEL: any configured model; see
policies.judge for the prompts and the rule that turns verdicts into scores).

Resumable: ids already in OUT (or in OUT's .missing.jsonl, rows whose judge
verdict could not be read) are skipped, and each row is appended and flushed
when it is done, so an interrupted run loses only the rows in flight. Rows whose
model call failed are written nowhere and are retried by the next run.
The cost estimate printed first is an upper bound (every completion at its
max_tokens); --budget USD / --budget-tokens N stop the run before a row that
could exceed them starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from calibrate.collect_cost import Budget, cost, prompt_tokens, text_tokens
from calibrate.collect_plan import GRADERS, Plan, describe, make_plan, with_instruction
from calibrate.prompts import PromptItem
from policies import grading, selfref
from policies.features import as_messages, conversation_text
from router.upstreams.base import CallContext, Upstream

__all__ = ["GRADERS", "Plan", "configure", "describe", "make_plan", "run", "with_instruction"]


def configure(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--prompts", required=True, help="prompt file (JSONL/CSV) or a decision-log export (JSONL)")
    p.add_argument("--config", help="thinkgate YAML (default: the embedded default)")
    p.add_argument("-o", "--out", required=True, help="outcome JSONL, appended to (resumable)")
    p.add_argument("--grader", choices=GRADERS, default="auto", help="used where a row has no grader column")
    p.add_argument("--judge", help="configured model name that judges (judge-* graders)")
    p.add_argument("--alias", default="auto", help="the route whose fast and reasoning models are compared")
    p.add_argument("--fast", help="configured model name of the fast side (default: the alias's)")
    p.add_argument("--strong", help="configured model name of the strong side (default: the alias's reasoning)")
    p.add_argument("--concurrency", type=int, default=2, help="prompts in flight")
    p.add_argument("--max-tokens", type=int, default=256, help="fast model's max_tokens")
    p.add_argument("--strong-max-tokens", type=int, help="strong model's max_tokens (default: --max-tokens)")
    p.add_argument("--judge-max-tokens", type=int, default=256, help="max_tokens of each judge call")
    p.add_argument("--instruction", default="auto",
                   help="added to each prompt sent (not stored): auto (a \\boxed{} answer for math, a letter for "
                        "choice), none, or the text itself")
    p.add_argument("--budget", type=float, help="stop before the spend (USD, config prices) could exceed this")
    p.add_argument("--budget-tokens", type=int, help="stop before the tokens could exceed this")
    p.add_argument("--limit", type=int, help="a seeded random sample of this many prompts")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    p.add_argument("--prompt-col", help="prompt column (default: detected)")
    p.add_argument("--reference-col", help="reference-answer column (default: reference|answer|gold|target)")
    p.add_argument("--timeout", type=float, help="seconds per model call (default: the model's configured timeout)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the cost estimate, call nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------- one row


@dataclass
class Answer:
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    choice: dict[str, Any] = field(default_factory=dict)
    probe_tokens: int = 0


async def ask(upstream: Upstream, body: dict[str, Any], timeout: float | None) -> Answer:
    ctx = CallContext(timeout=timeout)
    t0 = time.perf_counter()
    resp = await upstream.complete(body, ctx)
    out = Answer(latency=time.perf_counter() - t0)
    choice = (resp.get("choices") or [{}])[0]
    out.choice = choice
    out.text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
    usage = resp.get("usage") or {}
    # the gateway's accounting: what the server reports, estimated where it says nothing
    out.prompt_tokens = int(usage.get("prompt_tokens") or 0) or prompt_tokens(body["messages"])
    out.completion_tokens = int(usage.get("completion_tokens") or 0) or (text_tokens(out.text) if out.text else 0)
    if ctx.deer is not None:
        out.probe_tokens = ctx.deer.probe_tokens
    return out


class Collector:
    def __init__(self, plan: Plan, args: argparse.Namespace, clients: dict[str, Upstream]) -> None:
        self.plan, self.args, self.clients = plan, args, clients
        self.budget = Budget(args.budget, args.budget_tokens)
        self.stopped: str | None = None
        self.written = self.missing = self.failed = 0
        self.estimated_usd = 0.0  # the upper bounds of the rows that were written
        self.errors: list[str] = []

    def _body(self, name: str, messages: list[dict[str, Any]], max_tokens: int, logprobs: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.clients[name].model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        if logprobs and self.plan.settings.models[name].logprobs:
            body["logprobs"] = True
            # only the confidence-token mode reads the alternatives; llama.cpp's server
            # ranks the whole vocabulary for each one, which slows generation severalfold
            sr = self.plan.settings.selfref
            body["top_logprobs"] = sr.top_logprobs if sr.mode == "confidence_token" else 0
        return body

    async def row(self, item: PromptItem) -> dict[str, Any]:
        plan, args, models = self.plan, self.args, self.plan.settings.models
        kind = plan.kinds[item.id]
        messages = with_instruction(item.prompt, kind, args.instruction)
        strong_max = args.strong_max_tokens or args.max_tokens
        # one after the other: the two roles may share one local server, and a latency
        # measured while the other call waits in its queue would mean nothing
        fast = await ask(self.clients[plan.fast], self._body(plan.fast, messages, args.max_tokens, True), args.timeout)
        strong = await ask(self.clients[plan.strong], self._body(plan.strong, messages, strong_max, False), args.timeout)
        sr = plan.settings.selfref
        conf = selfref.confidence(fast.choice, sr.mode, quantile=sr.quantile)
        row: dict[str, Any] = {
            "id": item.id,
            "prompt": item.prompt,
            "fast": None,
            "strong": None,
            "fast_cost": cost(models[plan.fast].price, fast.prompt_tokens, fast.completion_tokens),
            "strong_cost": cost(models[plan.strong].price, strong.prompt_tokens, strong.completion_tokens),
            "fast_tokens": fast.prompt_tokens + fast.completion_tokens,
            "strong_tokens": strong.prompt_tokens + strong.completion_tokens,
            "latency": {"fast": round(fast.latency, 4), "strong": round(strong.latency, 4)},
            "fast_confidence": conf,
            "grader": kind,
        }
        if strong.probe_tokens:
            row["strong_probe_tokens"] = strong.probe_tokens  # DEER's own probes, not billed to the client
        if item.group is not None:
            row["group"] = item.group
        if item.reference is not None:
            row["reference"] = item.reference
        if kind in grading.KINDS:
            assert item.reference is not None
            row["fast"] = grading.grade(kind, fast.text, item.reference)
            row["strong"] = grading.grade(kind, strong.text, item.reference)
        else:
            from router.upstreams.judge import judge_pair

            assert plan.judge is not None
            jm = models[plan.judge]
            j = await judge_pair(
                self.clients[plan.judge],
                conversation_text(as_messages(item.prompt)),
                fast.text,
                strong.text,
                mode="pairwise" if kind == "judge-pairwise" else "absolute",
                reference=item.reference,
                max_tokens=args.judge_max_tokens,
                timeout=args.timeout,
                sequential=jm.provider == "llamacpp",
            )
            row["fast"], row["strong"] = j.fast, j.strong
            row["judge"] = {
                "model": plan.judge,
                "verdicts": j.verdicts,
                "cost": cost(jm.price, j.prompt_tokens, j.completion_tokens),
                "tokens": j.prompt_tokens + j.completion_tokens,
            }
            if j.missing:
                row["error"] = j.error
                row["judge"]["replies"] = j.replies
        row["fast_answer"] = fast.text
        row["strong_answer"] = strong.text
        return row

    def spent(self, row: dict[str, Any]) -> tuple[float, int]:
        j = row.get("judge") or {}
        usd = row["fast_cost"] + row["strong_cost"] + j.get("cost", 0.0)
        return usd, row["fast_tokens"] + row["strong_tokens"] + j.get("tokens", 0)

    async def run(self) -> None:
        from tqdm import tqdm

        plan = self.plan
        sem = asyncio.Semaphore(self.args.concurrency)
        bar = tqdm(total=len(plan.todo), desc="collect", unit="prompt", file=sys.stderr, disable=self.args.quiet)
        with open(plan.out, "a", encoding="utf-8") as out, open(plan.missing, "a", encoding="utf-8") as miss:

            async def one(item: PromptItem) -> None:
                async with sem:
                    if self.stopped:
                        return
                    est = plan.estimates[item.id]
                    if not self.budget.reserve(est):
                        self.stopped = "budget"
                        return
                    try:
                        row = await self.row(item)
                    except Exception as e:  # a failed call: reported, retried by the next run
                        self.budget.settle(est, 0.0, 0)
                        self.failed += 1
                        self.errors.append(f"{item.id}: {type(e).__name__}: {e}"[:300])
                        bar.update()
                        return
                    usd, tokens = self.spent(row)
                    self.budget.settle(est, usd, tokens)
                    self.estimated_usd += est.usd
                    fh = miss if row["fast"] is None else out
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    fh.flush()  # an interrupt loses only the rows in flight
                    if row["fast"] is None:
                        self.missing += 1
                    else:
                        self.written += 1
                    bar.set_postfix(usd=f"{self.budget.spent_usd:.4f}", refresh=False)
                    bar.update()

            try:
                await asyncio.gather(*(one(it) for it in plan.todo))
            finally:
                bar.close()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwind like Ctrl-C: stop the local model servers on the way out


def run(args: argparse.Namespace, clients: dict[str, Upstream] | None = None) -> int:
    """`clients` (configured name -> Upstream) replaces the configured models in tests."""
    plan = make_plan(args)
    print(describe(plan, args), file=sys.stderr)
    if args.dry_run or not plan.todo:
        if not plan.todo:
            print("collect: nothing to do", file=sys.stderr)
        return 0
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    from router.deer.clients import build_model
    from router.upstreams import LocalServers

    local = LocalServers()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    t0 = time.perf_counter()
    collector: Collector | None = None
    try:
        if clients is None:
            names = dict.fromkeys(n for n in (plan.fast, plan.strong, plan.judge) if n)
            clients = {n: build_model(n, plan.settings.models[n], local) for n in names}
        collector = Collector(plan, args, clients)
        used = clients

        async def main() -> None:
            try:
                await collector.run()
            finally:
                for c in used.values():
                    await c.close()

        asyncio.run(main())
    except KeyboardInterrupt:
        print("collect: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        local.stop()
        if collector is not None:
            _summary(collector, time.perf_counter() - t0)
    for err in collector.errors[:5]:
        print(f"collect: failed {err}", file=sys.stderr)
    return 1 if collector.failed and not (collector.written or collector.missing) else 0


def _summary(c: Collector, wall: float) -> None:
    done = c.written + c.missing
    summary = {
        "written": c.written,
        "missing": c.missing,
        "failed": c.failed,
        "stopped": c.stopped,
        "wall_s": round(wall, 2),
        "prompts_per_min": round(done / wall * 60, 2) if wall > 0 else None,
        "spent_usd": round(c.budget.spent_usd, 8),
        "spent_tokens": c.budget.spent_tokens,
        "estimated_usd": round(c.estimated_usd, 8),  # upper bound of the same rows
        "spent_over_estimate": round(c.budget.spent_usd / c.estimated_usd, 4) if c.estimated_usd else None,
    }
    if c.stopped == "budget":
        print(f"collect: stopped by the budget after ${c.budget.spent_usd:.6f} / {c.budget.spent_tokens} tokens", file=sys.stderr)
    print("collect: " + json.dumps(summary), file=sys.stderr)
    if summary["spent_over_estimate"] is not None and summary["spent_over_estimate"] > 1:
        # the bound is meant never to be passed: say so rather than let a figure mislead
        print(f"collect: spent {summary['spent_over_estimate']:.2f}x the up-front bound: a tokenizer or template "
              "this bound does not cover (please report it)", file=sys.stderr)
