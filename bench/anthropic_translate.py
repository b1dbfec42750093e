"""The CPU that the Anthropic front end adds per request, in process (no HTTP, no
upstream): Anthropic body -> ChatRequest and completion -> message, against the chat
route's own parse of the same question. bench/overhead.py measures it through HTTP;
on a loaded machine that figure is noise at the 0.1 ms scale, this one is not.

    python bench/anthropic_translate.py [--n 20000]

A second row does the same for a request shaped like Claude Code 2.x's first turn (three
system blocks with cache_control, ~7 kB of system prompt, a `role: system` turn inside
messages, 12 tools one of them deferred, metadata, adaptive thinking, context_management):
what the issue-22 handling (folding, recording drops, tool filtering) costs at agent size.
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


_SCHEMA = {"type": "object", "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["file_path"]}
CLAUDE_CODE = {
    "model": "claude-opus-5-5", "max_tokens": 128000, "stream": True,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
               {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
               {"type": "text", "text": "Follow the rules. " * 400, "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "<system-reminder>" + "r " * 200 + "</system-reminder>"},
                                              {"type": "text", "text": "Read notes.txt"}]},
                 {"role": "system", "content": [{"type": "text", "text": "# Environment\n" + "e " * 300, "cache_control": {"type": "ephemeral"}}]}],
    "tools": [{"name": f"Tool{i}", "description": "does a thing " * 20, "input_schema": _SCHEMA} for i in range(11)]
    + [{"name": "Deferred", "defer_loading": True, "input_schema": {"type": "object", "properties": {}}}],
    "metadata": {"user_id": '{"device_id":"d","account_uuid":"","session_id":"s"}'},
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "medium"},
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
    # the chat route parsing what a Claude Code request becomes, against translating it first
    cc_chat_body = translate(CLAUDE_CODE).body
    cc_chat = per_call_us(lambda: parse_request("chat", b"", {}, dict(cc_chat_body)), args.n // 4)

    def claude_code() -> None:
        t = translate(CLAUDE_CODE)
        parse_request("chat", b"", {}, t.body)
        to_message(COMPLETION, model="fast", thinking=True, stop_sequences=[], omit=True)

    cc = per_call_us(claude_code, args.n // 4)
    print(f"{'path':<40} {'us/request':>10}")
    print(f"{'chat: parse':<40} {chat:10.1f}")
    print(f"{'messages: translate+parse+reply':<40} {messages:10.1f}")
    print(f"{'chat: parse (Claude Code-sized body)':<40} {cc_chat:10.1f}")
    print(f"{'messages: Claude Code-shaped request':<40} {cc:10.1f}")
    print(f"added by the Anthropic front end: {messages - chat:+.1f} us per request (median of 5 rounds of {args.n}); "
          f"on a Claude Code-shaped request {cc - cc_chat:+.1f} us (rounds of {args.n // 4})")


if __name__ == "__main__":
    main()
