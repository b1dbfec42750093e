"""Is an encoder good enough for the semantic cache? Precision and recall of
semantic hits on paraphrase pairs (must hit) and near-miss pairs (must not),
for the default (candidates on the static routing vector at 0.85, confirmed
by MiniLM's second look at 0.95: router/cache/second_look.py), the static
encoder alone and MiniLM int8 alone, each at its default threshold and at
the threshold it needs for MiniLM's precision; and what a second look costs
(MiniLM on the query and one candidate, wall time per check).

    .venv/bin/python bench/semantic_cache.py [--per-set 150] [--json]

The pairs (built here, deterministically, seed 0, from ../shared/data; no
human-written paraphrase corpus ships in any package this project can
install, so they are rule-based rephrasings, and say so):
- paraphrase: a real prompt (MT-Bench turn 1, Arena-Hard v2 under 2,000
  characters, GSM8K) against itself rephrased by REWRITES: words swapped
  for synonyms from a fixed table, a polite opener and a closing thanks.
  Same question, same expected answer: the cache should serve it.
- near-miss/number: the same prompt with one number changed (its first
  number n -> n + 1..9); the answer changes, a hit is a wrong answer.
- near-miss/name: a GSM8K problem whose named person (from NAMES) becomes
  another; the answer names the wrong person if served.
- near-miss/image: the same words about another image (an image_url part);
  the encoders see only the text, so only the cache's scope can tell.

A pair hits when the cache's real scope (router.cache.keys.request_keys)
agrees and the cosine of the two sentence embeddings reaches the threshold.
Printed per encoder: recall on paraphrases and false hits per near-miss kind
at its default threshold, the threshold each needs for MiniLM's precision at
its default, and recall there."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DATA = Path(os.environ.get("THINKGATE_DATA") or ROOT / ".." / "shared" / "data")

# synonym swaps that keep the question (word -> replacement, matched as whole words)
REWRITES = {
    "write": "compose", "explain": "describe", "give": "provide", "find": "determine",
    "calculate": "compute", "show": "demonstrate", "create": "make", "use": "utilize",
    "list": "enumerate", "big": "large", "small": "little", "buy": "purchase", "start": "begin",
    "help": "assist", "many": "numerous", "quickly": "fast", "answer": "reply", "simple": "easy",
    "how much": "what amount", "what is": "what's", "do not": "don't", "can you": "could you",
}
OPENERS = ["Please help: ", "Quick question. ", "Hi! ", "I'd like to know this. "]
CLOSERS = [" Thanks!", " Thank you.", " Thanks in advance."]
NAMES = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
         "Tom", "Sarah", "Mark", "Emily", "Paul", "Anna", "Peter", "Julia", "Jack", "Lisa", "Brian", "Maria",
         "Kevin", "Nancy", "Jason", "Karen", "Eric", "Betty", "Adam", "Helen"]
_NUMBER = re.compile(r"\d+")


def paraphrase(text: str, i: int) -> str:
    out = text
    for a, b in REWRITES.items():
        out = re.sub(rf"\b{a}\b", b, out)
        out = re.sub(rf"\b{a.capitalize()}\b", b.capitalize(), out)
    return OPENERS[i % len(OPENERS)] + out + CLOSERS[i % len(CLOSERS)]


def change_number(text: str, i: int) -> str | None:
    m = _NUMBER.search(text)
    if m is None:
        return None
    return text[: m.start()] + str(int(m.group()) + 1 + i % 9) + text[m.end() :]


def change_name(text: str, i: int) -> str | None:
    for name in NAMES:
        if re.search(rf"\b{name}\b", text):
            other = NAMES[(NAMES.index(name) + 1 + i % (len(NAMES) - 1)) % len(NAMES)]
            return re.sub(rf"\b{name}\b", other, text)
    return None


def sources(per_set: int) -> dict[str, list[str]]:
    def jsonl(name: str) -> list[dict[str, Any]]:
        with open(DATA / name) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    return {
        "MT-Bench": [r["turns"][0] for r in jsonl("prompts/mt-bench.jsonl")][:per_set],
        "Arena-Hard": [r["prompt"] for r in jsonl("prompts/arena-hard-v2.jsonl") if len(r["prompt"]) < 2000][:per_set],
        "GSM8K": [r["problem"] for r in jsonl("math/gsm8k.jsonl")][:per_set],
    }


def image(text: str, n: int) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": f"https://example.com/photo-{n}.png"}}]


def build_pairs(per_set: int) -> list[tuple[str, Any, Any]]:
    """(kind, content a, content b): the cached request's last user turn and the asking one's."""
    pairs: list[tuple[str, Any, Any]] = []
    for name, prompts in sources(per_set).items():
        for i, p in enumerate(prompts):
            pairs.append(("paraphrase", p, paraphrase(p, i)))
            if (n := change_number(p, i)) is not None:
                pairs.append(("near-miss/number", p, n))
            if name == "GSM8K" and (m := change_name(p, i)) is not None:
                pairs.append(("near-miss/name", p, m))
            if i < 40:
                pairs.append(("near-miss/image", image(p, 1), image(p, 2)))
    return pairs


def chat(content: Any) -> Any:
    from router.types import Caller, ChatRequest, Controls

    messages = [{"role": "user", "content": content}]
    return ChatRequest(endpoint="chat", alias="auto", body={"model": "auto", "messages": messages, "temperature": 0},
                       messages=messages, controls=Controls(), caller=Caller(tenant="default"))


def similarities(encoder: Any, pairs: list[tuple[str, Any, Any]]) -> np.ndarray:
    from policies.features import conversation_text
    from router.embedding.encoders import sentence

    texts = [conversation_text([{"role": "user", "content": c}]) for _, a, b in pairs for c in (a, b)]
    vecs = np.vstack([sentence(encoder.encode(texts[i : i + 16])) for i in range(0, len(texts), 16)])
    a, b = vecs[0::2], vecs[1::2]
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def conversation_text_of(content: Any) -> str:
    from policies.features import conversation_text

    return conversation_text([{"role": "user", "content": content}])


def rates(kinds: np.ndarray, hits: np.ndarray) -> dict[str, Any]:
    pos = kinds == "paraphrase"
    out: dict[str, Any] = {"recall": float(hits[pos].mean()), "false_hits": {}}
    for k in sorted(set(kinds) - {"paraphrase"}):
        out["false_hits"][k] = int(hits[kinds == k].sum())
    tp, fp = int(hits[pos].sum()), int(hits[~pos].sum())
    out["precision"] = tp / (tp + fp) if tp + fp else 1.0
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-set", type=int, default=150, help="prompts of each set (MT-Bench has 80)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from router.cache.keys import request_keys
    from router.embedding.encoders import make_encoder
    from router.embedding.static import StaticEncoder
    from router.settings.stores import default_semantic_threshold

    pairs = build_pairs(args.per_set)
    kinds = np.array([k for k, _, _ in pairs])
    same_scope = np.array([request_keys(chat(a)).scope == request_keys(chat(b)).scope for _, a, b in pairs])
    counts = {k: int((kinds == k).sum()) for k in sorted(set(kinds))}
    results: dict[str, Any] = {"pairs": counts}
    sims: dict[str, np.ndarray] = {}
    minilm = make_encoder("auto")
    for name, enc in (("static", StaticEncoder()), ("minilm-int8", minilm)):
        t0 = time.perf_counter()
        sims[name] = similarities(enc, pairs)
        results[name] = {"id": enc.id, "encode_s": round(time.perf_counter() - t0, 2)}
    # each row: (name, the candidates' cosine, the default threshold, MiniLM's second look or None)
    check = default_semantic_threshold("static", True), 0.95
    rows = {
        "static + MiniLM second look (default)": (sims["static"], check[0], sims["minilm-int8"]),
        "static alone": (sims["static"], default_semantic_threshold("static", False), None),
        "minilm-int8 alone": (sims["minilm-int8"], default_semantic_threshold("minilm"), None),
    }

    def hits(row: tuple[np.ndarray, float, np.ndarray | None], t: float) -> np.ndarray:
        s, _, second = row
        out = same_scope & (s >= t)
        return out & (second >= check[1]) if second is not None else out

    for name, row in rows.items():
        results[name] = {**results.get(name, {}), "default_threshold": row[1], "at_default": rates(kinds, hits(row, row[1]))}
        if row[2] is not None:  # how many lookups pay for a second look: the candidates
            cand = same_scope & (row[0] >= row[1])
            results[name]["candidates"] = {k: int(cand[kinds == k].sum()) for k in counts}
    target = results["minilm-int8 alone"]["at_default"]["precision"]
    for name, row in rows.items():
        # the lowest threshold (most recall) whose precision reaches MiniLM's at its default
        best = None
        for t in np.round(np.arange(0.80, 1.0001, 0.005), 3):
            r = rates(kinds, hits(row, float(t)))
            if r["precision"] >= target - 1e-9:
                best = {"threshold": float(t), **r}
                break
        results[name]["at_same_precision"] = best
    # the price of one second look: MiniLM on the query and one candidate (wall, one thread)
    texts = [conversation_text_of(b) for _, a, b in pairs[:64]], [conversation_text_of(a) for _, a, b in pairs[:64]]
    took = []
    for q, c in zip(*texts):
        t0 = time.perf_counter()
        minilm.encode([q, c])
        took.append((time.perf_counter() - t0) * 1000)
    results["second_look_ms"] = {"p50": round(float(np.percentile(took, 50)), 2), "p99": round(float(np.percentile(took, 99)), 2)}
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"pairs: {counts}  (the scope alone separates {int((~same_scope).sum())} of them)")
    print("| encoder | threshold | paraphrase recall | precision | false hits: " + " / ".join(k for k in counts if k != "paraphrase") + " |")
    print("|---|---|---|---|---|")
    for name in rows:
        for label, r, t in (("default", results[name]["at_default"], results[name]["default_threshold"]),
                            ("same precision", results[name]["at_same_precision"], None)):
            if r is None:
                print(f"| {name} | {label}: none reaches MiniLM's precision | | | |")
                continue
            t = r.get("threshold", t)
            fh = " / ".join(str(r["false_hits"][k]) for k in counts if k != "paraphrase")
            print(f"| {name} | {t:.3f} ({label}) | {100 * r['recall']:.1f}% | {r['precision']:.3f} | {fh} |")
    first = next(iter(rows))
    print(f"second looks (candidates) per kind, default: {results[first]['candidates']}; "
          f"one look (query + one candidate through MiniLM int8): p50 {results['second_look_ms']['p50']} ms, "
          f"p99 {results['second_look_ms']['p99']} ms")
    for name, s in sims.items():
        q = {k: [round(float(x), 3) for x in np.percentile(s[kinds == k], [5, 50, 95])] for k in counts}
        print(f"{name} cosine p5/p50/p95 by kind: {q}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
