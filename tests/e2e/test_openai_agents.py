"""The OpenAI Agents SDK on its default model path (the Responses API) with a
function tool, against a real `thinkgate serve` in front of the strict tool
upstream. The SDK needs openai>=3, so it runs from its own venv
(scripts/setup_agents_venv.sh, which scripts/install.sh --test calls)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.components import missing
from tests.e2e.tool_upstream import tool_gateway_url  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

VENV = Path(os.environ.get("THINKGATE_AGENTS_VENV") or Path.home() / ".cache" / "thinkgate-venvs" / "openai-agents")

AGENT = r"""
import asyncio, json, sys
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled

paths = []  # which API the SDK's default path calls

async def record(request):
    paths.append(request.method + " " + request.url.path)

set_tracing_disabled(True)
http = DefaultAsyncHttpxClient(event_hooks={"request": [record]})
set_default_openai_client(AsyncOpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, http_client=http), use_for_tracing=False)
seen = []

@function_tool
def get_weather(city: str) -> str:
    '''The weather in a city.'''
    seen.append(city)
    return f"sunny in {city}"

async def main():
    agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model=sys.argv[2])
    result = await Runner.run(agent, "What is the weather in Paris?")
    streamed = Runner.run_streamed(agent, "And now, streamed?")
    kinds = [e.type async for e in streamed.stream_events()]
    print(json.dumps({
        "final": result.final_output, "items": [i.type for i in result.new_items], "calls": seen,
        "streamed_final": streamed.final_output, "stream_events": sorted(set(kinds)), "paths": sorted(set(paths)),
    }))

asyncio.run(main())
"""


@pytest.mark.parametrize("model", ["fast", "reasoning"])
def test_agent_with_a_function_tool(tool_gateway_url: str, model: str):  # noqa: F811
    py = VENV / "bin" / "python"
    if not py.is_file():
        missing(f"no openai-agents venv at {VENV}: run scripts/setup_agents_venv.sh")
    out = subprocess.run(
        [str(py), "-c", AGENT, f"{tool_gateway_url}/v1", model],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["paths"] == ["POST /v1/responses"]
    assert r["calls"] == ["Paris", "Paris"]
    assert r["final"] == r["streamed_final"] == "The tool said: sunny in Paris"
    assert (
        "tool_call_item" in r["items"] and "tool_call_output_item" in r["items"] and "message_output_item" in r["items"]
    )
    if model == "reasoning":
        assert "reasoning_item" in r["items"]  # the thinking reached the agent, and (strict upstream) never went back
    assert "raw_response_event" in r["stream_events"] and "run_item_stream_event" in r["stream_events"]
