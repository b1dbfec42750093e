"""Runs in the google-genai venv (scripts/setup_gemini_clients.sh), not in .venv:
the SDK's calls through thinkgate, one JSON line of what came back on stdout.
argv: base_url api_key model thinking_model"""

import json
import sys
from pathlib import Path

from google import genai
from google.genai import types

base, key, model, thinker = sys.argv[1:5]
client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=base))
out: dict = {}

r = client.models.generate_content(
    model=model,
    contents="Say hello.",
    config=types.GenerateContentConfig(
        system_instruction="Be brief.",
        temperature=0.3,
        max_output_tokens=200,
        stop_sequences=["STOP-HERE"],
        safety_settings=[types.SafetySetting(category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_NONE")],
    ),
)
out["text"] = r.text
out["total_tokens"] = r.usage_metadata.total_token_count
out["stream"] = "".join(ch.text or "" for ch in client.models.generate_content_stream(model=model, contents="Say hello."))
out["count"] = client.models.count_tokens(model=model, contents="Say hello.").total_tokens

r = client.models.generate_content(
    model=thinker,
    contents="Think it over: is 7 prime?",
    config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=512)),
)
out["thoughts"] = [p.text for p in r.candidates[0].content.parts if p.thought]
out["answer_after_thinking"] = "".join(p.text or "" for p in r.candidates[0].content.parts if not p.thought)


def read_file(path: str) -> str:
    """Read a text file and return its contents."""
    out.setdefault("ran", []).append(path)
    return Path(path).read_text()


# a function-calling round trip by hand: the model's call, the tool run here, its result sent back
decl = types.FunctionDeclaration(
    name="read_file",
    description="Read a text file and return its contents.",
    parameters=types.Schema(type="OBJECT", properties={"path": types.Schema(type="STRING")}, required=["path"]),
)
config = types.GenerateContentConfig(
    tools=[types.Tool(function_declarations=[decl])],
    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
)
contents = [types.Content(role="user", parts=[types.Part(text="What does the notes file say?")])]
r = client.models.generate_content(model=model, contents=contents, config=config)
call = r.function_calls[0]
result = read_file(**call.args)
contents += [
    r.candidates[0].content,
    types.Content(role="user", parts=[types.Part.from_function_response(name=call.name, response={"output": result})]),
]
r2 = client.models.generate_content(model=model, contents=contents, config=config)
out["manual"] = {"tool": call.name, "answer": r2.text}

# the SDK's automatic function calling (it runs read_file itself), streamed
chunks = client.models.generate_content_stream(
    model=model, contents="What does the notes file say?", config=types.GenerateContentConfig(tools=[read_file])
)
out["automatic"] = "".join(ch.text or "" for ch in chunks)
print(json.dumps(out))
