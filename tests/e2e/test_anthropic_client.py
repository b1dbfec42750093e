"""The official `anthropic` SDK (and openai's embeddings) against a real `thinkgate serve`:
the embedded default (SmolLM2 on llama.cpp, MiniLM for routing and embeddings), and a
second gateway with an API key configured (fake models, so it starts in seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import numpy as np
import pytest
from openai import OpenAI

from tests.e2e.serve import serve

pytestmark = pytest.mark.slow

FAST = {"x-thinkgate-force-route": "fast"}
# anthropic 2.x dropped `temperature` from create(); the API (and thinkgate) still take it
T0 = {"temperature": 0}
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def client(gateway_url: str) -> anthropic.Anthropic:
    # no key configured on this gateway: the SDK still sends its x-api-key and anthropic-version
    # the gateway is shared by the session's e2e tests: neither read nor fill its cache, so
    # these answers come from the model and leave the other tests' requests to the model too
    return anthropic.Anthropic(
        base_url=gateway_url, api_key="unused", timeout=180, max_retries=0,
        default_headers={"x-thinkgate-cache-control": "no-cache, no-store"},
    )  # fmt: skip


def test_messages_create(client: anthropic.Anthropic):
    raw = client.messages.with_raw_response.create(
        model="auto", max_tokens=24, system="Answer in one short sentence.",
        messages=[{"role": "user", "content": "What colour is the sky?"}], extra_headers=FAST, extra_body=T0,
    )  # fmt: skip
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[-1].type == "text" and msg.content[-1].text.strip()
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert raw.headers["x-thinkgate-route"] in ("fast", "reasoning")


def test_messages_stream_text_and_final_message(client: anthropic.Anthropic):
    with client.messages.stream(
        model="fast", max_tokens=20, messages=[{"role": "user", "content": "Name a fruit."}], extra_body=T0
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip()
    assert [b.type for b in final.content] == ["text"] and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_tool_use_loop(client: anthropic.Anthropic):
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(
        model="fast", max_tokens=64, messages=messages, tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"}, extra_body=T0,
    )  # fmt: skip
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and uses, first
    assert uses[0].name == "get_weather" and isinstance(uses[0].input, dict)
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "Sunny, 22 degrees."}],
        },
    ]
    answer = client.messages.create(model="fast", max_tokens=32, messages=messages, tools=[WEATHER], extra_body=T0)
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert any(b.type in ("text", "tool_use") for b in answer.content)


def test_thinking_on_the_reasoning_route_within_the_budget(client: anthropic.Anthropic):
    raw = client.messages.with_raw_response.create(
        model="reasoning", max_tokens=160, thinking={"type": "enabled", "budget_tokens": 48},
        messages=[{"role": "user", "content": "What is 2 + 3?"}], extra_body=T0,
    )  # fmt: skip
    msg = raw.parse()
    assert raw.headers["x-thinkgate-route"] == "reasoning"
    deer = dict(p.strip().split("=") for p in raw.headers["x-thinkgate-deer"].split(";"))
    assert 0 < int(deer["thinking_tokens"]) <= 48  # the client's budget, not 80% of max_tokens
    kinds = [b.type for b in msg.content]
    assert kinds[0] == "thinking" and msg.content[0].thinking.strip() and msg.content[0].signature
    # the thinking goes back in the next turn as Anthropic clients send it; it is dropped upstream
    follow = client.messages.create(
        model="reasoning", max_tokens=96, thinking={"type": "enabled", "budget_tokens": 32},
        messages=[
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
            {"role": "user", "content": "And 3 + 4?"},
        ],
    )  # fmt: skip
    assert follow.content and follow.content[0].type == "thinking"


def test_count_tokens(client: anthropic.Anthropic):
    n = client.messages.count_tokens(
        model="auto", system="be brief", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert n.input_tokens > 0


def test_sdk_raises_typed_errors(client: anthropic.Anthropic):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="auto", max_tokens=8, messages=[{"role": "user", "content": "x"}], extra_body={"temperature": 3}
        )


def test_openai_sdk_embeddings(gateway_url: str):
    oa = OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", timeout=120, max_retries=0)
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue grew by 4%."]
    resp = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # the SDK asks for base64 and decodes it
    vecs = np.array([d.embedding for d in resp.data])
    assert vecs.shape == (3, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]  # a real sentence embedding: the paraphrase is closer
    assert resp.usage.prompt_tokens > 0
    floats = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vecs[0], atol=1e-6)


# -- a gateway with an API key configured ------------------------------------------------

KEY = "sk-e2e-anthropic-key"


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("keyed")
    cfg = tmp / "thinkgate.yaml"
    cfg.write_text(
        "models:\n"
        "  fast: {provider: fake, model: fake-fast}\n"
        "  reasoning: {provider: fake, model: fake-reasoning, reasoning: true}\n"
        "classifier: {enabled: false}\n"
        "selfref: {enabled: false}\n"
    )
    # /healthz: with a key configured /readyz wants it too
    with serve(tmp, cfg, env={"THINKGATE_API_KEYS": f"{KEY}:acme"}, ready_path="/healthz", timeout=120) as url:
        yield url


def test_x_api_key_auth_with_a_configured_key(keyed_gateway: str):
    good = anthropic.Anthropic(base_url=keyed_gateway, api_key=KEY, max_retries=0, timeout=30)
    msg = good.messages.create(model="auto", max_tokens=16, messages=[{"role": "user", "content": "hello"}])
    assert msg.content[0].text == "echo: hello"
    with good.messages.stream(model="auto", max_tokens=16, messages=[{"role": "user", "content": "hi you"}]) as s:
        assert "".join(s.text_stream) == "echo: hi you"
    bad = anthropic.Anthropic(base_url=keyed_gateway, api_key="sk-not-this-one", max_retries=0, timeout=30)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="auto", max_tokens=16, messages=[{"role": "user", "content": "hello"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    # the same key as x-api-key on an OpenAI route, and as a Bearer token
    r = httpx.get(f"{keyed_gateway}/v1/models", headers={"x-api-key": KEY})
    assert r.status_code == 200
    oa = OpenAI(base_url=f"{keyed_gateway}/v1", api_key=KEY, max_retries=0)
    assert (
        oa.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}]).choices[0].message.content
        == "echo: x"
    )
