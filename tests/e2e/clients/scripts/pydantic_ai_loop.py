"""Run in the pydantic-ai venv: an agent with a function tool, its chat model pointed
at thinkgate with turn 1 forced onto the reasoning route. Prints one JSON line."""

import json
import sys

from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

client = AsyncOpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, default_headers={"x-thinkgate-force-route": "reasoning"})
agent = Agent(OpenAIChatModel("auto", provider=OpenAIProvider(openai_client=client)))
calls = []


@agent.tool_plain
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return "sunny, 21 C"


result = agent.run_sync("What is the weather in Paris?")
print(json.dumps({"output": result.output, "tool_calls": calls, "requests": sum(1 for m in result.all_messages() if m.kind == "response")}))
