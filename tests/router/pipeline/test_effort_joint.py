"""routing.joint and routing.effort through the app: the joint policy's cut and
P-dependent Self-Ref threshold; DEER threshold and thinking budget by P,
capped by the request's reasoning_effort."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from router import config
from router.app import create_app
from router.deer.run import start_run
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeReply
from tests.router.pipeline.test_rules_step import ConstEmbedder, FixedClassifier, RecordingUpstream


def make(routing: dict[str, Any], rules: list[dict[str, Any]] | None = None):
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True}},
        "selfref": {"enabled": True, "mode": "mean_logprob", "threshold": 0.5},
        "cache": {"enabled": False},
        "routing": routing,
        "rules": rules or [],
    })
    ups = {"fast": RecordingUpstream("fast", "fast-model", lambda b: FakeReply("4", token_prob=0.6)),
           "reasoning": RecordingUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42"))}
    app = create_app(s, upstreams=ups, embedder=ConstEmbedder(), classifier=FixedClassifier())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), ups


def chat(content: str, **body: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **body}


DEBUG = {"x-thinkgate-debug": "1"}
JOINT = {"joint": {"p_hi": 0.8, "edges": [0.5], "thresholds": [0.3, 0.7]}}


async def test_joint_answers_fast_below_p_hi_and_escalates_on_its_p_bin_threshold():
    client, _ = make(JOINT)
    # P 0.2: bin 0, threshold 0.3, confidence 0.6 -> kept on fast
    d = (await client.post("/v1/chat/completions", json=chat("easy"), headers=DEBUG)).json()["thinkgate"]
    assert (d["route"], d["threshold"], d["selfref_threshold"], d["escalated"]) == ("fast", 0.8, 0.3, False)
    # P 0.7: under p_hi (0.8) so fast first, bin 1 threshold 0.7 > 0.6 -> escalated
    d = (await client.post("/v1/chat/completions", json=chat("hard"), headers=DEBUG)).json()["thinkgate"]
    assert (d["route"], d["selfref_threshold"], d["escalated"], d["reason"]) == ("reasoning", 0.7, True, "escalated")


async def test_joint_p_hi_reasons_at_once_and_a_client_threshold_wins():
    client, _ = make({"joint": {"p_hi": 0.6, "thresholds": [0.3]}})
    d = (await client.post("/v1/chat/completions", json=chat("hard"), headers=DEBUG)).json()["thinkgate"]
    assert d["route"] == "reasoning" and d["reason"] == "classifier" and d["escalated"] is False
    client, _ = make(JOINT)
    h = {**DEBUG, "x-thinkgate-selfref-threshold": "0.1"}
    d = (await client.post("/v1/chat/completions", json=chat("hard"), headers=h)).json()["thinkgate"]
    assert d["selfref_threshold"] == 0.1 and d["escalated"] is False


EFFORT = {"effort": [{"below": 0.5, "deer_threshold": 0.8, "thinking_tokens": 100},
                     {"below": 1.0001, "deer_threshold": 0.97, "thinking_tokens": 1000}]}


async def test_effort_follows_p_and_the_request_effort_caps_the_budget():
    client, ups = make(EFFORT)
    await client.post("/v1/chat/completions", json=chat("easy"), headers={"x-thinkgate-force-route": "reasoning"})
    # forced: no P, so no step applies
    assert ups["reasoning"].ctxs[-1].controls.deer.thinking_tokens is None
    client, ups = make({**EFFORT, "joint": {"p_hi": 0.0, "thresholds": [0.0]}})  # every prompt reasons at once
    await client.post("/v1/chat/completions", json=chat("easy"))
    deer = ups["reasoning"].ctxs[-1].controls.deer
    assert (deer.threshold, deer.thinking_tokens) == (0.8, 100)
    await client.post("/v1/chat/completions", json=chat("hard"))
    deer = ups["reasoning"].ctxs[-1].controls.deer
    assert (deer.threshold, deer.thinking_tokens) == (0.97, 1000)
    await client.post("/v1/chat/completions", json=chat("hard", reasoning_effort="low"))  # low: 512 tokens
    assert ups["reasoning"].ctxs[-1].controls.deer.thinking_tokens == 512
    h = {"x-thinkgate-deer": "threshold=0.5"}
    await client.post("/v1/chat/completions", json=chat("hard"), headers=h)
    assert ups["reasoning"].ctxs[-1].controls.deer.threshold == 0.5  # the client's threshold wins


async def test_deer_thinks_within_the_capped_budget():
    from router.config import DeerSettings
    from router.types import Controls, DeerControl

    class Renderer:
        async def render(self, messages: list[dict[str, Any]]) -> tuple[str, int]:
            return "prompt", 3

    body = {"messages": [{"role": "user", "content": "q"}], "max_tokens": 1000}
    run = await start_run(body, CallContext(controls=Controls(deer=DeerControl(thinking_tokens=64))), DeerSettings(), Renderer())
    assert run.state.thinking_budget == 64
    run = await start_run(body, CallContext(controls=Controls()), DeerSettings(), Renderer())
    assert run.state.thinking_budget == 800
    # a client's own budget (Anthropic thinking.budget_tokens) and the effort map: the smaller wins
    both = DeerControl(budget_tokens=300, thinking_tokens=64)
    assert (await start_run(body, CallContext(controls=Controls(deer=both)), DeerSettings(), Renderer())).state.thinking_budget == 64
    both = DeerControl(budget_tokens=30, thinking_tokens=64)
    assert (await start_run(body, CallContext(controls=Controls(deer=both)), DeerSettings(), Renderer())).state.thinking_budget == 30


@pytest.mark.parametrize(("routing", "message"), [
    ({"joint": {"p_hi": 0.5, "edges": [0.3], "thresholds": [0.2]}}, "1 edges need 2 thresholds"),
    ({"effort": [{"below": 0.8}, {"below": 0.4}]}, "ascending"),
])
def test_bad_routing_sections_are_reported(routing: dict[str, Any], message: str):
    with pytest.raises(config.ConfigError, match=message):
        config.from_dict({"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake"}}, "routing": routing})
