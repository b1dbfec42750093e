"""`thinkgate replay`: what would yesterday's traffic have done under another threshold?

Reads logged decision records (a JSONL export from `/dashboard/api/export.jsonl`,
or the Redis stream itself) and re-decides each one offline:

- **Route**: records the classifier decided (reason `classifier` or `escalated`,
  with a logged difficulty) are re-routed with `difficulty >= threshold`. Records
  that were forced, pinned, served from cache, fell back, or carry no difficulty
  keep their logged outcome. `--artifact` re-scores difficulty with another
  trained classifier from the stored embedding (needs `decisions.store_embedding`).
- **Escalation**: a record now on the fast route escalates when its logged Self-Ref
  confidence is below the (new) self-ref threshold. A record that went straight to
  reasoning has no fast answer, so no confidence: it is counted as not escalated
  and reported as `unknown_confidence`.
- **Cost**: what the log observed is used as is (a fast request's cost, a reasoning
  request's cost, DEER savings included). What it did not observe is estimated: the
  reasoning cost of a fast request is its `baseline_cost` (what the always-reasoning
  route would have cost); the fast cost of a reasoning request is its tokens at the
  fast model's configured price (`--config`, the gateway's config), else its baseline
  times the median fast/baseline cost ratio of the classifier-routed fast requests in
  the log (a pinned alias's baseline is its own cost, so those are left out), else
  `--fast-cost-ratio`. The report says which. Escalation pays both.
- **Quality** (with `--outcomes`, the calibrate outcome format
  `{"id", "prompt", "fast", "strong"}`): a record is joined to an outcome by id
  (the record's `prompt_id` or `id`), else by prompt text: whitespace-normalised,
  the logged (possibly truncated) prompt must equal the start of the outcome's last
  user turn — so log with `decisions.store_prompt: true`. Quality is the chosen
  model's score (`strong` when on the reasoning route or escalated).

What replay could not do is said in its report with the reason (no outcome
joined, no embedding stored), never left as a bare "-" or a silent 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.decisions.replay_report import MIN_PROMPT_JOIN, format_report, format_sweep

RE_ROUTABLE = ("classifier", "escalated")


# -- loading ------------------------------------------------------------------


def load_file(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """Records from a JSONL file (oldest first) and the number of unreadable lines."""
    recs, bad = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(rec, dict) and "id" in rec:
                recs.append(rec)
            else:
                bad += 1
    recs.sort(key=lambda r: float(r.get("created") or 0))
    return recs, bad


def load_redis(url: str, key: str = "thinkgate:decisions", page: int = 1000) -> tuple[list[dict[str, Any]], int]:
    import redis  # lazy: only this path needs it

    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    recs, bad, lower = [], 0, "-"
    try:
        while True:
            entries = client.xrange(key, min=lower, max="+", count=page)
            for _, fields in entries:
                try:
                    recs.append(json.loads(fields[b"d"]))
                except (KeyError, ValueError):
                    bad += 1
            if len(entries) < page:
                break
            last = entries[-1][0]
            lower = "(" + (last.decode() if isinstance(last, bytes) else last)
    finally:
        client.close()
    return recs, bad


def load_outcomes(path: str | Path) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):  # messages: the last user turn
        for m in reversed(prompt):
            if isinstance(m, dict) and m.get("role") == "user":
                c = m.get("content")
                return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c or [] if isinstance(p, dict))
    return ""


class OutcomeIndex:
    """Join decisions to outcome labels: by id first, then by logged prompt prefix."""

    def __init__(self, outcomes: Iterable[dict[str, Any]]) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.texts: list[tuple[str, dict[str, Any]]] = []
        self._by_prefix: dict[int, dict[str, dict[str, Any] | None]] = {}
        for o in outcomes:
            if "id" in o:
                self.by_id[str(o["id"])] = o
            self.texts.append((_norm(_prompt_text(o.get("prompt"))), o))

    def find(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        for key in ("prompt_id", "id"):
            if rec.get(key) is not None and str(rec[key]) in self.by_id:
                return self.by_id[str(rec[key])]
        p = _norm(rec.get("prompt") or "")
        if len(p) < MIN_PROMPT_JOIN:
            return None
        table = self._by_prefix.get(len(p))
        if table is None:
            table = {}
            for text, o in self.texts:
                k = text[: len(p)]
                table[k] = None if k in table else o  # ambiguous prefixes join nothing
            self._by_prefix[len(p)] = table
        return table.get(p)


# -- re-scoring ---------------------------------------------------------------


@dataclass
class Plan:
    threshold: float | None = None  # None: each record's logged threshold
    selfref_threshold: float | None = None  # None: each record's logged one
    fast_cost_ratio: float = 0.1
    classifier: Any = None  # a DifficultyClassifier for --artifact
    # alias -> (fast price, reasoning price), each (input, output) USD per 1M tokens, from --config
    prices: dict[str, tuple[tuple[float, float], tuple[float, float]]] | None = None


def prices_from(settings: Any) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Each classifier-routed alias's fast and reasoning prices from a loaded config."""
    out = {}
    for alias, rs in settings.routes.items():
        if rs.pin is None and rs.fast in settings.models and rs.reasoning in settings.models:
            f, r = settings.models[rs.fast].price, settings.models[rs.reasoning].price
            out[alias] = ((f.input, f.output), (r.input, r.output))
    return out


@dataclass
class Tally:
    n: int = 0
    routes: dict[str, int] = field(default_factory=lambda: {"fast": 0, "reasoning": 0, "cache": 0, "none": 0})
    escalated: int = 0
    fast_first: int = 0
    cost: float = 0.0
    baseline: float = 0.0
    quality: list[float] = field(default_factory=list)

    def add(self, route: str, escalated: bool, cost: float, baseline: float, quality: float | None) -> None:
        self.n += 1
        self.routes[route if route in self.routes else "none"] += 1
        if route == "fast" or escalated:
            self.fast_first += 1
        self.escalated += 1 if escalated else 0
        self.cost += cost
        self.baseline += baseline
        if quality is not None:
            self.quality.append(quality)

    def as_dict(self) -> dict[str, Any]:
        n = self.n or 1
        return {
            "requests": self.n,
            "share": {k: v / n for k, v in self.routes.items()},
            "routes": dict(self.routes),
            "escalated": self.escalated,
            "escalation_rate": self.escalated / self.fast_first if self.fast_first else None,
            "cost": self.cost,
            "baseline_cost": self.baseline,
            "saved_pct": (self.baseline - self.cost) / self.baseline if self.baseline else None,
            "quality": statistics.fmean(self.quality) if self.quality else None,
            "quality_n": len(self.quality),
        }


def fast_cost_ratio(records: Iterable[dict[str, Any]], default: float) -> float:
    return _fast_cost_ratio(records, default)[0]


def _fast_cost_ratio(records: Iterable[dict[str, Any]], default: float) -> tuple[float, str]:
    # only requests the classifier sent to fast: a pinned alias's baseline is its own cost (ratio 1)
    ratios = [
        float(r["cost"]) / float(r["baseline_cost"])
        for r in records
        if r.get("route") == "fast" and r.get("reason") in RE_ROUTABLE and not r.get("escalated")
        and float(r.get("baseline_cost") or 0) > 0 and not r.get("error")
    ]
    if ratios:
        return statistics.median(ratios), f"the median of {len(ratios)} classifier-routed fast requests in the log"
    return default, "--fast-cost-ratio (the log has no classifier-routed fast request; pass --config for the prices)"


def _costs(rec: dict[str, Any], ratio: float, prices: dict[str, Any] | None = None) -> tuple[float, float]:
    """(fast cost, reasoning cost) of one request: observed where the log has it, else estimated."""
    cost = float(rec.get("cost") or 0.0)
    baseline = float(rec.get("baseline_cost") or 0.0)
    priced = (prices or {}).get(rec.get("alias") or "")
    if priced is not None:  # the same tokens at the configured prices
        pt, ct = int(rec.get("prompt_tokens") or 0), int(rec.get("completion_tokens") or 0)
        (fi, fo), (ri, ro) = priced
        at_fast, at_reasoning = (pt * fi + ct * fo) / 1e6, (pt * ri + ct * ro) / 1e6
        if rec.get("escalated"):
            return cost - at_reasoning if cost > at_reasoning else at_fast, at_reasoning
        if rec.get("route") == "fast":
            return cost, baseline or at_reasoning
        if rec.get("route") == "reasoning":
            return at_fast, cost
        return at_fast, baseline or at_reasoning
    if rec.get("escalated"):
        fast = baseline * ratio
        return fast, max(cost - fast, 0.0)
    if rec.get("route") == "fast":
        return cost, baseline
    if rec.get("route") == "reasoning":
        return (baseline or cost) * ratio, cost
    return baseline * ratio, baseline


def replay(records: list[dict[str, Any]], plan: Plan, outcomes: OutcomeIndex | None = None) -> dict[str, Any]:
    ratio, ratio_from = _fast_cost_ratio(records, plan.fast_cost_ratio)
    if plan.prices:
        ratio_from = "configured prices"
    logged, new = Tally(), Tally()
    always_fast: list[float] = []
    always_strong: list[float] = []
    kept: dict[str, int] = {}
    rescored = unknown_conf = matched = re_scored_difficulty = too_narrow = 0
    changed = 0
    for rec in records:
        route = rec.get("route") or "none"
        fast, reasoning = _costs(rec, ratio, plan.prices)
        baseline = float(rec.get("baseline_cost") or 0.0)
        o = outcomes.find(rec) if outcomes is not None and route != "cache" else None
        if o is not None:
            matched += 1
            always_fast.append(float(o["fast"]))
            always_strong.append(float(o["strong"]))

        def quality(r: str, esc: bool) -> float | None:
            if o is None:
                return None
            return float(o["strong"]) if (r == "reasoning" or esc) else float(o["fast"])

        logged.add(route, bool(rec.get("escalated")), float(rec.get("cost") or 0.0), baseline, quality(route, bool(rec.get("escalated"))))

        difficulty = rec.get("difficulty")
        # The log keeps the sentence embedding only: an artifact that also reads
        # the layer means cannot be re-scored from it (the logged P is kept).
        stored = rec.get("embedding")
        if plan.classifier is not None and stored and len(stored) >= plan.classifier.embedding_dim:
            import numpy as np

            difficulty = float(plan.classifier.predict([], np.asarray(stored, dtype=np.float32)))
            re_scored_difficulty += 1
        elif plan.classifier is not None and stored:
            too_narrow += 1
        threshold = plan.threshold if plan.threshold is not None else rec.get("threshold")
        if route not in ("fast", "reasoning") or rec.get("reason") not in RE_ROUTABLE or difficulty is None or threshold is None:
            why = "cache" if route == "cache" else ("no_difficulty" if difficulty is None else (rec.get("reason") or "other"))
            kept[why] = kept.get(why, 0) + 1
            new.add(route, bool(rec.get("escalated")), float(rec.get("cost") or 0.0), baseline, quality(route, bool(rec.get("escalated"))))
            continue
        rescored += 1
        if float(difficulty) >= float(threshold):
            r, esc = "reasoning", False
            cost = reasoning
        else:
            conf = rec.get("confidence")
            sr = plan.selfref_threshold if plan.selfref_threshold is not None else rec.get("selfref_threshold")
            if conf is None:
                esc = False
                if not (route == "fast" and not rec.get("escalated")):
                    unknown_conf += 1
            else:
                esc = sr is not None and float(conf) < float(sr)
            r = "reasoning" if esc else "fast"
            cost = fast + (reasoning if esc else 0.0)
        if r != route or esc != bool(rec.get("escalated")):
            changed += 1
        new.add(r, esc, cost, baseline, quality(r, esc))
    return {
        "records": len(records),
        "rescored": rescored,
        "changed": changed,
        "kept_as_logged": kept,
        "unknown_confidence": unknown_conf,
        "difficulty_rescored": re_scored_difficulty,
        "difficulty_not_rescorable": too_narrow,
        "fast_cost_ratio": ratio,
        "fast_cost_from": ratio_from,
        # what replay can use at all: say so when it is nothing (format_report)
        "with_prompt": sum(1 for r in records if r.get("prompt")),
        "with_embedding": sum(1 for r in records if r.get("embedding")),
        "artifact": plan.classifier is not None,
        "threshold": plan.threshold,
        "selfref_threshold": plan.selfref_threshold,
        "logged": logged.as_dict(),
        "replay": new.as_dict(),
        "outcomes": None
        if outcomes is None
        else {
            "matched": matched,
            "always_fast": statistics.fmean(always_fast) if always_fast else None,
            "always_strong": statistics.fmean(always_strong) if always_strong else None,
        },
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="thinkgate replay", description="Re-score logged routing decisions under another threshold.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-redis", metavar="URL", help="read the decision stream from Redis")
    src.add_argument("--file", metavar="JSONL", help="read records exported from /dashboard/api/export.jsonl")
    ap.add_argument("--key", default="thinkgate:decisions", help="the Redis stream key (decisions.stream_key)")
    ap.add_argument("--threshold", type=float, help="difficulty threshold to replay (default: each record's logged one)")
    ap.add_argument("--selfref-threshold", type=float, help="Self-Ref confidence threshold (default: logged)")
    ap.add_argument("--outcomes", metavar="JSONL", help="outcome labels {id, prompt, fast, strong} for quality")
    ap.add_argument("--artifact", help="re-score difficulty with this classifier artifact (needs stored embeddings)")
    ap.add_argument("--config", help="the gateway's YAML config: fast costs the log did not observe at its prices")
    ap.add_argument("--fast-cost-ratio", type=float, default=0.1, help="fast/reasoning cost ratio when the log has no fast request and no --config")
    ap.add_argument("--sweep", action="store_true", help="also print a sweep of thresholds 0.0..1.0")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("threshold", "selfref_threshold"):
        v = getattr(args, name)
        if v is not None and not 0.0 <= v <= 1.0 and name == "threshold":
            print(f"thinkgate replay: --threshold must be in [0, 1], got {v}", file=sys.stderr)
            return 2
    try:
        if args.file:
            records, bad = load_file(args.file)
            source = args.file
        else:
            records, bad = load_redis(args.from_redis, args.key)
            source = f"{args.from_redis} ({args.key})"
        index = OutcomeIndex(load_outcomes(args.outcomes)) if args.outcomes else None
    except OSError as e:
        print(f"thinkgate replay: cannot read {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"thinkgate replay: bad input: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - e.g. redis connection errors, shown without a traceback
        print(f"thinkgate replay: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    plan = Plan(threshold=args.threshold, selfref_threshold=args.selfref_threshold, fast_cost_ratio=args.fast_cost_ratio)
    if args.config:
        from router import config

        try:
            plan.prices = prices_from(config.load(args.config))
        except config.ConfigError as e:
            print(f"thinkgate replay: {e}", file=sys.stderr)
            return 2
    if args.artifact:
        try:
            from policies.difficulty import DifficultyClassifier

            plan.classifier = DifficultyClassifier.load(args.artifact)
        except Exception as e:  # noqa: BLE001
            print(f"thinkgate replay: cannot load classifier {args.artifact}: {e}", file=sys.stderr)
            return 2
        if plan.threshold is None:
            plan.threshold = float(plan.classifier.threshold)
    if not records:
        print(f"thinkgate replay: no decision records in {source}", file=sys.stderr)
        return 1
    res = replay(records, plan, index)
    res["unreadable"] = bad
    sweep = []
    if args.sweep:
        for i in range(11):
            p = Plan(threshold=i / 10, selfref_threshold=plan.selfref_threshold, fast_cost_ratio=plan.fast_cost_ratio, classifier=plan.classifier, prices=plan.prices)
            sweep.append(replay(records, p, index))
    if args.json:
        if sweep:
            res["sweep"] = [{"threshold": r["threshold"], **r["replay"]} for r in sweep]
        print(json.dumps(res, indent=2))
    else:
        print(format_report(res, source))
        if bad:
            print(f"  ({bad} unreadable lines skipped)")
        if sweep:
            print("\n" + format_sweep(sweep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
