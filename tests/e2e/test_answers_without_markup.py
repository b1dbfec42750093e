"""The embedded default's reasoning role (SmolLM2 told to think inside <think> tags, under
DEER) against a real `thinkgate serve`: its answers reach the client without thinking
delimiters, streamed and not, on the OpenAI and the Anthropic front ends (issue 27: an
Anthropic text block ended "...rounding.\\n</think>"), and the decision record's steps
add up to its total with the reasoning call among them."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.slow

ASK = "What is 10 + 3? Think it through, then answer."


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_answers_carry_no_thinking_delimiters(gateway_url: str, stream: bool):
    with httpx.Client(base_url=gateway_url, timeout=300) as c:
        r = c.post("/v1/chat/completions", headers={"x-thinkgate-debug": "1"},
                   json={"model": "reasoning", "max_tokens": 96, "temperature": 0, "stream": stream,
                         "messages": [{"role": "user", "content": ASK}]})
        assert r.status_code == 200, r.text
        if stream:
            answer = "".join(c["delta"].get("content") or "" for line in r.text.splitlines()
                             if line.startswith("data: {") for c in json.loads(line[6:]).get("choices") or [])
        else:
            answer = r.json()["choices"][0]["message"]["content"]
        assert answer.strip() and "think>" not in answer
        if not stream:
            rec = r.json()["thinkgate"]
            assert any(k.startswith("upstream reasoning") for k in rec["steps"])
            assert sum(rec["steps"].values()) == pytest.approx(rec["total_ms"], abs=0.01)
        m = c.post("/v1/messages", json={"model": "reasoning", "max_tokens": 96, "stream": stream,
                                         "messages": [{"role": "user", "content": ASK}]})
        assert m.status_code == 200, m.text
        texts = []
        if stream:
            for line in m.text.splitlines():
                if line.startswith("data: "):
                    ev = json.loads(line[6:])
                    if ev.get("type") == "content_block_delta" and ev["delta"].get("type") == "text_delta":
                        texts.append(ev["delta"]["text"])
        else:
            texts = [b["text"] for b in m.json()["content"] if b["type"] == "text"]
        assert texts and "think>" not in "".join(texts)
