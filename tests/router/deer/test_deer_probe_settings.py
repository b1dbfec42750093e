"""What the probe asks the server for, per family and setting, and what the decision
record says about it (the in-process vLLM stand-in of the differential test)."""

from __future__ import annotations

import math

import httpx
import pytest

from policies.deer import R1_SERVER_STOPS
from router.config import DeerSettings
from router.deer.upstream import DeerUpstream
from router.upstreams.base import CallContext
from tests.router.deer.fake_vllm import FakeVllm

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
THINKING = [" one", " two", ".", " Wait", " three", " four", ".", " Wait", " five", "</think>"]
SURE = (["{", "4", "}\n"], [math.log(0.5), 0.0, 0.0])
QWEN_SURE = (["{", "4", "}", "</think>"], [math.log(0.5), 0.0, 0.0, 0.0])
BOXED = "What is 2+2? Put the final answer within \\boxed{}."


async def run(body: dict, probes=(SURE,), **settings) -> tuple[CallContext, FakeVllm, dict]:
    fake = FakeVllm(THINKING, list(probes), lockstep=True, max_probes=10)
    ctx = CallContext()
    fake.decided = lambda: len(ctx.extra.get("deer_trace", []))
    s = DeerSettings(template="local", chat_template=TEMPLATE, transitions=["Wait"], **settings)
    up = DeerUpstream("reasoning", "m", "http://fake/v1", s, timeout=30, client=httpx.AsyncClient(transport=fake))
    try:
        out = await up.complete({"max_tokens": 200, **body}, ctx)
    finally:
        await up.close()
    return ctx, fake, out


def user(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


async def test_r1_probe_is_sampled_at_the_reference_temperature():
    ctx, fake, _ = await run({**user(BOXED), "temperature": 0.0, "top_p": 0.5, "seed": 3}, family="deepseek-r1")
    (probe,) = fake.probe_requests
    assert probe["temperature"] == 1.0 and probe["logprobs"] == 1 and probe["max_tokens"] == 20
    assert "top_p" not in probe and "seed" not in probe  # the client's sampling is for its answer, not the probe
    assert probe["stop"] == R1_SERVER_STOPS
    d = ctx.deer
    assert (d.family, d.probe_kind, d.kind_source, d.probe_temperature) == (
        "deepseek-r1",
        "math",
        "boxed_instruction",
        1.0,
    )
    assert d.reason == "confident" and d.exit_step == 1


async def test_probe_temperature_can_be_left_to_the_server_or_greedy():
    _, fake, _ = await run(user(BOXED), family="deepseek-r1", probe_temperature=None)
    assert "temperature" not in fake.probe_requests[0]
    ctx, fake, _ = await run(user(BOXED))  # generic: greedy
    assert fake.probe_requests[0]["temperature"] == 0.0 and ctx.deer.probe_temperature == 0.0


async def test_qwen3_probe_runs_to_the_close_tag():
    ctx, fake, _ = await run(user(BOXED), probes=(QWEN_SURE,), family="qwen3")
    assert fake.probe_requests[0]["stop"] == ["</think>"]
    assert ctx.deer.reason == "confident" and ctx.deer.confidence == pytest.approx(1.0)
    # the same answer without the close token scores 0: thinking goes on to its end
    ctx, _, _ = await run(user(BOXED), probes=(SURE, SURE), family="qwen3")
    assert ctx.deer.reason == "natural_end" and ctx.deer.confidence == 0.0


@pytest.mark.parametrize(
    "body,settings,kind,source",
    [
        (user("Let f be the function that returns 2x. Compute f(3)."), {}, "text", "guess"),
        (
            user("Let f be the function that returns 2x. Compute f(3). Answer in \\boxed{}."),
            {},
            "math",
            "boxed_instruction",
        ),
        ({**user("What is 2+2?"), "response_format": {"type": "json_object"}}, {}, "text", "response_format"),
        (user("What is 2+2? \\boxed{}"), {"probe_kind": "choice"}, "choice", "setting"),
    ],
)
async def test_probe_kind_is_recorded_with_its_source(body, settings, kind, source):
    ctx, fake, _ = await run(body, **settings)
    assert (ctx.deer.probe_kind, ctx.deer.kind_source) == (kind, source)
    suffix = DeerSettings().answer_suffix[kind]
    assert fake.probe_requests and fake.probe_requests[0]["prompt"].endswith(suffix)


async def test_kept_thinking_tokens_count_what_the_answer_sees():
    ctx, _, out = await run(user(BOXED), family="deepseek-r1")
    d = ctx.deer
    assert out["choices"][0]["message"]["reasoning_content"].strip() == "one two."
    # " one", " two", "." and the " " of " Wait" (a token the cut goes through counts, as
    # re-tokenising the kept text would); the generated count also has what came after
    assert d.kept_thinking_tokens == 4 and d.thinking_tokens >= 4
