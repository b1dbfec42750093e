"""Rules through the whole app: a rule routes ahead of the classifier, sets the
threshold, DEER and Self-Ref for the request, and names itself in the header
and the decision record."""

from __future__ import annotations

from typing import Any

import httpx

from router import config
from router.app import create_app
from router.upstreams.base import CallContext
from router.upstreams.fake import FakeReply, FakeUpstream


class FixedClassifier:
    """P(needs reasoning) read from the prompt: 'hard' prompts score 0.7, others 0.2."""

    threshold = 0.5

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, messages: list[dict[str, Any]], embedding: Any) -> float:
        self.calls += 1
        return 0.7 if "hard" in str(messages[-1].get("content")) else 0.2


class ConstEmbedder:
    async def embed(self, messages: list[dict[str, Any]], then: Any = None) -> Any:
        import numpy as np

        v = np.ones(8, dtype=np.float32) / np.sqrt(8)
        return v if then is None else (v, then(v))


class RecordingUpstream(FakeUpstream):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ctxs: list[CallContext] = []

    async def complete(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        self.ctxs.append(ctx)
        return await super().complete(body, ctx)


RULES = [
    {"name": "tools-fast", "match": {"tools": True}, "route": "fast"},
    {"name": "legal-reasons", "priority": 5, "match": {"system": "(?i)legal"}, "route": "reasoning"},
    {"name": "gold-low-cut", "match": {"metadata": {"tier": "gold"}}, "threshold": 0.1},
    {"name": "team-no-deer", "match": {"headers": {"x-team": "batch"}}, "deer": "off"},
    {"name": "strict-selfref", "match": {"user": "careful"}, "selfref_threshold": 0.95},
]


def make(rules: list[dict[str, Any]] = RULES, **over: Any):
    s = config.from_dict({
        "models": {
            "fast": {"provider": "fake", "model": "fast-model"},
            "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True},
        },
        "routes": {"auto": {}, "pinned": {"pin": "fast"}},
        "selfref": {"enabled": True, "mode": "mean_logprob", "threshold": 0.5},
        "cache": {"enabled": False},
        "rules": rules,
        **over,
    })
    ups = {"fast": RecordingUpstream("fast", "fast-model", lambda b: FakeReply("4", token_prob=0.9)),
           "reasoning": RecordingUpstream("reasoning", "reasoning-model", lambda b: FakeReply("42"))}
    clf = FixedClassifier()
    app = create_app(s, upstreams=ups, embedder=ConstEmbedder(), classifier=clf)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg"), ups, clf


def chat(content: str = "hi", system: str | None = None, **body: Any) -> dict[str, Any]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return {"model": "auto", "messages": msgs, **body}


DEBUG = {"x-thinkgate-debug": "1"}


async def test_no_rule_matches_the_classifier_decides_and_no_rule_header():
    client, ups, clf = make()
    r = await client.post("/v1/chat/completions", json=chat("hard one"), headers=DEBUG)
    assert r.headers["x-thinkgate-route"] == "reasoning" and "x-thinkgate-rule" not in r.headers
    assert r.json()["thinkgate"]["reason"] == "classifier" and r.json()["thinkgate"]["rule"] is None


async def test_a_route_rule_fires_before_the_classifier_which_is_not_run():
    client, ups, clf = make()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    r = await client.post("/v1/chat/completions", json=chat("hard one", tools=tools), headers=DEBUG)
    assert r.status_code == 200
    assert r.headers["x-thinkgate-route"] == "fast" and r.headers["x-thinkgate-rule"] == "tools-fast"
    d = r.json()["thinkgate"]
    assert d["reason"] == "rule" and d["rule"] == "tools-fast" and d["difficulty"] is None
    assert clf.calls == 0


async def test_priority_beats_file_order():
    client, _, _ = make()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    r = await client.post("/v1/chat/completions", json=chat("x", system="legal counsel", tools=tools))
    assert r.headers["x-thinkgate-rule"] == "legal-reasons" and r.headers["x-thinkgate-route"] == "reasoning"


async def test_a_threshold_rule_moves_the_classifier_cut():
    client, _, _ = make()
    easy = chat("easy", metadata={"tier": "gold"})
    r = await client.post("/v1/chat/completions", json=easy, headers=DEBUG)
    d = r.json()["thinkgate"]
    assert d["threshold"] == 0.1 and d["difficulty"] == 0.2 and r.headers["x-thinkgate-route"] == "reasoning"
    assert d["reason"] == "classifier" and d["rule"] == "gold-low-cut"


async def test_a_deer_rule_reaches_the_reasoning_call_unless_the_client_set_deer():
    client, ups, _ = make()
    h = {"x-team": "batch", "x-thinkgate-force-route": "reasoning"}
    await client.post("/v1/chat/completions", json=chat("x"), headers=h)
    assert ups["reasoning"].ctxs[-1].controls.deer.enabled is False
    await client.post("/v1/chat/completions", json=chat("x"), headers={**h, "x-thinkgate-deer": "threshold=0.7"})
    assert ups["reasoning"].ctxs[-1].controls.deer.enabled is True and ups["reasoning"].ctxs[-1].controls.deer.threshold == 0.7


async def test_a_selfref_rule_sets_the_escalation_threshold():
    client, _, _ = make()
    r = await client.post("/v1/chat/completions", json=chat("easy", user="careful"), headers=DEBUG)
    d = r.json()["thinkgate"]
    assert d["selfref_threshold"] == 0.95 and d["escalated"] is True and r.headers["x-thinkgate-rule"] == "strict-selfref"
    r = await client.post("/v1/chat/completions", json=chat("easy", user="relaxed"), headers=DEBUG)
    assert r.json()["thinkgate"]["selfref_threshold"] == 0.5 and r.json()["thinkgate"]["escalated"] is False


async def test_a_pinned_alias_is_not_subject_to_rules_and_a_forced_route_wins_over_a_rule():
    client, _, _ = make()
    r = await client.post("/v1/chat/completions", json={**chat("x", system="legal"), "model": "pinned"})
    assert r.headers["x-thinkgate-route"] == "fast" and "x-thinkgate-rule" not in r.headers
    r = await client.post("/v1/chat/completions", json=chat("x", system="legal"), headers={"x-thinkgate-force-route": "fast"})
    assert r.headers["x-thinkgate-route"] == "fast"


async def test_rules_apply_to_streams():
    client, ups, _ = make()
    async with client.stream("POST", "/v1/chat/completions", json=chat("x", system="legal", stream=True),
                             headers={"authorization": "Bearer secret"}) as r:
        body = (await r.aread()).decode()
    assert r.headers["x-thinkgate-rule"] == "legal-reasons" and "data: [DONE]" in body
