import asyncio

import pytest

from router import errors
from router.config import DeerSettings
from router.deer.thinking import find_transition
from router.deer.upstream import DeerUpstream
from router.types import Controls, DeerControl, DeerStats
from router.upstreams.base import CallContext, Upstream
from tests.router.scripted_openai import CLOSE, ProbeReply, Script, ScriptedServer

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
THINKING = (
    ["Let", " me", " add", ".", " 2", "+", "2", " is", " 4", ".\n"]
    + ["Wait", ",", " check", " again", ":", " 4", ".\n"]
    + ["Wait", ",", " once", " more", ":", " still", " 4", ".\n"]
    + [" Done", "."] * 6
)
BEFORE_WAIT1 = "".join(THINKING[:10])
BEFORE_WAIT2 = "".join(THINKING[:17])
SURE = ProbeReply(probs=[0.4, 0.99, 0.98])
UNSURE = ProbeReply(probs=[0.4, 0.5, 0.6])
MESSAGES = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 200}


def settings(**kw):
    base = {
        "template": "local",
        "chat_template": TEMPLATE,
        "probe_mode": "concurrent",
        "probe_timeout_s": 2.0,
        "wall_clock_s": 30.0,
        **kw,
    }
    return DeerSettings(**base)


def upstream(server, **kw):
    return DeerUpstream("reasoning", "scripted", server.api_base, settings(**kw), timeout=10)


async def run_complete(server, body=MESSAGES, controls=None, **kw):
    up = upstream(server, **kw)
    ctx = CallContext(controls=controls or Controls())
    try:
        out = await up.complete(dict(body), ctx)
    finally:
        await up.close()
    return out, ctx.deer, ctx


def test_find_transition_needs_a_word_start():
    assert find_transition("a Wait b", 0, ["Wait"]) == (2, "Wait")
    assert find_transition("Await Wait", 0, ["Wait"]) == (6, "Wait")
    assert find_transition("Wait at start", 0, ["Wait"]) is None
    assert find_transition("x Hmm y Wait", 0, ["Wait", "Hmm"]) == (2, "Hmm")
    assert find_transition("x Wait y Wait", 3, ["Wait"]) == (9, "Wait")
    assert find_transition("step one\n\nstep two", 0, ["Wait", "\n\n"]) == (8, "\n\n")


async def test_implements_the_upstream_protocol():
    async with ScriptedServer(Script(THINKING)) as server:
        up = upstream(server)
        assert isinstance(up, Upstream)
        assert (await up.ready())["ok"]
        await up.close()


async def test_concurrent_exits_when_confident_and_aborts_thinking():
    async with ScriptedServer(Script(THINKING, probes=[SURE], token_delay=0.03)) as server:
        out, stats, ctx = await run_complete(server)
        await asyncio.sleep(0.2)
    msg = out["choices"][0]["message"]
    assert msg["reasoning_content"] == BEFORE_WAIT1
    assert msg["content"] == " The answer is \\boxed{4}."
    assert stats.reason == "confident" and stats.probes == 1 and stats.exit_step == 1
    assert stats.confidence == pytest.approx(0.985)
    assert stats.probe_tokens == 3 and stats.answer_tokens == 5
    assert stats.thinking_tokens >= 10
    assert out["usage"]["completion_tokens"] == stats.thinking_tokens + stats.answer_tokens
    thinking = server.thinking_streams()
    assert len(thinking) == 1 and thinking[0].disconnected and not thinking[0].completed
    assert thinking[0].sent < len(THINKING)
    # the probe: thinking before "Wait" + the math suffix, greedy, with logprobs
    probe = server.requests[1]
    assert probe["prompt"].endswith(BEFORE_WAIT1 + "\n**Final Answer**\n\\boxed")
    assert probe["logprobs"] == 1 and probe["max_tokens"] == 20 and probe["temperature"] == 0.0
    # the answer continues the thinking with the close tag
    assert server.answer_streams()[0].prompt == server.base_prompt + BEFORE_WAIT1 + "\n</think>\n\n"
    assert server.base_prompt.endswith("<|assistant|><think>\n")
    trace = ctx.extra["deer_trace"]
    assert len(trace) == 1 and trace[0]["verdict"] == "confident" and trace[0]["detect_to_send_ms"] >= 0


async def test_concurrent_continues_when_not_confident():
    async with ScriptedServer(Script(THINKING, probes=[UNSURE, SURE], token_delay=0.03)) as server:
        out, stats, _ = await run_complete(server)
    assert stats.reason == "confident" and stats.probes == 2 and stats.exit_step == 2
    assert out["choices"][0]["message"]["reasoning_content"] == BEFORE_WAIT2
    assert server.probe_prompts[1].endswith(BEFORE_WAIT2 + "\n**Final Answer**\n\\boxed")


async def test_never_confident_thinks_to_the_natural_end():
    async with ScriptedServer(Script(THINKING, probes=[UNSURE, UNSURE], token_delay=0.02)) as server:
        out, stats, _ = await run_complete(server)
    assert stats.reason == "natural_end" and stats.probes == 2 and stats.exit_step is None
    assert out["choices"][0]["message"]["reasoning_content"] == "".join(THINKING)
    assert server.thinking_streams()[0].completed
    assert stats.thinking_tokens == len(THINKING)


async def test_a_probe_still_out_when_thinking_ends_is_traced_as_abandoned():
    # the probe answers after the whole stream has ended: thinking keeps all its text,
    # and the sent probe shows in the trace instead of silently vanishing
    slow = ProbeReply(probs=[0.4, 0.99, 0.98], delay=2.0)
    async with ScriptedServer(Script(THINKING, probes=[slow], token_delay=0.002)) as server:
        out, stats, ctx = await run_complete(server, max_probes=1)
    assert stats.reason == "natural_end" and stats.probes == 1 and stats.exit_step is None
    assert out["choices"][0]["message"]["reasoning_content"] == "".join(THINKING)
    trace = ctx.extra["deer_trace"]
    assert trace == [{"step": 1, "verdict": "abandoned", "tokens_at_probe": 10}]
    assert stats.probe_tokens == 0


async def test_thinking_budget():
    body = {**MESSAGES, "max_tokens": 10}  # budget = 0.8 * 10 = 8 tokens
    async with ScriptedServer(Script(THINKING, probes=[UNSURE] * 5, token_delay=0.005)) as server:
        out, stats, _ = await run_complete(server, body=body)
    assert stats.reason == "budget" and stats.thinking_tokens == 8
    assert server.requests[0]["max_tokens"] == 8
    assert server.answer_streams()[0].payload["max_tokens"] == 2
    assert out["choices"][0]["finish_reason"] == "length"


async def test_client_thinking_budget_replaces_the_configured_share():
    # Anthropic's thinking.budget_tokens arrives as DeerControl.budget_tokens
    controls = Controls(deer=DeerControl(budget_tokens=5))
    async with ScriptedServer(Script(THINKING, probes=[UNSURE] * 5, token_delay=0.005)) as server:
        out, stats, _ = await run_complete(server, controls=controls)  # max_tokens 200: the share would be 160
    assert stats.reason == "budget" and stats.thinking_tokens == 5
    assert server.requests[0]["max_tokens"] == 5


async def test_max_probes_then_thinks_on():
    async with ScriptedServer(Script(THINKING, probes=[UNSURE, SURE], token_delay=0.02)) as server:
        _, stats, _ = await run_complete(server, max_probes=1)
    assert stats.probes == 1 and stats.reason == "natural_end"
    assert len(server.probe_prompts) == 1


async def test_max_probes_can_exit():
    async with ScriptedServer(Script(THINKING, probes=[UNSURE], token_delay=0.03)) as server:
        out, stats, _ = await run_complete(server, max_probes=1, on_max_probes="exit")
    assert stats.reason == "max_probes" and stats.exit_step == 1
    assert out["choices"][0]["message"]["reasoning_content"] == BEFORE_WAIT1


@pytest.mark.parametrize("mode", ["concurrent", "sequential"])
async def test_wall_clock_aborts_thinking(mode):
    async with ScriptedServer(Script(THINKING, probes=[UNSURE] * 3, token_delay=0.1)) as server:
        out, stats, _ = await run_complete(server, wall_clock_s=0.5, probe_mode=mode)
        await asyncio.sleep(0.3)
    assert stats.reason == "wall_clock"
    assert server.thinking_streams()[0].disconnected
    assert out["choices"][0]["message"]["content"]


@pytest.mark.parametrize("failure", [ProbeReply(status=500), ProbeReply(delay=1.5)])
async def test_probe_error_or_timeout_continues(failure):
    script = Script(THINKING, probes=[failure, SURE], token_delay=0.06)
    async with ScriptedServer(script) as server:
        out, stats, ctx = await run_complete(server, probe_timeout_s=0.3)
    assert stats.reason == "confident" and stats.probes == 2 and stats.exit_step == 2
    assert out["choices"][0]["message"]["reasoning_content"] == BEFORE_WAIT2
    assert "error" in ctx.extra["deer_trace"][0]


async def test_stream_yields_reasoning_then_content():
    async with ScriptedServer(Script(THINKING, probes=[SURE], token_delay=0.02)) as server:
        up = upstream(server)
        ctx = CallContext()
        chunks = [c async for c in up.stream(dict(MESSAGES), ctx)]
        await up.close()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    kinds = [k for d in deltas for k in d if k in ("reasoning_content", "content") and d[k]]
    first_content = kinds.index("content")
    assert set(kinds[:first_content]) == {"reasoning_content"} and set(kinds[first_content:]) == {"content"}
    assert "".join(d.get("reasoning_content", "") for d in deltas) == BEFORE_WAIT1
    assert "".join(d.get("content", "") for d in deltas) == " The answer is \\boxed{4}."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == ctx.deer.thinking_tokens + ctx.deer.answer_tokens
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


@pytest.mark.parametrize("mode", ["concurrent", "sequential"])
async def test_client_disconnect_aborts_upstream(mode):
    async with ScriptedServer(Script(THINKING, probes=[UNSURE] * 3, token_delay=0.05)) as server:
        up = upstream(server, probe_mode=mode)
        agen = up.stream(dict(MESSAGES), CallContext())
        got = 0
        async for chunk in agen:
            got += 1
            if got == 4:
                break
        await agen.aclose()
        await asyncio.sleep(0.3)
        await up.close()
        assert server.thinking_streams()[0].disconnected
        assert not server.answer_streams()


async def test_cancelled_task_aborts_upstream():
    async with ScriptedServer(Script(THINKING, probes=[ProbeReply(delay=5)], token_delay=0.05)) as server:
        up = upstream(server, probe_timeout_s=10)
        task = asyncio.create_task(up.complete(dict(MESSAGES), CallContext()))
        await asyncio.sleep(0.8)  # thinking open, probe in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        await up.close()
        assert server.thinking_streams()[0].disconnected


@pytest.mark.parametrize("stop_reason", [True, False], ids=["vllm", "llamacpp"])
async def test_sequential_mode(stop_reason):
    script = Script(THINKING, probes=[UNSURE, SURE], token_delay=0.005, stop_reason=stop_reason)
    async with ScriptedServer(script) as server:
        out, stats, _ = await run_complete(server, probe_mode="sequential")
        await asyncio.sleep(0.2)
    assert stats.reason == "confident" and stats.probes == 2 and stats.exit_step == 2
    assert out["choices"][0]["message"]["reasoning_content"] == BEFORE_WAIT2
    thinking = server.thinking_streams()
    # the driver closes each thinking stream at its transition, then probes
    assert len(thinking) == 2 and all(s.disconnected and not s.completed for s in thinking)
    assert thinking[0].payload["stop"] == ["</think>"]
    assert thinking[1].prompt == server.base_prompt + BEFORE_WAIT1 + "Wait"
    assert server.probe_prompts[0].endswith(BEFORE_WAIT1 + "\n**Final Answer**\n\\boxed")
    assert stats.thinking_tokens == 18  # 11 + 7 streamed, each segment up to and including its "Wait"


async def test_sequential_natural_end_and_budget():
    script = Script(THINKING, probes=[UNSURE] * 5, token_delay=0.002)
    async with ScriptedServer(script) as server:
        _, stats, _ = await run_complete(server, probe_mode="sequential")
    assert stats.reason == "natural_end" and stats.probes == 2
    assert server.thinking_streams()[-1].completed
    async with ScriptedServer(script) as server:
        _, stats, _ = await run_complete(server, body={**MESSAGES, "max_tokens": 15}, probe_mode="sequential")
    assert stats.reason == "budget" and stats.thinking_tokens == 12


async def test_deer_off_and_threshold_override():
    async with ScriptedServer(Script(THINKING, probes=[SURE], token_delay=0.002)) as server:
        out, stats, _ = await run_complete(server, controls=Controls(deer=DeerControl(enabled=False)))
    assert stats.reason == "off" and stats.probes == 0 and not server.probe_prompts
    assert out["choices"][0]["message"]["reasoning_content"] == "".join(THINKING)

    lukewarm = ProbeReply(probs=[0.1, 0.6, 0.6])
    async with ScriptedServer(Script(THINKING, probes=[lukewarm], token_delay=0.03)) as server:
        _, stats, _ = await run_complete(server, controls=Controls(deer=DeerControl(threshold=0.5)))
    assert stats.reason == "confident" and stats.confidence == pytest.approx(0.6)


async def test_qwen3_rule_needs_the_probe_to_close_thinking():
    open_probe = ProbeReply(probs=[0.5, 0.99, 0.99], stop_reason=None)  # vLLM: stopped on EOS / length
    closing = ProbeReply(probs=[0.5, 0.99, 0.99], stop_reason=CLOSE)
    async with ScriptedServer(Script(THINKING, probes=[open_probe, closing], token_delay=0.03)) as server:
        _, stats, _ = await run_complete(server, confidence="geometric", require_think_close=True)
    assert stats.reason == "confident" and stats.exit_step == 2
    assert server.requests[1]["stop"] == [CLOSE]


async def test_server_template_uses_tokenize_and_detokenize():
    async with ScriptedServer(Script(THINKING, probes=[SURE], token_delay=0.02)) as server:
        out, _, _ = await run_complete(server, template="server", thinking_prompt="Think first.")
    assert server.tokenize_calls == 1
    assert server.base_prompt == "<|system|>Think first.\n<|user|>What is 2+2?\n<|assistant|><think>\n"
    assert server.requests[0]["add_special_tokens"] is False
    assert out["usage"]["prompt_tokens"] == len("<|system|>Think first.\n<|user|>What is 2+2?\n<|assistant|>")


async def test_thinking_failure_maps_to_upstream_error():
    async with ScriptedServer(Script(THINKING)) as server:
        port = server.port
    up = DeerUpstream("reasoning", "scripted", f"http://127.0.0.1:{port}/v1", settings(), timeout=2)
    with pytest.raises(errors.UpstreamUnavailable):
        await up.complete(dict(MESSAGES), CallContext())
    await up.close()


async def test_fills_the_callers_stats_object():
    async with ScriptedServer(Script(THINKING, probes=[SURE], token_delay=0.03)) as server:
        up = upstream(server)
        stats = DeerStats()
        await up.complete(dict(MESSAGES), CallContext(deer=stats))
        await up.close()
    assert stats.reason == "confident" and "probes=1" in stats.header()


async def test_completions_body_and_choice_suffix():
    body = {"prompt": "Which is prime?\nA) 4\nB) 7\nC) 8", "max_tokens": 100}
    choice = ProbeReply(probs=[0.99, 0.99], tokens=["B", ")"])
    async with ScriptedServer(Script(THINKING, probes=[choice], token_delay=0.03)) as server:
        out, stats, _ = await run_complete(server, body=body)
    assert out["object"] == "text_completion" and out["choices"][0]["text"]
    assert server.probe_prompts[0].endswith("The answer is (")
    assert server.requests[1]["stop"] == [")"]
    assert stats.reason == "confident"


def test_family_defaults_and_validation():
    qwen = DeerSettings(family="qwen3")
    assert qwen.confidence == "geometric" and qwen.require_think_close
    assert DeerSettings(family="qwen3", require_think_close=False).require_think_close is False
    assert DeerSettings(family="deepseek-r1").confidence == "mean"
    with pytest.raises(ValueError):
        DeerSettings(transitions=[""])
    with pytest.raises(ValueError):
        DeerSettings(answer_suffix={"math": "\\boxed"})


async def test_the_answer_stops_where_a_thinking_block_would_open_or_close_again():
    # SmolLM2 under a thinking prompt wrote "...rounding.\n</think>" after its answer and went
    # on to the token budget: the answer call stops at either delimiter, after the client's stops
    from router.deer.calls import answer_stops

    assert answer_stops(None, "</think>", "<think>\n") == ["</think>", "<think>"]
    assert answer_stops("\n\n", "</think>", "<think>\n") == ["\n\n", "</think>", "<think>"]
    assert answer_stops(["END", "</think>"], "</think>", "") == ["END", "</think>"]
    async with ScriptedServer(Script(THINKING)) as server:
        await run_complete(server, body={**MESSAGES, "stop": ["END"]})
    assert server.requests[-1]["stop"] == ["END", "</think>", "<think>"]
