"""Run in the instructor venv: a structured answer (tool-call mode) through thinkgate on
the reasoning route, then a follow-up turn with that answer in the history."""

import json
import sys

import instructor
from openai import OpenAI
from pydantic import BaseModel


class Weather(BaseModel):
    city: str


raw = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, default_headers={"x-thinkgate-force-route": "reasoning"})
client = instructor.from_openai(raw)
messages = [{"role": "user", "content": "Which city is the Eiffel tower in?"}]
weather, completion = client.chat.completions.create_with_completion(model="auto", response_model=Weather, messages=messages, max_retries=0)
msg = completion.choices[0].message
messages.append(msg.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "ok"})
follow = raw.chat.completions.create(model="auto", messages=messages)
print(json.dumps({"city": weather.city, "reasoning_back": "reasoning_content" in messages[1], "follow": follow.choices[0].message.content}))
