"""The CPU that the Anthropic front end adds per request, in process (no HTTP, no
upstream): Anthropic body -> ChatRequest and completion -> message, against the chat
route's own parse of the same question. bench/overhead.py measures it through HTTP;
on a loaded machine that figure is noise at the 0.1 ms scale, this one is not.

    python bench/anthropic_translate.py [--n 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from router.api.anthropic_reply import to_message
from router.api.anthropic_request import translate
from router.api.protocol import parse_request

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
CHAT = {"model": "fast", "messages": QUESTION, "max_tokens": 16}
ANTHROPIC = {"model": "fast", "messages": QUESTION, "max_tokens": 16, "system": "be brief"}
COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "fake-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "w0 w1 w2 w3 w4 w5 w6 w7"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18},
}  # fmt: skip


def per_call_us(fn, n: int, rounds: int = 5) -> float:
    runs = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()

    chat = per_call_us(lambda: parse_request("chat", b"", {}, dict(CHAT)), args.n)

    def anthropic() -> None:
        t = translate(ANTHROPIC)
        parse_request("chat", b"", {}, t.body)
        to_message(COMPLETION, model="fast", thinking=False, stop_sequences=[])

    messages = per_call_us(anthropic, args.n)
    print(f"{'path':<34} {'us/request':>10}")
    print(f"{'chat: parse':<34} {chat:10.1f}")
    print(f"{'messages: translate+parse+reply':<34} {messages:10.1f}")
    print(f"added by the Anthropic front end: {messages - chat:+.1f} us per request (median of 5 rounds of {args.n})")


if __name__ == "__main__":
    main()
