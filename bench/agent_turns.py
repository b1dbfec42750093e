"""Agent sessions: the share of turns of each type, and the reasoning calls the
relay tier (`routing.agent.relay: fast`) would avoid.

A recorded session (one request body per line, as the agent sent them) is
replayed in order through the real app (create_app, the configured difficulty
classifier, fake upstreams: the recorded requests, not the fakes' answers, make
the next turn) under three policies: `in_loop: keep` (the default),
`keep` + `relay: fast`, and `independent`. It prints each turn type's share,
the reasoning calls under each policy, and the model switches inside a loop.

    .venv/bin/python bench/agent_turns.py                          # the shipped session, the default classifier
    .venv/bin/python bench/agent_turns.py --session my.jsonl       # your own: one request body a line, or
                                                                   # {"path": "/v1/messages", "body": {...}, "headers": {...}}
    .venv/bin/python bench/agent_turns.py --decisions export.jsonl # counts from /dashboard/api/export.jsonl
    .venv/bin/python bench/agent_turns.py --record bench/data/agent_session.jsonl   # re-record the shipped session

The shipped session (bench/data/agent_session.jsonl) was recorded from the
scripted agent of tests/router/pipeline/agent_session.py working through the
four coding tasks below (`--record`): its requests have the shape agents send
(a long shared system prompt, a tool list, tool calls and results), its texts
are written for this bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx

from policies.agent_turn import TURN_TYPES
from router import config
from router.app import create_app
from router.upstreams.fake import FakeReply, FakeUpstream

SESSION = ROOT / "bench" / "data" / "agent_session.jsonl"
POLICIES = {"keep": {}, "keep + relay fast": {"relay": "fast"}, "independent": {"in_loop": "independent"}}


def load_session(path: Path) -> list[dict[str, Any]]:
    lines = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        item = json.loads(line)
        if "path" not in item:
            item = {"path": "/v1/chat/completions", "body": item}
        if not isinstance(item.get("body"), dict):
            raise SystemExit(f"{path}:{i + 1}: a line is a request body, or {{'path', 'body', 'headers'}}")
        lines.append(item)
    return lines


async def replay(session: list[dict[str, Any]], agent: dict[str, Any], embedder: Any, classifier: Any) -> dict[str, Any]:
    """Replay `session` under routing.agent = `agent`; what each turn got."""
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True}},
        "routes": {"auto": {}},
        "selfref": {"enabled": False},  # the fakes' confidence means nothing; routing only
        "cache": {"enabled": False},
        "routing": {"agent": agent},
    })  # fmt: skip
    ups = {name: FakeUpstream(name, f"{name}-model", lambda b: FakeReply("ok")) for name in ("fast", "reasoning")}
    app = create_app(s, upstreams=ups, embedder=embedder, classifier=classifier)
    turns: list[dict[str, str]] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=120) as c:
        for item in session:
            body = {**item["body"], "model": "auto", "stream": False}
            r = await c.post(item["path"], json=body, headers=item.get("headers") or {})
            if r.status_code != 200:
                raise SystemExit(f"turn {len(turns) + 1} was refused: {r.status_code} {r.text[:300]}")
            turns.append({k: r.headers.get(f"x-thinkgate-{k}", "") for k in ("turn", "route", "model", "agent-session")})
    await app.state.pipeline.drain()
    return {"turns": turns, "reasoning_calls": len(ups["reasoning"].calls), "calls": sum(len(u.calls) for u in ups.values())}


def switches(turns: list[dict[str, str]]) -> int:
    """Turns inside a loop (relay, summary) answered by another model than the turn before in their session."""
    last: dict[str, str] = {}
    n = 0
    for t in turns:
        sid = t["agent-session"]
        if not sid:
            continue
        if t["turn"] in ("relay", "summary") and sid in last and last[sid] != t["model"]:
            n += 1
        last[sid] = t["model"]
    return n


def shares(turns: list[str]) -> str:
    n = len(turns) or 1
    c = Counter(turns)
    return " · ".join(f"{k} {c[k]} ({100 * c[k] / n:.0f} %)" for k in TURN_TYPES)


async def bench_session(path: Path, embedder: Any, classifier: Any) -> None:
    session = load_session(path)
    results = {name: await replay(session, agent, embedder, classifier) for name, agent in POLICIES.items()}
    keep = results["keep"]
    print(f"session: {path} ({len(session)} turns)")
    print(f"turn types: {shares([t['turn'] for t in keep['turns']])}")
    print(f"{'policy':<20} {'reasoning calls':>16} {'relay turns reasoning':>22} {'model switches in a loop':>25}")
    for name, r in results.items():
        relay_r = sum(1 for t in r["turns"] if t["turn"] == "relay" and t["route"] == "reasoning")
        print(f"{name:<20} {r['reasoning_calls']:>9} of {r['calls']:<4} {relay_r:>22} {switches(r['turns']):>25}")
    avoided = keep["reasoning_calls"] - results["keep + relay fast"]["reasoning_calls"]
    base = keep["reasoning_calls"] or 1
    print(f"reasoning calls the relay tier avoids: {avoided} of {keep['reasoning_calls']} ({100 * avoided / base:.0f} %)")


def bench_decisions(path: Path) -> None:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    typed = [r for r in recs if r.get("turn")]
    print(f"decisions: {path} ({len(recs)} records, {len(typed)} with a turn type)")
    print(f"turn types: {shares([r['turn'] for r in typed])}")
    reasoning = sum(1 for r in typed if r.get("route") == "reasoning")
    relay = sum(1 for r in typed if r.get("route") == "reasoning" and r["turn"] == "relay")
    print(f"reasoning calls: {reasoning}; on relay turns (what relay: fast would send to the fast model): {relay}")
    print(f"agent sessions: {len({r.get('session') for r in typed if r.get('session')})}")


# -- the shipped session --------------------------------------------------------------

TASKS = [
    ("Fix the failing test in tests/test_parser.py: test_parse_dates has failed since the last commit.", [
        ("FAILED tests/test_parser.py::test_parse_dates - AssertionError: assert datetime(2024, 3, 1) == datetime(2024, 1, 3)\n"
        "1 failed, 41 passed in 0.84s"),
        "def parse_date(text):\n    day, month, year = text.split('/')\n    return datetime(int(year), int(day), int(month))",
        "commit 9f2c1e0: parse_date: accept d/m/y\n-    month, day, year = text.split('/')\n+    day, month, year = text.split('/')",
        "42 passed in 0.79s",
    ], False),
    ("Add a --verbose flag to the CLI that prints each file as it is processed.", [
        ("def main(argv=None):\n    parser = argparse.ArgumentParser()\n    parser.add_argument('paths', nargs='+')\n"
        "    args = parser.parse_args(argv)\n    for p in args.paths:\n        process(p)"),
        "src/cli.py:14:    for p in args.paths:\nsrc/batch.py:30:def process(path):",
        "Edited src/cli.py (+3 -0)",
        "12 passed in 0.31s",
    ], False),
    ("What does merge_intervals in utils.py do, and is it correct for touching intervals like [1,2] and [2,3]?", [
        ("def merge_intervals(xs):\n    xs = sorted(xs)\n    out = [xs[0]]\n    for a, b in xs[1:]:\n        if a < out[-1][1]:\n"
        "            out[-1][1] = max(out[-1][1], b)\n        else:\n            out.append([a, b])\n    return out"),
    ], True),
    ("Prove that the scheduler's lock ordering cannot deadlock, or find a counterexample interleaving.", [
        "class Scheduler:\n    def move(self, a, b):\n        with self.locks[a]:\n            with self.locks[b]:\n                ...",
        "src/scheduler.py:41:        sched.move(src, dst)\nsrc/scheduler.py:77:        sched.move(dst, src)",
        "threads: 2; T1 move(1, 2) holds lock 1, waits 2; T2 move(2, 1) holds lock 2, waits 1",
    ], True),
]


async def record(path: Path) -> None:
    from tests.router.pipeline.agent_session import Task, TaskClassifier, ViewEmbedder, agent_model, run

    tasks = [Task(text, results, summary=summary) for text, results, summary in TASKS]
    s = config.from_dict({"models": {"fast": {"provider": "fake", "model": "m"}, "reasoning": {"provider": "fake", "model": "r"}},
                          "routes": {"auto": {}}, "selfref": {"enabled": False}, "cache": {"enabled": False}})  # fmt: skip
    handler = agent_model(tasks)
    app = create_app(s, upstreams={n: FakeUpstream(n, n, handler) for n in ("fast", "reasoning")}, embedder=ViewEmbedder(), classifier=TaskClassifier())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rec") as c:
        session = await run([c], tasks)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(t.sent, separators=(",", ":")) + "\n" for t in session.turns))
    print(f"recorded {len(session.turns)} turns to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--session", type=Path, default=SESSION, help="JSONL of the session's requests (default: the shipped one)")
    ap.add_argument("--decisions", type=Path, help="JSONL decision export instead of a session to replay")
    ap.add_argument("--record", type=Path, help="record the scripted session to this file and stop")
    ap.add_argument("--embedder", default="auto", help="classifier.embedder (onnx | torch | auto)")
    ap.add_argument("--artifact", default="default", help="classifier.artifact")
    args = ap.parse_args()
    if args.record:
        asyncio.run(record(args.record))
        return
    if args.decisions:
        bench_decisions(args.decisions)
        return
    from router.embedding.batcher import build_router_model

    embedder, classifier = build_router_model(config.ClassifierSettings(embedder=args.embedder, artifact=args.artifact))
    print(f"classifier: {args.artifact} (threshold {getattr(classifier, 'threshold', None)}), embedder {args.embedder}")
    asyncio.run(bench_session(args.session, embedder, classifier))


if __name__ == "__main__":
    main()
