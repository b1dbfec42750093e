"""selfref.stream prefix:K with fake upstreams: the answer is judged on its first
K tokens and then streams; an escalation streams only the reasoning answer."""

from __future__ import annotations

import time
from typing import Any

import pytest

from router import config
from router.pipeline.core import Pipeline
from router.types import ChatRequest, Controls
from router.upstreams.fake import FakeReply, FakeUpstream

LONG = " ".join(f"w{i}" for i in range(20))  # 20 pseudo tokens


def pipeline(stream: str, prob: float, chunk_delay: float = 0.0) -> tuple[Pipeline, dict[str, FakeUpstream]]:
    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "fast-model"},
                   "reasoning": {"provider": "fake", "model": "reasoning-model", "reasoning": True}},
        "selfref": {"enabled": True, "mode": "mean_logprob", "threshold": 0.5, "stream": stream},
        "cache": {"enabled": False},
    })
    ups = {"fast": FakeUpstream("fast", "fast-model", lambda b: FakeReply(LONG, token_prob=prob), chunk_delay=chunk_delay),
           "reasoning": FakeUpstream("reasoning", "reasoning-model", lambda b: FakeReply("the reasoned answer"))}
    return Pipeline(s, ups), ups


def request(**body: Any) -> ChatRequest:
    msgs = [{"role": "user", "content": "q"}]
    return ChatRequest(endpoint="chat", alias="auto", body={"model": "auto", "messages": msgs, "stream": True, **body},
                       messages=msgs, stream=True, controls=Controls(force_route="fast"))


async def collect(p: Pipeline, req: ChatRequest) -> tuple[list[dict[str, Any]], list[float], Any]:
    t0 = time.perf_counter()
    reply = await p.handle(req)
    chunks, times = [], []
    assert reply.chunks is not None
    async for ch in reply.chunks:
        chunks.append(ch)
        times.append(time.perf_counter() - t0)
    return chunks, times, reply.decision


def text(chunks: list[dict[str, Any]]) -> str:
    return "".join((c.get("delta") or {}).get("content") or "" for ch in chunks for c in ch.get("choices") or [])


async def test_a_confident_prefix_streams_the_rest_as_it_comes():
    p, ups = pipeline("prefix:4", prob=0.9, chunk_delay=0.03)
    chunks, times, d = await collect(p, request())
    first = next(i for i, ch in enumerate(chunks) if text([ch]))
    assert text(chunks) == LONG  # the whole fast answer, once
    # the first delta leaves after ~4 tokens, long before the 20th arrives (~0.6 s)
    assert times[first] < times[-1] - 0.25
    assert d.escalated is False and d.selfref_tokens == 4 and d.route == "fast" and d.upstream_model == "fast-model"
    assert all(c.get("logprobs") is None for ch in chunks for c in ch.get("choices") or [])  # not asked for
    assert d.completion_tokens == 20 and ups["fast"].cancelled_streams == 0


async def test_buffer_mode_holds_everything_until_the_end():
    p, _ = pipeline("buffer", prob=0.9, chunk_delay=0.03)
    chunks, times, d = await collect(p, request())
    first = next(i for i, ch in enumerate(chunks) if text([ch]))
    assert times[-1] - times[first] < 0.1 and d.selfref_tokens is None


async def test_an_unsure_prefix_escalates_and_the_client_gets_only_the_reasoning_answer():
    p, ups = pipeline("prefix:4", prob=0.2, chunk_delay=0.01)
    chunks, _, d = await collect(p, request())
    assert text(chunks) == "the reasoned answer"
    assert d.escalated is True and d.route == "reasoning" and d.upstream_model == "reasoning-model"
    assert ups["fast"].cancelled_streams == 1  # the fast stream was stopped after the prefix
    assert d.cost >= 0 and d.confidence is not None and d.confidence < 0.5


async def test_an_answer_shorter_than_k_is_judged_whole():
    p, _ = pipeline("prefix:64", prob=0.9)
    chunks, _, d = await collect(p, request())
    assert text(chunks) == LONG and d.selfref_tokens == 20 and d.escalated is False


async def test_logprobs_the_client_asked_for_are_kept():
    p, _ = pipeline("prefix:4", prob=0.9)
    chunks, _, _ = await collect(p, request(logprobs=True, top_logprobs=1))
    with_lp = [c for ch in chunks for c in ch.get("choices") or [] if (c.get("delta") or {}).get("content")]
    assert with_lp and all(c.get("logprobs") for c in with_lp)


def test_prefix_needs_a_token_mode_and_a_valid_k():
    base = {"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake"}}}
    with pytest.raises(config.ConfigError, match="reads the end of the answer"):
        config.from_dict({**base, "selfref": {"mode": "confidence_token", "stream": "prefix:8"}})
    with pytest.raises(config.ConfigError, match="selfref.stream"):
        config.from_dict({**base, "selfref": {"stream": "prefix:0"}})
    assert config.from_dict({**base, "selfref": {"stream": "prefix:16"}}).selfref.prefix_tokens == 16


def test_the_default_is_prefix_16_and_end_reading_modes_keep_buffer():
    base = {"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake"}}}
    assert config.from_dict(base).selfref.prefix_tokens == 16
    for mode in ("confidence_token", "answer_span"):
        s = config.from_dict({**base, "selfref": {"mode": mode}}).selfref
        assert s.stream == "buffer" and s.prefix_tokens is None
