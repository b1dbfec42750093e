"""The official openai SDK's Responses API against a real `thinkgate serve`:
on the embedded default (real SmolLM2 on llama.cpp), and in front of a strict
scripted upstream that makes tool calls (tests/e2e/tool_upstream.py)."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.e2e.tool_upstream import tool_gateway_url  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def client(gateway_url: str) -> OpenAI:
    return OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", timeout=180, max_retries=0)


@pytest.fixture(scope="module")
def tools_client(tool_gateway_url: str) -> OpenAI:  # noqa: F811
    return OpenAI(base_url=f"{tool_gateway_url}/v1", api_key="unused", timeout=60, max_retries=0)


# -- real SmolLM2 ---------------------------------------------------------------------------------


def test_create_on_a_real_model(client: OpenAI):
    raw = client.responses.with_raw_response.create(
        model="fast",
        instructions="Answer in one short sentence.",
        input="What colour is the sky?",
        max_output_tokens=32,
        temperature=0,
    )
    resp = raw.parse()
    assert resp.id.startswith("resp_") and resp.object == "response"
    assert resp.output_text.strip()
    assert resp.status in ("completed", "incomplete")
    assert (
        resp.usage.output_tokens > 0 and resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    )
    assert raw.headers["x-thinkgate-route"] == "fast" and "x-thinkgate-request-id" in raw.headers


def test_reasoning_route_on_a_real_model(client: OpenAI):
    raw = client.responses.with_raw_response.create(
        model="reasoning", input="What is 2 + 3?", max_output_tokens=96, temperature=0,
        # the session's gateway is shared: another test's answer to this prompt must not be replayed
        extra_headers={"x-thinkgate-cache-control": "no-cache, no-store"},
    )
    resp = raw.parse()
    assert raw.headers["x-thinkgate-route"] == "reasoning" and raw.headers["x-thinkgate-deer"].startswith("reason=")
    kinds = [o.type for o in resp.output]
    assert set(kinds) <= {"reasoning", "message"} and "message" in kinds
    if "reasoning" in kinds:
        item = resp.output[kinds.index("reasoning")]
        assert item.content and item.content[0].text.strip()


def test_stream_true_on_a_real_model(client: OpenAI):
    events = list(
        client.responses.create(model="fast", input="Name a fruit.", max_output_tokens=16, temperature=0, stream=True)
    )
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text.strip() and final.output_text == text and final.usage.output_tokens > 0


def test_unknown_model_and_previous_response(client: OpenAI):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="fast", input="x", previous_response_id="resp_missing")
    assert "Previous response with id 'resp_missing' not found." in str(e.value)


# -- tool loops through a strict upstream -----------------------------------------------------------


def test_stream_helper(tools_client: OpenAI):
    with tools_client.responses.stream(model="fast", input="hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the tool upstream."
    assert final.status == "completed" and final.usage.total_tokens == 28


def test_stream_is_not_buffered(tools_client: OpenAI):
    import time

    seen = []
    with tools_client.responses.stream(model="slow", input="hello") as stream:
        for e in stream:
            if e.type == "response.output_text.delta":
                seen.append(time.monotonic())
    # five words 0.2 s apart upstream: they reach the client spread out, not in one burst at the end
    assert len(seen) == 5 and seen[-1] - seen[0] > 0.5


@pytest.mark.parametrize("stream", [False, True])
def test_tool_loop_with_previous_response_id(tools_client: OpenAI, stream: bool):
    # turn 1 on the reasoning route: its thinking must not reach the strict upstream on turn 2
    def create(**kw):
        if not stream:
            return tools_client.responses.create(**kw)
        with tools_client.responses.stream(**kw) as s:
            for _ in s:
                pass
            return s.get_final_response()

    first = create(model="reasoning", input="Weather in Paris?", tools=[WEATHER])
    assert [o.type for o in first.output] == ["reasoning", "function_call"]
    assert first.output[0].content[0].text.strip() == "I should look this up."
    call = first.output[1]
    assert call.name == "get_weather" and call.arguments == '{"city": "Paris"}' and call.call_id
    second = create(
        model="auto",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "The tool said: sunny, 21 C"
    assert second.previous_response_id == first.id


def test_tool_loop_with_the_full_input_list(tools_client: OpenAI):
    history: list = [{"role": "user", "content": "Weather in Paris?"}]
    first = tools_client.responses.create(model="reasoning", input=history, tools=[WEATHER], store=False)
    history += first.output  # the SDK's own output items, the reasoning item among them
    call = next(o for o in first.output if o.type == "function_call")
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "rain"})
    second = tools_client.responses.create(model="reasoning", input=history, tools=[WEATHER], store=False)
    assert second.output_text == "The tool said: rain"
    with pytest.raises(openai.NotFoundError):
        tools_client.responses.retrieve(first.id)  # store=False


def test_retrieve_delete_and_input_items(tools_client: OpenAI):
    made = tools_client.responses.create(
        model="fast", input=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    )
    got = tools_client.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == made.output_text
    items = tools_client.responses.input_items.list(made.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["one", "two"]
    assert [i.content[0].text for i in tools_client.responses.input_items.list(made.id, limit=1)] == [
        "two",
        "one",
    ]  # auto-paged
    tools_client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        tools_client.responses.retrieve(made.id)


def test_bad_request_is_an_openai_error(tools_client: OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        # a tool the client runs that a chat upstream cannot call (hosted ones are dropped instead)
        tools_client.responses.create(model="fast", input="x", tools=[{"type": "local_shell"}])
    assert e.value.body["param"] == "tools[0].type"


def test_the_tool_upstream_is_strict():
    # what the tool loops above rely on: a leaked reasoning field would be a 400
    import httpx

    from tests.e2e.tool_upstream import ToolUpstream

    with ToolUpstream() as up:
        msgs = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "t"},
            {"role": "user", "content": "q2"},
        ]
        r = httpx.post(f"{up.api_base}/chat/completions", json={"model": "tool-fast", "messages": msgs}, timeout=10)
        assert r.status_code == 400 and "unknown field(s) reasoning_content for role 'assistant'" in r.text
        r = httpx.post(
            f"{up.api_base}/chat/completions",
            json={"model": "tool-fast", "messages": msgs[:1], "instructions": "x"},
            timeout=10,
        )
        assert r.status_code == 400
