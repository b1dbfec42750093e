"""The pipeline's reply -> Responses API output.

`to_response` turns one chat completion into a `response` object: the thinking
as a `reasoning` item (its `content` as reasoning_text, and as `summary` when
the request asked for one), the answer as a `message` with one output_text
part, each tool call as a `function_call` item. `EventStream` turns the chat
chunk stream into the typed SSE events the openai SDKs parse
(`event: <type>` + `data: {..., "sequence_number": n}`), ending with
response.completed / response.incomplete, or `error` + response.failed.
`history_messages` gives the chat messages that continue a stored response.

A call of a function that came in inside a `namespace` tool goes out with that
`namespace` (the name is the function's own, as flattened). With `include:
["reasoning.encrypted_content"]` each reasoning item carries `encrypted_content`:
an opaque token of the thinking thinkgate returned (compressed, not encrypted:
it is the client's own data) that the client may send back with `store: false`;
like any reasoning input it is never sent upstream.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from router.api.responses_input import ParsedResponses, item_id
from router.pipeline.replies import estimate_tokens
from router.types import Decision

_DEFAULTS = {
    "instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
    "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "temperature": 1.0,
    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
    "truncation": "disabled", "user": None,
}  # fmt: skip


def base_response(p: ParsedResponses, response_id: str, created: float, model: str) -> dict[str, Any]:
    r: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
        "store": p.store,
    }
    for k, v in _DEFAULTS.items():
        r[k] = p.echo.get(k, v)
    r["previous_response_id"] = p.previous_response_id
    return r


def usage(completion_usage: dict[str, Any] | None, d: Decision, reasoning_text: str) -> dict[str, Any]:
    u = completion_usage or {}
    inp = int(u.get("prompt_tokens") or d.prompt_tokens or 0)
    out = int(u.get("completion_tokens") or d.completion_tokens or 0)
    details = u.get("completion_tokens_details") or {}
    reasoning = details.get("reasoning_tokens")
    if reasoning is None:
        # DEER counts the thinking it let run; otherwise estimate it from the text
        reasoning = (
            d.deer.thinking_tokens if d.deer is not None and d.deer.thinking_tokens else estimate_tokens(reasoning_text)
        )
    cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": min(int(reasoning), out) if out else int(reasoning)},
        "total_tokens": inp + out,
    }


def reasoning_item(rid: str, text: str, summary: bool, status: str = "completed") -> dict[str, Any]:
    return {
        "id": rid,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if summary else [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": status,
    }


def encrypted_reasoning(text: str) -> str:
    """The opaque `encrypted_content` of a reasoning item (see the module doc)."""
    return "tg1." + base64.urlsafe_b64encode(zlib.compress(text.encode())).decode()


def _finish_items(p: ParsedResponses, item: dict[str, Any]) -> None:
    """What an output item gains from the request: its namespace, its encrypted thinking."""
    if item["type"] == "function_call" and item["name"] in p.namespaces:
        item["namespace"] = p.namespaces[item["name"]]
    elif item["type"] == "reasoning" and p.encrypted_reasoning:
        item["encrypted_content"] = encrypted_reasoning(item["content"][0]["text"])


def message_item(mid: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def call_item(fid: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": fid,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _finish(r: dict[str, Any], finish_reason: str | None) -> None:
    if finish_reason == "length":
        r["status"] = "incomplete"
        r["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        r["status"] = "incomplete"
        r["incomplete_details"] = {"reason": "content_filter"}
    else:
        r["status"] = "completed"
    r["completed_at"] = time.time() if r["status"] == "completed" else None


def to_response(
    p: ParsedResponses, completion: dict[str, Any], d: Decision, response_id: str, created: float
) -> dict[str, Any]:
    r = base_response(p, response_id, created, str(completion.get("model") or p.model))
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    thinking = msg.get("reasoning_content") or msg.get("reasoning") or ""
    if thinking:
        r["output"].append(reasoning_item(item_id("rs"), thinking, p.summary))
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(str(x.get("text", "")) for x in content if isinstance(x, dict))
    if content or not msg.get("tool_calls"):
        r["output"].append(message_item(item_id("msg"), content or ""))
    for tc in msg.get("tool_calls") or []:
        fn = tc.get("function") or {}
        r["output"].append(
            call_item(item_id("fc"), tc.get("id") or item_id("call"), fn.get("name") or "", fn.get("arguments") or "")
        )
    for item in r["output"]:
        _finish_items(p, item)
    _finish(r, choice.get("finish_reason"))
    if r["status"] == "incomplete":
        for item in r["output"]:
            item["status"] = "incomplete"
    r["usage"] = usage(completion.get("usage"), d, thinking)
    if "thinkgate" in completion:  # x-thinkgate-debug
        r["thinkgate"] = completion["thinkgate"]
    return r


def history_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output as the chat messages a next turn continues from
    (the thinking is left out: it is not input a chat upstream accepts)."""
    text = "".join(
        part.get("text", "")
        for item in output
        if item["type"] == "message"
        for part in item["content"]
        if part.get("type") == "output_text"
    )
    calls = [
        {"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
        for i in output
        if i["type"] == "function_call"
    ]
    if not text and not calls:
        return []
    m: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        m["tool_calls"] = calls
    return [m]


# -- streaming -----------------------------------------------------------------------------


def sse_event(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


class EventStream:
    """Chat chunks in, Responses events out. One open output item at a time,
    in the order the chunks bring them (reasoning, then text, then calls)."""

    def __init__(self, p: ParsedResponses, d: Decision, response_id: str, created: float) -> None:
        self.p = p
        self.d = d
        self.r = base_response(p, response_id, created, d.upstream_model or p.model)
        self.seq = 0
        self.open: dict[str, Any] | None = None  # the output item being streamed
        self.calls: dict[int, dict[str, Any]] = {}  # tool-call index -> its item
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.thinking: list[str] = []
        self.final: dict[str, Any] | None = None  # the finished response (completed, incomplete or failed)

    def _ev(self, type_: str, **fields: Any) -> bytes:
        ev = {"type": type_, **fields, "sequence_number": self.seq}
        self.seq += 1
        return sse_event(ev)

    def start(self) -> list[bytes]:
        snap = json.loads(json.dumps(self.r))
        return [self._ev("response.created", response=snap), self._ev("response.in_progress", response=snap)]

    def _index(self) -> int:
        return len(self.r["output"]) - 1

    def _add(self, item: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.r["output"].append(item)
        self.open = item
        added = {k: (v if k not in ("content", "summary") else []) for k, v in item.items()}
        if item["type"] == "function_call":
            added["arguments"] = ""
        out.append(self._ev("response.output_item.added", output_index=self._index(), item=added))
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(
                self._ev(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index(),
                    content_index=0,
                    part=part,
                )
            )
        elif item["type"] == "reasoning":
            part = {"type": "reasoning_text", "text": ""}
            out.append(
                self._ev(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index(),
                    content_index=0,
                    part=part,
                )
            )
        return out

    def _close(self, status: str = "completed") -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        i = self.r["output"].index(item)
        item["status"] = status
        _finish_items(self.p, item)

        def ev(type_: str, **fields: Any) -> bytes:  # an event about this item
            return self._ev(type_, item_id=item["id"], output_index=i, **fields)

        out: list[bytes] = []
        if item["type"] == "message":
            part = item["content"][0]
            out.append(ev("response.output_text.done", content_index=0, text=part["text"], logprobs=[]))
            out.append(ev("response.content_part.done", content_index=0, part=part))
        elif item["type"] == "reasoning":
            part = item["content"][0]
            out.append(ev("response.reasoning_text.done", content_index=0, text=part["text"]))
            out.append(ev("response.content_part.done", content_index=0, part=part))
            if self.p.summary:
                text = part["text"]
                s = {"type": "summary_text", "text": text}
                item["summary"] = [s]
                empty = {"type": "summary_text", "text": ""}
                out.append(ev("response.reasoning_summary_part.added", summary_index=0, part=empty))
                out.append(ev("response.reasoning_summary_text.delta", summary_index=0, delta=text))
                out.append(ev("response.reasoning_summary_text.done", summary_index=0, text=text))
                out.append(ev("response.reasoning_summary_part.done", summary_index=0, part=s))
        elif item["type"] == "function_call":
            out.append(ev("response.function_call_arguments.done", name=item["name"], arguments=item["arguments"]))
        out.append(self._ev("response.output_item.done", output_index=i, item=item))
        return out

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if "thinkgate" in chunk:
            self.r["thinkgate"] = chunk["thinkgate"]
        for c in chunk.get("choices") or []:
            delta = c.get("delta") or {}
            thinking = delta.get("reasoning_content") or delta.get("reasoning")
            if thinking:
                if self.open is None or self.open["type"] != "reasoning":
                    out += self._add(reasoning_item(item_id("rs"), "", False, "in_progress"))
                item = self.open
                assert item is not None
                item["content"][0]["text"] += thinking
                self.thinking.append(thinking)
                out.append(
                    self._ev(
                        "response.reasoning_text.delta",
                        item_id=item["id"],
                        output_index=self._index(),
                        content_index=0,
                        delta=thinking,
                    )
                )
            text = delta.get("content")
            if text:
                if self.open is None or self.open["type"] != "message":
                    out += self._add(message_item(item_id("msg"), "", "in_progress"))
                item = self.open
                assert item is not None
                item["content"][0]["text"] += text
                out.append(
                    self._ev(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=self._index(),
                        content_index=0,
                        delta=text,
                        logprobs=[],
                    )
                )
            for tc in delta.get("tool_calls") or []:
                idx = int(tc.get("index", 0))
                fn = tc.get("function") or {}
                item = self.calls.get(idx)
                if item is None:
                    item = call_item(
                        item_id("fc"), tc.get("id") or item_id("call"), fn.get("name") or "", "", "in_progress"
                    )
                    self.calls[idx] = item
                    out += self._add(item)
                    item["arguments"] = ""
                elif fn.get("name") and item is self.open:
                    item["name"] += fn["name"]
                args = fn.get("arguments") or ""
                if args:
                    item["arguments"] += args
                    out.append(
                        self._ev(
                            "response.function_call_arguments.delta",
                            item_id=item["id"],
                            output_index=self.r["output"].index(item),
                            delta=args,
                        )
                    )
            if c.get("finish_reason"):
                self.finish = c["finish_reason"]
        return out

    def end(self) -> list[bytes]:
        incomplete = self.finish in ("length", "content_filter")
        out = self._close("incomplete" if incomplete else "completed")
        if not self.r["output"]:
            # an empty answer still gets its (empty) message, as in the non-streaming reply
            out += self._add(message_item(item_id("msg"), "", "in_progress"))
            out += self._close("incomplete" if incomplete else "completed")
        _finish(self.r, self.finish)
        u = dict(self.usage or {})
        self.r["usage"] = usage(u, self.d, "".join(self.thinking))
        if self.d.upstream_model:
            self.r["model"] = self.d.upstream_model
        self.final = self.r
        kind = "response.incomplete" if self.r["status"] == "incomplete" else "response.completed"
        out.append(self._ev(kind, response=self.r))
        return out

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        out = self._close("incomplete")
        code = "rate_limit_exceeded" if error.get("type") == "rate_limit_error" else "server_error"
        out.append(
            self._ev(
                "error",
                code=error.get("code") or code,
                message=error.get("message") or "error",
                param=error.get("param"),
            )
        )
        self.r["status"] = "failed"
        self.r["error"] = {"code": code, "message": error.get("message") or "error"}
        self.final = self.r
        out.append(self._ev("response.failed", response=self.r))
        return out


async def events(
    stream: EventStream,
    chunks: AsyncIterator[dict[str, Any]],
    before_last: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """The event stream; `before_last(response)` runs before the final event of a
    finished (not failed) response goes out, so a client that chains on
    response.completed finds it stored."""
    for b in stream.start():
        yield b
    async for ch in chunks:
        if "error" in ch and not ch.get("choices"):
            for b in stream.fail(ch["error"]):
                yield b
            return
        for b in stream.feed(ch):
            yield b
    tail = stream.end()
    for b in tail[:-1]:
        yield b
    if before_last is not None and stream.final is not None:
        await before_last(stream.final)
    yield tail[-1]
