"""The official openai client against a real `thinkgate serve` on the embedded
default: real SmolLM2 on llama.cpp behind the gateway."""

from __future__ import annotations

import pytest
from openai import OpenAI

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(gateway_url: str) -> OpenAI:
    return OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", timeout=180, max_retries=0)


def test_models_list(client: OpenAI):
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == "auto" and "fast" in ids and "reasoning" in ids


def test_chat_non_streaming_with_headers(client: OpenAI):
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "system", "content": "Answer in one short sentence."}, {"role": "user", "content": "What colour is the sky?"}],
        max_tokens=24,
        temperature=0,
        extra_headers={"x-thinkgate-force-route": "fast"},
    )
    resp = raw.parse()
    assert resp.choices[0].message.content.strip()
    assert resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0
    h = raw.headers
    assert h["x-thinkgate-route"] in ("fast", "reasoning")  # Self-Ref may escalate
    for name in ("x-thinkgate-difficulty", "x-thinkgate-escalated", "x-thinkgate-cache", "x-thinkgate-deer", "x-thinkgate-overhead-ms"):
        assert name in h


def test_chat_streaming(client: OpenAI):
    stream = client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text.append(c.delta.content or "")
    assert "".join(text).strip()
    assert usage is not None and usage.completion_tokens > 0


def test_completions(client: OpenAI):
    resp = client.completions.create(model="fast", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert resp.choices[0].text.strip() and resp.usage.completion_tokens > 0


def test_reasoning_route_returns_reasoning_and_answer(client: OpenAI):
    raw = client.chat.completions.with_raw_response.create(
        model="reasoning", messages=[{"role": "user", "content": "What is 2 + 3?"}], max_tokens=96, temperature=0
    )
    msg = raw.parse().choices[0].message
    assert raw.headers["x-thinkgate-route"] == "reasoning"
    assert raw.headers["x-thinkgate-deer"].startswith("reason=")
    assert (msg.content or "").strip() or (getattr(msg, "reasoning_content", "") or "").strip()


def test_bad_request_is_openai_error(client: OpenAI):
    import openai

    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}], temperature=9)
