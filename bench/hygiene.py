"""What message hygiene (router/upstreams/hygiene.py) costs per upstream call, and what
the `delta.role` check costs per relayed chunk:

    python bench/hygiene.py [--turns 20] [--runs 2000]

Histories of `--turns` user/assistant pairs: clean (what most clients send: scanned,
not copied), and dirty (every assistant turn has reasoning_content and
provider_specific_fields, every tool call the SDK stream helper's extras: copied).
Medians over `--runs` timed calls, side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.pipeline.streaming import with_role
from router.upstreams.hygiene import clean_body


def history(turns: int, dirty: bool) -> dict:
    msgs: list[dict] = [{"role": "system", "content": "You are terse."}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"question {i} " * 20})
        call = {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        a = {"role": "assistant", "content": None, "tool_calls": [call]}
        if dirty:
            a["reasoning_content"] = "thinking " * 100
            a["provider_specific_fields"] = {"refusal": None}
            call["index"] = 0
            call["function"]["parsed_arguments"] = {}
        msgs += [a, {"role": "tool", "tool_call_id": f"c{i}", "content": "ok"}]
    return {"model": "m", "messages": msgs, "temperature": 0}


def median_us(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--runs", type=int, default=2000)
    a = p.parse_args()
    clean, dirty = history(a.turns, False), history(a.turns, True)
    assert clean_body(clean) is clean and clean_body(dirty) is not dirty
    c = median_us(lambda: clean_body(clean), a.runs)
    d = median_us(lambda: clean_body(dirty), a.runs)
    chunk = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    seen = {0}
    r = median_us(lambda: with_role(chunk, seen), a.runs)
    n = len(clean["messages"])
    print(f"messages per request: {n}")
    print(f"clean history  median {c:7.1f} us per upstream call")
    print(f"dirty history  median {d:7.1f} us per upstream call   ({d / c:.1f}x clean)")
    print(f"delta.role check on a later chunk: median {r:.2f} us")


if __name__ == "__main__":
    main()
