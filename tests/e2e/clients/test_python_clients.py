"""Client SDKs in this venv (openai, litellm, langchain-openai) running multi-turn
tool loops through a real `thinkgate serve` whose upstreams are strict: turn 1 is
forced onto the reasoning route, so its reply carries `reasoning_content` and the
SDK sends that message back on turn 2."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.components import missing
from tests.e2e.clients.conftest import StrictGateway

pytestmark = pytest.mark.slow

REASONING = {"x-thinkgate-force-route": "reasoning"}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def _clean(gw: StrictGateway, before: int) -> None:
    rejected = gw.rejected()[before:]
    assert rejected == [], rejected


def _last_history(gw: StrictGateway) -> list[dict[str, Any]]:
    return gw.log("think")["accepted"][-1]["messages"]


def test_the_gateway_reaches_a_strict_upstream(strict_gateway: StrictGateway):
    bad = [*QUESTION, {"role": "assistant", "content": "x", "reasoning_content": "t"}, {"role": "user", "content": "again"}]
    direct = httpx.post(f"{strict_gateway.think}/v1/chat/completions", json={"model": "m", "messages": bad}, timeout=10)
    assert direct.status_code == 400 and "reasoning_content for role 'assistant'" in direct.text
    via = httpx.post(f"{strict_gateway.base}/chat/completions", json={"model": "auto", "messages": bad}, headers=REASONING, timeout=30)
    assert via.status_code == 200, via.text


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_openai_python_tool_loop(strict_gateway: StrictGateway, stream: bool):
    from openai import OpenAI

    gw = strict_gateway
    client = OpenAI(base_url=gw.base, api_key="unused", default_headers=REASONING, max_retries=0, timeout=60)
    before = len(gw.rejected())
    messages: list[Any] = list(QUESTION)
    if stream:
        with client.chat.completions.stream(model="auto", messages=messages, tools=[TOOL]) as s:
            for _ in s:
                pass
            first = s.get_final_completion()
    else:
        first = client.chat.completions.create(model="auto", messages=messages, tools=[TOOL])
    msg = first.choices[0].message
    assert msg.tool_calls and msg.tool_calls[0].function.name == "get_weather"
    assert (msg.model_extra or {}).get("reasoning_content")  # turn 1 was a reasoning turn
    # the documented loop: append the assistant message as the SDK returned it
    messages.append(msg.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "sunny, 21 C"})
    assert "reasoning_content" in messages[1]
    second = client.chat.completions.create(model="auto", messages=messages, tools=[TOOL])
    assert "sunny, 21 C" in second.choices[0].message.content
    _clean(gw, before)
    assert "reasoning_content" not in _last_history(gw)[1]


def test_openai_python_n2(strict_gateway: StrictGateway):
    from openai import OpenAI

    client = OpenAI(base_url=strict_gateway.base, api_key="unused", max_retries=0, timeout=60)
    r = client.chat.completions.create(model="auto", messages=QUESTION, n=2)
    assert [c.index for c in r.choices] == [0, 1] and all(c.message.content for c in r.choices)


def test_litellm_as_a_client_tool_loop(strict_gateway: StrictGateway):
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        missing("litellm's client path imports mcp: pip install mcp (the test extra)")
    import litellm

    gw = strict_gateway
    before = len(gw.rejected())
    kw = {"model": "openai/auto", "api_base": gw.base, "api_key": "unused", "extra_headers": REASONING, "tools": [TOOL]}
    messages: list[Any] = list(QUESTION)
    first = litellm.completion(messages=messages, **kw)
    msg = first.choices[0].message
    assert msg.tool_calls
    messages.append(msg)  # litellm's own Message object, as its docs do it
    messages.append({"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "sunny, 21 C"})
    second = litellm.completion(messages=messages, **kw)
    assert "sunny, 21 C" in second.choices[0].message.content
    _clean(gw, before)
    sent = _last_history(gw)[1]
    assert set(sent) <= {"role", "content", "tool_calls", "name"}, sent


def _langchain(gw: StrictGateway, **kw: Any) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="auto", base_url=gw.base, api_key="unused", default_headers=REASONING, max_retries=0, timeout=60, **kw)


def test_langchain_openai_tool_loop(strict_gateway: StrictGateway):
    from langchain_core.messages import HumanMessage, ToolMessage

    gw = strict_gateway
    before = len(gw.rejected())
    llm = _langchain(gw).bind_tools([TOOL])
    messages: list[Any] = [HumanMessage("What is the weather in Paris?")]
    ai = llm.invoke(messages)
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather"
    messages += [ai, ToolMessage("sunny, 21 C", tool_call_id=ai.tool_calls[0]["id"])]
    final = llm.invoke(messages)
    assert "sunny, 21 C" in final.content
    streamed = "".join(str(c.content) for c in _langchain(gw).stream("hello"))
    assert streamed.strip()
    _clean(gw, before)


def test_langchain_openai_responses_api(strict_gateway: StrictGateway):
    probe = httpx.post(f"{strict_gateway.base}/responses", json={"model": "auto", "input": "hi"}, timeout=30)
    if probe.status_code == 404:
        pytest.fail("POST /v1/responses is not served")
    ai = _langchain(strict_gateway, use_responses_api=True).invoke("What is 2+2?")
    assert ai.content
