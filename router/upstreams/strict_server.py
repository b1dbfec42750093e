"""An OpenAI-compatible server as strict as the strictest real provider, so that
message-hygiene failures cannot hide behind a lenient fake.

Every chat request is checked against the fields the OpenAI chat API defines: the
request's own, each message's for its role, each content part's type. Anything else
is a 400 in OpenAI's shape, worded the way DeepSeek, Groq and Mistral word theirs:

    messages[2]: unknown field(s) reasoning_content for role 'assistant'

It answers like a small model that can call tools (a tool call when tools are offered
and the last turn is not a tool result, else text that quotes the tool result) and,
with `reasoning=`, like a reasoning model: the thinking in `reasoning_content`
(DeepSeek, vLLM < 0.16) or `reasoning` (vLLM >= 0.16). Streams omit `delta.role`
unless `send_role=True`, as some servers do. `GET /_strict/log` returns what it
accepted and rejected, for tests that run it as a separate process.

    python -m router.upstreams.strict_server --port 9200 --reasoning reasoning_content
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from router.upstreams.fake_server import FakeOpenAIServer, _chunked, _send_json
from router.upstreams.hygiene import MESSAGE_FIELDS

# The chat request's fields (OpenAI's reference) and the vLLM / llama.cpp sampling extras
# that OpenAI-compatible servers accept.
REQUEST_FIELDS = frozenset(
    {
        "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
        "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
        "parallel_tool_calls", "prediction", "presence_penalty", "reasoning_effort", "response_format",
        "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice",
        "tools", "top_logprobs", "top_p", "user", "web_search_options", "prompt_cache_key",
        "safety_identifier", "verbosity",
        "top_k", "min_p", "repetition_penalty", "chat_template_kwargs",
    }
)  # fmt: skip
PART_TYPES: dict[str, frozenset[str]] = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
    "function": frozenset({"text"}),
}
PART_FIELDS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text"}),
    "image_url": frozenset({"type", "image_url"}),
    "input_audio": frozenset({"type", "input_audio"}),
    "file": frozenset({"type", "file"}),
    "refusal": frozenset({"type", "refusal"}),
}
TOOL_CALL_FIELDS = frozenset({"id", "type", "function"})


def violations(body: dict[str, Any]) -> list[str]:
    """Every way `body` breaks the OpenAI chat request schema (empty: valid)."""
    out: list[str] = []
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        out.append(f"unknown field(s) {', '.join(unknown)} in the request")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*out, "'messages' must be a non-empty array"]
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            out.append(f"messages[{i}]: must be an object")
            continue
        role = m.get("role")
        allowed = MESSAGE_FIELDS.get(role) if isinstance(role, str) else None
        if allowed is None:
            out.append(f"messages[{i}]: unknown role {role!r}")
            continue
        extra = [k for k in m if k not in allowed]
        if extra:
            out.append(f"messages[{i}]: unknown field(s) {', '.join(extra)} for role '{role}'")
        content = m.get("content")
        if content is None:
            if not (role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
                out.append(f"messages[{i}]: 'content' is required for role '{role}'")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in PART_TYPES[role]:
                    out.append(f"messages[{i}].content[{j}]: part type {kind!r} is not allowed for role '{role}'")
                elif set(part) - PART_FIELDS[kind]:
                    out.append(f"messages[{i}].content[{j}]: unknown field(s) {', '.join(sorted(set(part) - PART_FIELDS[kind]))}")
        elif not isinstance(content, str):
            out.append(f"messages[{i}]: 'content' must be a string or an array of parts")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            out.append(f"messages[{i}]: 'tool_call_id' is required for role 'tool'")
        for k, tc in enumerate(m.get("tool_calls") or []):
            where = f"messages[{i}].tool_calls[{k}]"
            if not isinstance(tc, dict) or not isinstance(tc.get("function"), dict):
                out.append(f"{where}: not an OpenAI function tool call")
            elif set(tc) - TOOL_CALL_FIELDS:
                out.append(f"{where}: unknown field(s) {', '.join(sorted(set(tc) - TOOL_CALL_FIELDS))}")
            elif set(tc["function"]) - {"name", "arguments"}:
                out.append(f"{where}.function: unknown field(s) {', '.join(sorted(set(tc['function']) - {'name', 'arguments'}))}")
    return out


def _example(schema: Any) -> Any:
    """A minimal value that satisfies a (simple) JSON schema, for tool-call arguments."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _example(v) for k, v in props.items() if k in (schema.get("required") or props)}
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": []}.get(kind)  # type: ignore[arg-type]


class StrictOpenAIServer(FakeOpenAIServer):
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, reasoning: str | None = None, send_role: bool = False, words: int = 6
    ) -> None:
        super().__init__(host, port, words=words)
        if reasoning not in (None, "reasoning_content", "reasoning"):
            raise ValueError("reasoning: None, 'reasoning_content' or 'reasoning'")
        self.reasoning = reasoning
        self.send_role = send_role
        self.accepted: list[dict[str, Any]] = []
        self.rejected: list[str] = []

    async def _answer(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter) -> bool:
        if method == "GET" and path == "/_strict/log":
            await _send_json(writer, 200, {"accepted": self.accepted, "rejected": self.rejected})
            return True
        if not (method == "POST" and path == "/v1/chat/completions"):
            return await super()._answer(method, path, raw, writer)
        self.stats.requests += 1
        try:
            body = json.loads(raw or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            await _send_json(writer, 400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return True
        problems = violations(body)
        if problems:
            self.rejected.append("; ".join(problems))
            error = {"message": "; ".join(problems), "type": "invalid_request_error", "param": "messages", "code": "invalid_request"}
            await _send_json(writer, 400, {"error": error})
            return True
        self.accepted.append(body)
        self.stats.ok += 1
        choices = [self._message(body) for _ in range(int(body.get("n") or 1))]
        if body.get("stream"):
            return await self._stream_chat(body, choices, writer)
        await _send_json(writer, 200, self._chat(body, choices))
        return True

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        last = messages[-1]
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if self.reasoning:
            message[self.reasoning] = "Let me think. The user wants an answer."
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        if tools and last.get("role") != "tool" and body.get("tool_choice") != "none":
            fn = tools[0]["function"]
            args = _example(fn.get("parameters") or {}) or {}
            message["tool_calls"] = [
                {"id": f"call_{len(messages)}", "type": "function", "function": {"name": fn["name"], "arguments": json.dumps(args)}}
            ]
        elif last.get("role") == "tool":
            message["content"] = f"The tool said: {_text(last.get('content'))}"
        else:
            message["content"] = "".join(self._text())
        return message

    def _chat(self, body: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
        ct = self.words * len(choices)
        return {
            "id": "chatcmpl-strict",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or "strict-model"),
            "choices": [
                {"index": i, "message": m, "finish_reason": "tool_calls" if m.get("tool_calls") else "stop", "logprobs": None}
                for i, m in enumerate(choices)
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": ct, "total_tokens": 10 + ct},
        }

    async def _stream_chat(self, body: dict[str, Any], choices: list[dict[str, Any]], writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )
        base = {"id": "chatcmpl-strict", "object": "chat.completion.chunk", "created": int(time.time()), "model": str(body.get("model") or "strict-model")}

        def event(i: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {**base, "choices": [{"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            return _chunked(b"data: " + json.dumps(data).encode() + b"\n\n")

        try:
            for i, m in enumerate(choices):
                first: dict[str, Any] = {"role": "assistant"} if self.send_role else {}
                if self.reasoning:
                    for word in m[self.reasoning].split(" "):
                        writer.write(event(i, {**first, self.reasoning: word + " "}))
                        first = {}
                for k, tc in enumerate(m.get("tool_calls") or []):
                    writer.write(event(i, {**first, "tool_calls": [{"index": k, **tc}]}))
                    first = {}
                if m.get("content"):
                    for word in m["content"].split(" "):
                        writer.write(event(i, {**first, "content": word + " "}))
                        first = {}
                writer.write(event(i, first, "tool_calls" if m.get("tool_calls") else "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = self._chat(body, choices)["usage"]
                writer.write(_chunked(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"))
            writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            self.stats.aborted += 1
            return False
        return True


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--reasoning", choices=["reasoning_content", "reasoning"], default=None)
    p.add_argument("--send-role", action="store_true")
    a = p.parse_args(argv)

    async def run() -> None:
        server = await StrictOpenAIServer(a.host, a.port, reasoning=a.reasoning, send_role=a.send_role).start()
        print(f"listening {server.api_base}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
