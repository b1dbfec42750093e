"""No markup in answers (issue 27): thinking delimiters never reach answer text, in
any protocol, streamed or not. The splitter is checked on pieces that cut a
delimiter anywhere; then every front end is driven with the wrapper build_model puts
on each configured model (router/deer/clients.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from router import config
from router.app import create_app
from router.upstreams.fake import FakeReply, FakeUpstream
from router.upstreams.markup import CleanAnswers, ThinkSplitter, clean_completion

STRAY = "10 + 3 = 13, after rounding.\n</think>"  # what SmolLM2's reasoning role wrote
INLINE = "<think>\nlet me add 10 and 3\n</think>\n\n13"  # a model without a reasoning parser


def split_all(text: str, cut: list[int]) -> tuple[str, str]:
    sp, answer, thinking, last = ThinkSplitter(), "", "", 0
    for c in [*cut, len(text)]:
        a, t = sp.feed(text[last:c])
        answer, thinking, last = answer + a, thinking + t, c
    a, t = sp.flush()
    return answer + a, thinking + t


@pytest.mark.parametrize("text", [STRAY, INLINE, "a <b> c < d </thin", "x</think>y<think>z"])
def test_every_cut_gives_the_same_split_and_no_delimiter(text):
    whole = split_all(text, [])
    for i in range(len(text)):
        for j in range(i, len(text), 3):
            assert split_all(text, [i, j]) == whole
    assert "<think>" not in whole[0] and "</think>" not in whole[0]


def test_text_that_only_looks_like_a_delimiter_is_kept():
    assert split_all("a <b> c < d </thin", [3, 9]) == ("a <b> c < d </thin", "")
    assert split_all(INLINE, [])[0].strip() == "13"
    body = clean_completion({"choices": [{"index": 0, "message": {"role": "assistant", "content": INLINE}}]})
    msg = body["choices"][0]["message"]
    assert msg["content"] == "13" and msg["reasoning_content"] == "let me add 10 and 3"


def make(content: str):
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True}},
        "routes": {"auto": {}}, "selfref": {"enabled": False}, "cache": {"enabled": False},
    })  # fmt: skip
    ups = {n: CleanAnswers(FakeUpstream(n, f"{n}-model", lambda b: FakeReply(content))) for n in ("fast", "reasoning")}
    app = create_app(s, upstreams=ups)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg")


def answer_text(path: str, r: httpx.Response, stream: bool) -> str:
    if not stream:
        b = r.json()
        if path == "/v1/chat/completions":
            return b["choices"][0]["message"]["content"]
        if path == "/v1/completions":
            return b["choices"][0]["text"]
        if path == "/v1/messages":
            return "".join(c.get("text", "") for c in b["content"] if c["type"] == "text")
        return "".join(p["text"] for o in b["output"] if o["type"] == "message" for p in o["content"])
    out = []
    for line in r.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if path == "/v1/chat/completions":
            out += [c["delta"].get("content") or "" for c in ev.get("choices") or []]
        elif path == "/v1/completions":
            out += [c.get("text") or "" for c in ev.get("choices") or []]
        elif path == "/v1/messages" and ev.get("type") == "content_block_delta":
            out.append(ev["delta"].get("text", ""))
        elif path == "/v1/responses" and ev.get("type") == "response.output_text.delta":
            out.append(ev["delta"])
    return "".join(out)


def request(path: str, stream: bool) -> dict[str, Any]:
    if path == "/v1/completions":
        return {"model": "auto", "prompt": "10 + 3?", "stream": stream}
    if path == "/v1/messages":
        return {"model": "auto", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "10 + 3?"}]}
    if path == "/v1/responses":
        return {"model": "auto", "input": "10 + 3?", "stream": stream}
    return {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "10 + 3?"}]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"])
@pytest.mark.parametrize("content, answer", [(STRAY, "10 + 3 = 13, after rounding."), (INLINE, "13")])
async def test_no_front_end_shows_a_thinking_delimiter(path, stream, content, answer):
    client = make(content)
    r = await client.post(path, json=request(path, stream))
    assert r.status_code == 200, r.text
    text = answer_text(path, r, stream)
    assert "<think>" not in text and "</think>" not in text
    assert text.strip() == answer
    assert "think>" not in r.text  # nowhere in the reply: the thinking moved without its delimiters
