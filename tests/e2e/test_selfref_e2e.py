"""Self-Ref escalation end to end: a real `thinkgate serve` on the embedded
default (SmolLM2 on llama.cpp plays the fast model and, with DEER, the
reasoning model). The threshold is set per request, so the same gateway shows
escalation at a high threshold and none at a low one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai import OpenAI

pytestmark = pytest.mark.slow

FAST_MODEL = "smollm2-135m-instruct"  # model ids of router/embedded.yaml
REASONING_MODEL = "smollm2-135m-thinking"


def controls(threshold: str, **more: str) -> dict[str, str]:
    return {
        "x-thinkgate-force-route": "fast",  # skip the classifier: Self-Ref runs on the fast route
        "x-thinkgate-selfref-threshold": threshold,
        "x-thinkgate-cache-control": "no-cache, no-store",
        "x-thinkgate-debug": "1",
        **more,
    }


def ask(client: OpenAI, prompt: str, threshold: str) -> tuple[Any, httpx.Headers, dict[str, Any]]:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=32,
        temperature=0,
        extra_headers=controls(threshold),
    )
    resp = raw.parse()
    return resp, raw.headers, (resp.model_extra or {}).get("thinkgate") or {}


@pytest.fixture(scope="module")
def client(gateway_url: str) -> OpenAI:
    return OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", timeout=300, max_retries=0)


def test_high_threshold_escalates_to_the_reasoning_route(client: OpenAI):
    resp, h, decision = ask(client, "What is 17 + 25?", "1.5")
    assert h["x-thinkgate-escalated"] == "true"
    assert h["x-thinkgate-route"] == "reasoning"
    assert h["x-thinkgate-model"] == REASONING_MODEL
    assert h["x-thinkgate-deer"] != "off"  # re-answered by the DEER-driven reasoning upstream
    conf = float(h["x-thinkgate-confidence"])  # the fast answer was scored before escalating
    assert 0.0 <= conf <= 1.0
    assert decision["escalated"] is True and decision["reason"] == "escalated"
    assert decision["selfref_threshold"] == 1.5 and decision["selfref_mode"]
    assert f"{decision['confidence']:.4f}" == h["x-thinkgate-confidence"]
    assert resp.choices[0].message.content.strip()
    assert resp.choices[0].logprobs is None  # the client did not ask for logprobs


def test_zero_threshold_keeps_the_fast_answer(client: OpenAI):
    resp, h, decision = ask(client, "What is 17 + 26?", "0")
    assert h["x-thinkgate-escalated"] == "false"
    assert h["x-thinkgate-route"] == "fast"
    assert h["x-thinkgate-model"] == FAST_MODEL
    assert h["x-thinkgate-deer"] == "off"
    assert 0.0 <= float(h["x-thinkgate-confidence"]) <= 1.0
    assert decision["escalated"] is False and decision["route"] == "fast"
    assert resp.choices[0].message.content.strip()
    assert resp.choices[0].logprobs is None


def test_escalation_follows_the_confidence(client: OpenAI):
    # a threshold inside (0, 1): whatever the model's confidence, the decision must match it
    for prompt, threshold in (("What is 4 + 5?", "0.55"), ("What is 4821 * 377?", "0.55")):
        _, h, decision = ask(client, prompt, threshold)
        escalated = decision["confidence"] < float(threshold)
        assert h["x-thinkgate-escalated"] == ("true" if escalated else "false"), (prompt, decision["confidence"])
        assert h["x-thinkgate-route"] == ("reasoning" if escalated else "fast")


def stream(gateway_url: str, prompt: str, threshold: str) -> tuple[httpx.Headers, list[dict[str, Any]], int]:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}], "max_tokens": 32, "temperature": 0, "stream": True}
    events, done = [], 0
    with httpx.stream("POST", f"{gateway_url}/v1/chat/completions", json=body, headers=controls(threshold), timeout=300) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        headers = r.headers
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            assert done == 0, "data after [DONE]"
            if line == "data: [DONE]":
                done += 1
                continue
            events.append(json.loads(line[len("data: ") :]))
    return headers, events, done


def one_answer(events: list[dict[str, Any]], done: int) -> tuple[str, str]:
    """Assert the stream carries exactly one answer; return (content, model)."""
    assert done == 1
    assert not any("error" in e for e in events)
    choices = [c for e in events for c in e.get("choices", [])]
    assert sum(1 for c in choices if (c.get("delta") or {}).get("role")) == 1
    assert sum(1 for c in choices if c.get("finish_reason")) == 1
    models = {e.get("model") for e in events if e.get("choices")}
    assert len(models) == 1, f"chunks from more than one model: {models}"
    content = "".join((c.get("delta") or {}).get("content") or "" for c in choices)
    return content, models.pop()


@pytest.fixture(scope="module")
def escalated_stream(gateway_url: str) -> tuple[httpx.Headers, list[dict[str, Any]], int]:
    return stream(gateway_url, "What is 36 + 47?", "1.5")


def test_streaming_escalated_client_sees_only_the_reasoning_answer(escalated_stream):
    h, events, done = escalated_stream
    assert h["x-thinkgate-escalated"] == "true" and h["x-thinkgate-route"] == "reasoning"
    content, model = one_answer(events, done)
    assert model == REASONING_MODEL  # no chunk of the buffered fast answer leaked
    assert content.strip()
    assert "<CN>" not in content and "<UN>" not in content
    decision = next(e["thinkgate"] for e in events if "thinkgate" in e)
    assert decision["escalated"] is True and decision["confidence"] is not None
    assert f"{decision['confidence']:.4f}" == h["x-thinkgate-confidence"]


def test_streaming_escalated_headers_name_the_answering_model(escalated_stream):
    h, _, _ = escalated_stream
    assert h["x-thinkgate-model"] == REASONING_MODEL


def test_streaming_kept_fast_answer_is_sent_once(gateway_url: str):
    h, events, done = stream(gateway_url, "What is 36 + 48?", "0")
    assert h["x-thinkgate-escalated"] == "false" and h["x-thinkgate-route"] == "fast"
    content, model = one_answer(events, done)
    assert model == FAST_MODEL == h["x-thinkgate-model"]
    assert content.strip()
    assert all(c.get("logprobs") is None for e in events for c in e.get("choices", []))
