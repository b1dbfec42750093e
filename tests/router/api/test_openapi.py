"""/openapi.json and schemathesis against it: the app's own schema generates valid
requests (each must be answered 200 with a well-formed reply) and invalid ones
(each must be a 4xx in OpenAI's error shape); neither may ever get a 5xx.
THINKGATE_OPENAPI_EXAMPLES scales the run (default 400 per POST operation and mode: 1,600 generated requests)."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from router import config
from router.api import openapi
from router.app import create_app
from router.cache import build_cache
from router.upstreams.fake import FakeReply, FakeUpstream

EXAMPLES = int(os.environ.get("THINKGATE_OPENAPI_EXAMPLES", "400"))


def _settings() -> config.Settings:
    return config.from_dict(
        {
            "models": {
                "fast": {"provider": "fake", "model": "fast-model"},
                "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True},
            },
            "routes": {"auto": {}, "pinned": {"pin": "reasoning"}},
            "cache": {"semantic": False},
            "limits": {"max_messages": 16, "max_n": 3},
        }
    )


def _app() -> Any:
    s = _settings()
    ups = {
        "fast": FakeUpstream("fast", "fast-model"),
        "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="think")),
    }
    return create_app(s, upstreams=ups, cache=build_cache(s.cache))


async def test_openapi_document_lists_the_served_routes():
    app = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as c:
        r = await c.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/v1/chat/completions", "/v1/completions", "/v1/models", "/healthz", "/readyz",
        "/v1/responses", "/v1/responses/{response_id}", "/v1/responses/{response_id}/input_items",
        "/v1/messages", "/v1/messages/count_tokens", "/v1/embeddings",
        "/v1beta/models", "/v1beta/models/{model}", "/v1beta/models/{model}:generateContent",
        "/v1beta/models/{model}:streamGenerateContent", "/v1beta/models/{model}:countTokens",
        "/v1/models/{model}:generateContent", "/v1/models/{model}:streamGenerateContent", "/v1/models/{model}:countTokens",
    }  # fmt: skip
    # every client-facing route the app serves is documented (admin and dashboard are not client APIs)
    served = {getattr(r, "path", "") for r in app.routes}
    client_facing = {p for p in served if p.startswith(("/v1/", "/v1beta/")) or p in ("/healthz", "/readyz")}
    assert client_facing == set(doc["paths"])
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat["additionalProperties"] is False and chat["properties"]["n"]["maximum"] == 3
    schemathesis.openapi.from_dict(doc)  # loads as OpenAPI 3.1


def test_a_section_for_an_unmounted_front_end_is_left_out():
    def extra(s: config.Settings) -> openapi.Paths:
        return {"/v1/elsewhere": {"post": {"responses": {"200": {"description": "x"}}}}}

    doc = openapi.document(_settings(), ["/v1/chat/completions"], (*openapi.SECTIONS, extra))
    assert list(doc["paths"]) == ["/v1/chat/completions"]
    assert "/v1/elsewhere" in openapi.document(_settings(), None, (*openapi.SECTIONS, extra))["paths"]


def _check(case: Any, r: httpx.Response, mode: GenerationMode) -> str | None:
    """A problem with this answer, or None."""
    if r.status_code >= 500:
        return f"{r.status_code} {r.text[:300]}"
    ctype = r.headers.get("content-type", "")
    if r.status_code >= 400:
        if mode == GenerationMode.POSITIVE:
            return f"a valid request was refused: {r.status_code} {r.text[:300]}"
        err = r.json().get("error")
        if not (isinstance(err, dict) and err.get("message") and err.get("type")):
            return f"not an OpenAI error: {r.text[:200]}"
        return None
    if ctype.startswith("text/event-stream"):
        events = [ln[6:] for ln in r.text.split("\n") if ln.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return "stream without [DONE]"
        for e in events[:-1]:
            if "error" in json.loads(e):
                return f"error event in a stream: {e[:200]}"
    elif ctype.startswith("application/json"):
        body = r.json()
        if case.path.startswith("/v1/") and case.path != "/v1/models" and not body.get("choices"):
            return f"no choices: {r.text[:200]}"
    return None


_V, _I = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# GET routes take no input: there is nothing invalid to generate for them
CASES = [("/v1/chat/completions", "POST", _V), ("/v1/chat/completions", "POST", _I), ("/v1/completions", "POST", _V),
         ("/v1/completions", "POST", _I), ("/v1/models", "GET", _V), ("/healthz", "GET", _V), ("/readyz", "GET", _V)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("path,method,mode", CASES, ids=[f"{p}-{m.value}" for p, _, m in CASES])
def test_schemathesis_cases_never_get_a_5xx(path: str, method: str, mode: GenerationMode):
    app = _app()
    schema = schemathesis.openapi.from_dict(openapi.document(_settings()))
    op = schema[path][method]
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg", timeout=10)
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    few = path in ("/healthz", "/readyz", "/v1/models")
    strategy = op.as_strategy(generation_mode=mode)

    @settings(max_examples=20 if few else EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        kwargs: dict[str, Any] = {"headers": {k: str(v) for k, v in (case.headers or {}).items()}, "params": case.query or None}
        if method == "POST":
            body = case.body
            if isinstance(body, (dict, list, str, int, float, bool)) or body is None:
                kwargs["content"] = json.dumps(body).encode()
                kwargs["headers"]["content-type"] = "application/json"
        r = loop.run_until_complete(client.request(method, case.formatted_path, **kwargs))
        statuses[r.status_code] += 1
        problem = _check(case, r, mode)
        if problem:
            problems.append(f"{problem}\n   body: {json.dumps(case.body)[:400]}")

    try:
        run()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    print(f"{method} {path} {mode.value}: {sum(statuses.values())} cases, statuses {dict(statuses)}")
    assert not problems, f"{len(problems)} problems, e.g.\n" + "\n".join(problems[:5])
    assert not any(s >= 500 for s in statuses)
    if mode == GenerationMode.NEGATIVE and not few:
        assert sum(n for s, n in statuses.items() if 400 <= s < 500) > 0
