"""The whole decision on a labelled set, through a running gateway (issue 17).

    python bench/system.py --gateway http://127.0.0.1:8000 --arith 60 --plot out/system.png
    python bench/system.py --gateway URL --data ../shared/data/math/gsm8k.jsonl --limit 200 --mt-bench 40

Two live passes per prompt, both streamed (so time to first token is measured):
  fast       alias `--probe-alias` (a route with threshold 1.0: the classifier runs
             and records P, the fast model answers, Self-Ref scores it at threshold
             0 so nothing escalates), read from the debug record
  reasoning  the same alias forced to the reasoning route
Every mode is then the per-prompt combination of those two measured answers:
always fast, always reasoning, random at matched shares, classifier alone
(P >= cut), Self-Ref alone (escalate below a confidence cut), the joint policy
(calibrate.joint: fitted on half the prompts, every curve measured on the other
half) and, with --mt-bench, the joint policy with stickiness on MT-Bench's two
turns (route flips between turn 1 and turn 2 with and without `sticky`).
A kept fast answer costs its fast tokens; an escalated one both answers; the
latency of an escalated one is the fast pass's TTFT-to-decision plus the
reasoning answer (--stream-mode prefix: the fast pass's first token; buffer:
its whole answer). Prints quality, reasoning share, tokens, cost, system APGR,
p50/p99 latency and TTFT per mode; --plot saves the quality-cost plot.

A real deployment: serve thinkgate with your fast and reasoning models, add a
route `bench: {threshold: 1.0}` beside `auto`, and run this script against it
with your labelled set (--data, JSONL with problem|question|prompt and answer).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from calibrate import joint  # noqa: E402
from calibrate.selfref_data import Item, arith_items, grade, load_items  # noqa: E402
from policies.conversation import decide  # noqa: E402
from policies.joint import JointPolicy, outcome  # noqa: E402

ARITH = "Answer with just the number."
MATH = "Solve the problem. End with a line of the form 'The answer is N.'"


def ask(client: httpx.Client, url: str, alias: str, messages: list[dict[str, Any]], route: str | None,
        max_tokens: int) -> dict[str, Any]:
    """One streamed request: text, TTFT, latency, the decision record."""
    headers = {"x-thinkgate-debug": "1", "x-thinkgate-selfref-threshold": "0", "x-thinkgate-cache-control": "no-cache, no-store"}
    if route:
        headers["x-thinkgate-force-route"] = route
    body = {"model": alias, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, text, decision, usage = None, [], {}, {}
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"gateway answered {r.status_code}: {r.read()[:300]!r}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ch = json.loads(line[6:])
            if "error" in ch:  # a failure after the stream started
                raise RuntimeError(f"gateway stream failed: {ch['error'].get('message')}")
            for c in ch.get("choices") or []:
                piece = (c.get("delta") or {}).get("content")
                if piece:
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
                    text.append(piece)
            decision = ch.get("thinkgate") or decision
            usage = ch.get("usage") or usage
    total = time.perf_counter() - t0
    return {"text": "".join(text), "ttft": ttft if ttft is not None else total, "latency": total, "decision": decision,
            "tokens": int(usage.get("completion_tokens") or 0)}


def run_passes(url: str, alias: str, items: list[Item], instruction: str, max_tokens: int, timeout: float) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(timeout=timeout) as client:
        for i, it in enumerate(items):
            msgs = [{"role": "user", "content": f"{it.prompt}\n{instruction}"}]
            fast = ask(client, url, alias, msgs, None, max_tokens)
            strong = ask(client, url, alias, msgs, "reasoning", max_tokens)
            d = fast["decision"]
            if d.get("route") != "fast":
                raise RuntimeError(f"alias {alias!r} did not answer on the fast route ({d.get('route')}): give it threshold 1.0")
            rows.append({
                "id": it.id, "prompt": msgs[0]["content"], "p": d.get("difficulty"), "conf": d.get("confidence"),
                "fast": float(grade(fast["text"], it.answer)[1]), "strong": float(grade(strong["text"], it.answer)[1]),
                "fast_tokens": fast["tokens"], "strong_tokens": strong["tokens"],
                "fast_ttft": fast["ttft"], "fast_latency": fast["latency"],
                "strong_ttft": strong["ttft"], "strong_latency": strong["latency"],
            })
            print(f"\r{i + 1}/{len(items)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def mode_table(rows: list[dict[str, Any]], policy: dict[str, Any] | None, cuts: dict[str, float], prices: tuple[float, float],
               stream_mode: str, seed: int) -> dict[str, dict[str, float]]:
    """Per mode: where each prompt ends (fast / escalated / reasoning) and what that cost."""
    n = len(rows)
    p = np.array([r["p"] for r in rows], float)
    c = np.array([np.nan if r["conf"] is None else r["conf"] for r in rows], float)
    ends: dict[str, list[str]] = {
        "always fast": ["fast"] * n,
        "always reasoning": ["reasoning"] * n,
        "classifier alone": ["reasoning" if x >= cuts["p"] else "fast" for x in p],
        "Self-Ref alone": ["escalated" if (not np.isnan(y) and y < cuts["conf"]) else "fast" for y in c],
    }
    if policy is not None:
        pol = JointPolicy.from_lists(**policy)
        ends["joint"] = [outcome(pol, float(x), None if np.isnan(y) else float(y)) for x, y in zip(p, c)]
    share = sum(e != "fast" for e in ends.get("joint", ends["classifier alone"])) / n
    picked = set(random.Random(seed).sample(range(n), round(share * n)))  # exactly the matched share
    ends["random (matched share)"] = ["reasoning" if i in picked else "fast" for i in range(n)]
    out = {}
    for mode, e in ends.items():
        q, tok, cost, lat, ttft = [], [], [], [], []
        for r, where in zip(rows, e):
            decide_s = r["fast_ttft"] if stream_mode == "prefix" else r["fast_latency"]
            if where == "fast":
                q.append(r["fast"]); tok.append(r["fast_tokens"]); cost.append(r["fast_tokens"] * prices[0])
                lat.append(r["fast_latency"]); ttft.append(r["fast_ttft"] if stream_mode == "prefix" else r["fast_latency"])
            elif where == "reasoning":
                q.append(r["strong"]); tok.append(r["strong_tokens"]); cost.append(r["strong_tokens"] * prices[1])
                lat.append(r["strong_latency"]); ttft.append(r["strong_ttft"])
            else:
                q.append(r["strong"]); tok.append(r["fast_tokens"] + r["strong_tokens"])
                cost.append(r["fast_tokens"] * prices[0] + r["strong_tokens"] * prices[1])
                lat.append(decide_s + r["strong_latency"]); ttft.append(decide_s + r["strong_ttft"])
        out[mode] = {
            "quality": float(np.mean(q)), "reasoning_share": sum(x != "fast" for x in e) / n,
            "tokens": float(np.mean(tok)), "cost": float(np.mean(cost)),
            "p50_s": statistics.median(lat), "p99_s": float(np.quantile(lat, 0.99)),
            "ttft_p50_s": statistics.median(ttft), "ttft_p99_s": float(np.quantile(ttft, 0.99)),
        }
    return out


def mt_bench_flips(url: str, alias: str, n: int, max_tokens: int, policy: dict[str, Any] | None, margin: float,
                   timeout: float, path: Path, cut: float | None = None) -> dict[str, Any]:
    """Route flips between MT-Bench's turn 1 and turn 2 (P from the gateway's
    classifier on each turn, turn 2 with the fast model's own turn-1 answer),
    for the classifier's route at `cut`: the joint policy's p_hi when it is
    finite, else `cut`, else the median turn-1 P (a cut where flips can happen
    at all; a p_hi of infinity routes every turn fast and flips nothing)."""
    convs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:n]
    pairs = []
    with httpx.Client(timeout=timeout) as client:
        for i, cv in enumerate(convs):
            t1 = [{"role": "user", "content": cv["turns"][0]}]
            a1 = ask(client, url, alias, t1, None, max_tokens)
            t2 = t1 + [{"role": "assistant", "content": a1["text"]}, {"role": "user", "content": cv["turns"][1]}]
            a2 = ask(client, url, alias, t2, None, 1)
            pairs.append((float(a1["decision"].get("difficulty")), float(a2["decision"].get("difficulty"))))
            print(f"\rmt-bench {i + 1}/{len(convs)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    p_hi = policy["p_hi"] if policy and math.isfinite(policy["p_hi"]) else None
    used = p_hi if p_hi is not None else cut if cut is not None else float(np.median([a for a, _ in pairs]))
    return {"conversations": len(convs), "cut": used, "margin": margin, "flips": count_flips(pairs, used, margin), "p": pairs}


def count_flips(pairs: list[tuple[float, float]], cut: float, margin: float) -> dict[str, int]:
    """Conversations whose turn-2 route differs from turn 1's, per conversation mode."""
    flips = {"independent": 0, "sticky": 0, "monotone": 0}
    for p1, p2 in pairs:
        r1: Any = "reasoning" if p1 >= cut else "fast"
        r2: Any = "reasoning" if p2 >= cut else "fast"
        flips["independent"] += r1 != r2
        for mode in ("sticky", "monotone"):
            final, _ = decide(mode, r1, r2, p2, cut, margin)  # type: ignore[arg-type]
            flips[mode] += r1 != final
    return flips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateway", required=True, help="a running thinkgate, e.g. http://127.0.0.1:8000")
    ap.add_argument("--probe-alias", default="bench", help="route with threshold 1.0 (P recorded, fast answers)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--arith", type=int, metavar="N", help="N generated arithmetic prompts of growing size")
    src.add_argument("--data", help="labelled JSONL (problem|question|prompt, answer)")
    src.add_argument("--from-rows", help="re-analyse a --save-rows file without calling the gateway")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--mt-bench", type=int, default=0, metavar="N", help="also measure route flips on N MT-Bench conversations")
    ap.add_argument("--mt-bench-file", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "prompts" / "mt-bench.jsonl"))
    ap.add_argument("--margin", type=float, default=0.3, help="routing.margin for the sticky comparison")
    ap.add_argument("--mt-cut", type=float, help="P cut for the MT-Bench flips when the joint policy has none "
                                                 "(default: the median turn-1 P)")
    ap.add_argument("--target-share", type=float, default=0.5, help="the joint policy's fitted reasoning share")
    ap.add_argument("--family", choices=["linear", "bins"], default="linear", help="the joint policy family (calibrate joint --family)")
    ap.add_argument("--bins", type=int, default=2, help="--family bins: P bins")
    ap.add_argument("--model", metavar="ARTIFACT",
                    help="P from this artifact (e.g. one `calibrate train` made from your outcomes) instead of the "
                         "gateway's record; needs rows with their prompt")
    ap.add_argument("--learn", action="store_true",
                    help="P from a classifier trained on the fit half's outcomes (calibrate.joint.learned_p), "
                         "not the gateway's artifact: the router after it has learned this traffic")
    ap.add_argument("--fast-price", type=float, default=0.4, help="USD per 1M output tokens, fast model")
    ap.add_argument("--strong-price", type=float, default=4.0, help="USD per 1M output tokens, reasoning model")
    ap.add_argument("--stream-mode", choices=["prefix", "buffer"], default="prefix")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-rows", help="write the per-prompt measurements here (JSON)")
    ap.add_argument("--plot", help="save the quality-cost plot here (PNG)")
    args = ap.parse_args(argv)

    url = args.gateway.rstrip("/")
    t0 = time.perf_counter()
    if args.from_rows:
        rows = json.loads(Path(args.from_rows).read_text())
    else:
        items = arith_items(args.arith, args.seed) if args.arith else load_items(args.data, args.limit, args.seed)
        rows = run_passes(url, args.probe_alias, items, ARITH if args.arith else MATH, args.max_tokens, args.timeout)
        if args.save_rows:
            Path(args.save_rows).parent.mkdir(parents=True, exist_ok=True)
            Path(args.save_rows).write_text(json.dumps(rows, indent=1))
    empty = {k: sum(r[f"{k}_tokens"] == 0 for r in rows) for k in ("fast", "strong")}
    if any(empty.values()):
        print(f"bench/system: empty answers: {empty} (a model without a chat template?)", file=sys.stderr)
    if any(r["p"] is None for r in rows):
        print("bench/system: the gateway recorded no P (is a classifier loaded?)", file=sys.stderr)
        return 2
    prices = (args.fast_price / 1e6, args.strong_price / 1e6)
    d = joint.Data(np.array([r["p"] for r in rows], float),
                   np.array([np.nan if r["conf"] is None else r["conf"] for r in rows], float),
                   np.array([r["fast"] for r in rows], float), np.array([r["strong"] for r in rows], float),
                   np.array([r["fast_tokens"] * prices[0] for r in rows]), np.array([r["strong_tokens"] * prices[1] for r in rows]))
    if args.model:
        if any("prompt" not in r for r in rows):
            print("bench/system: --model needs rows with their prompt (saved by this version's --save-rows)", file=sys.stderr)
            return 2
        from calibrate.outcomes import Outcomes

        o = Outcomes([r["id"] for r in rows], [r["prompt"] for r in rows], list(d.fast), list(d.strong), [])
        d.p = joint.score_with(args.model, o, "auto")
        for r, x in zip(rows, d.p):
            r["p"] = float(x)
    if args.learn:
        if any("prompt" not in r for r in rows):
            print("bench/system: --learn needs rows with their prompt (saved by this version's --save-rows)", file=sys.stderr)
            return 2
        d.p = joint.learned_p([r["prompt"] for r in rows], d.fast, d.strong, seed=args.seed)
        for r, x in zip(rows, d.p):
            r["p"] = float(x)  # the mode table reads P from the rows
    fit = joint.fit(d, {"target_share": args.target_share}, bins=args.bins, seed=args.seed, family=args.family)
    # the table is on the held-out half too; single signals cut at the joint policy's share
    held = [rows[i] for i in fit["eval_idx"]]
    hp = np.array([r["p"] for r in held], float)
    hc = np.array([np.nan if r["conf"] is None else r["conf"] for r in held], float)
    share = fit["policy_eval"]["share"] if "policy" in fit else args.target_share
    cuts = {"p": float(np.quantile(hp, 1 - share)) if share > 0 else float("inf"),
            "conf": float(np.nanquantile(hc, share)) if not np.isnan(hc).all() else 0.0}
    table = mode_table(held, fit.get("policy"), cuts, prices, args.stream_mode, args.seed)

    print(f"{len(rows)} prompts, fast quality {d.fast.mean():.3f}, reasoning quality {d.strong.mean():.3f} "
          f"({time.perf_counter() - t0:.0f} s); modes below on the {len(held)} held-out prompts")
    print(f"{'mode':<24}{'quality':>8}{'reason%':>8}{'tokens':>8}{'cost $/1k':>10}{'p50 s':>7}{'p99 s':>7}{'ttft50':>7}{'ttft99':>7}")
    for mode, m in table.items():
        print(f"{mode:<24}{m['quality']:>8.3f}{100 * m['reasoning_share']:>7.0f}%{m['tokens']:>8.1f}{1000 * m['cost']:>10.5f}"
              f"{m['p50_s']:>7.2f}{m['p99_s']:>7.2f}{m['ttft_p50_s']:>7.2f}{m['ttft_p99_s']:>7.2f}")
    a = fit["apgr"]
    print(f"system APGR on {fit['n_eval']} held-out prompts (joint fitted on {fit['n_fit']}): joint {a['joint']:.3f}, "
          f"classifier alone {a['classifier']:.3f}, Self-Ref alone {a['selfref']:.3f}, random 0.500")
    if "policy" in fit:
        print(f"joint policy: {json.dumps(fit['policy'])}")
    if args.mt_bench:
        mt = mt_bench_flips(url, args.probe_alias, args.mt_bench, args.max_tokens, fit.get("policy"), args.margin,
                            args.timeout, Path(args.mt_bench_file), args.mt_cut)
        print(f"MT-Bench, {mt['conversations']} two-turn conversations, P cut {mt['cut']:.4f}, margin {mt['margin']}: "
              "route changed between turns: " + ", ".join(f"{k} {v}" for k, v in mt["flips"].items()))
        if args.save_rows:
            Path(args.save_rows).with_suffix(".mt-bench.json").write_text(json.dumps(mt, indent=1))
    if args.plot:
        plot(table, fit, args.plot)
        print(f"plot: {args.plot}")
    return 0


def plot(table: dict[str, dict[str, float]], fit: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, m in table.items():
        ax1.scatter(1000 * m["cost"], m["quality"], label=mode)
    ax1.set_xlabel("cost, USD per 1k requests")
    ax1.set_ylabel("quality")
    ax1.legend(fontsize=7)
    for name, pts in fit["curves"].items():
        xs = [0.0] + [p["share"] for p in pts] + [1.0]
        ys = [fit["q_fast"]] + [p["quality"] for p in pts] + [fit["q_strong"]]
        ax2.plot(xs, ys, marker=".", label=f"{name} (APGR {fit['apgr'][name]:.3f})")
    ax2.set_xlabel("reasoning share (held-out half)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
