import json
import math
import os
from pathlib import Path

import pytest

from policies.deer import (
    R1_ANSWER_ENDS,
    R1_SERVER_STOPS,
    Continue,
    Exit,
    PolicyConfig,
    Probe,
    ThinkState,
    answer_kind,
    answer_span,
    check_limits,
    confidence,
    decide,
    may_probe,
    probe_kind,
    probe_stops,
)

DATA = Path(os.environ.get("THINKGATE_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
MATH500 = DATA / "math" / "math.jsonl"
BENCH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def probe(probs, tokens=None, **kw):
    tokens = tokens or [f"t{i}" for i in range(len(probs))]
    return Probe(tokens=tokens, logprobs=[None if p is None else math.log(p) for p in probs], **kw)


def test_arithmetic_mean_skips_first_token():
    p = probe([0.1, 0.9, 0.7], ["{", "4", "}"])
    assert confidence(p, "mean") == pytest.approx(0.8)
    assert confidence(p, "mean", skip_first=False) == pytest.approx((0.1 + 0.9 + 0.7) / 3)


def test_geometric_mean_is_below_arithmetic():
    p = probe([0.5, 0.9, 0.4], ["{", "1", "}"])
    assert confidence(p, "geometric") == pytest.approx(math.sqrt(0.9 * 0.4))
    assert confidence(p, "geometric") < confidence(p, "mean")


def test_math_span_stops_at_balanced_brace():
    tokens = ["{\\", "frac", "{", "1", "}{", "2", "}}", " and", " more"]
    p = probe([0.9] * 8 + [0.01], tokens)
    span, _ = answer_span(p, "math")
    assert "".join(span) == "{\\frac{1}{2}}"
    assert confidence(p, "mean") == pytest.approx(0.9)


def test_choice_span_stops_at_parenthesis():
    p = probe([0.99, 0.2], ["B", ")"])
    span, _ = answer_span(Probe(tokens=["B", ")", " because"], logprobs=[0.0, 0.0, -5.0]), "choice")
    assert span == ["B", ")"]
    assert confidence(p, "mean", kind="choice", skip_first=False) == pytest.approx(0.595)


def test_tokens_after_think_close_never_count():
    p = probe([0.9, 0.9, 0.9, 0.01], ["{", "3", "}</think>", "junk"])
    assert confidence(p, "mean", kind="text") == pytest.approx(0.9)


def test_missing_logprobs_give_none():
    assert confidence(probe([]), "mean") is None
    assert confidence(probe([None, None]), "mean") is None


def test_single_token_is_not_skipped():
    assert confidence(probe([0.97], ["{"]), "mean") == pytest.approx(0.97)


def test_confident_probe_exits():
    v = decide(ThinkState(probes=1), probe([0.5, 0.99, 0.98], ["{", "7", "}"]), PolicyConfig(threshold=0.95))
    assert isinstance(v, Exit) and v.reason == "confident"
    assert v.confidence == pytest.approx(0.985)


def test_unsure_probe_continues():
    v = decide(ThinkState(probes=1), probe([0.5, 0.6, 0.7], ["{", "7", "}"]), PolicyConfig(threshold=0.95))
    assert v == Continue(pytest.approx(0.65))


def test_threshold_is_strict_as_in_the_reference():
    v = decide(ThinkState(probes=1), probe([0.5, 0.9], ["{", "7"]), PolicyConfig(threshold=0.9))
    assert isinstance(v, Continue)
    v = decide(ThinkState(probes=1), probe([0.5, 0.9001], ["{", "7"]), PolicyConfig(threshold=0.9))
    assert isinstance(v, Exit)


def test_qwen3_rule_requires_think_close():
    cfg = PolicyConfig(threshold=0.9, confidence="geometric", require_think_close=True)
    sure = [0.5, 0.99, 0.99]
    v = decide(ThinkState(probes=1), probe(sure, ["{", "7", "}"], closed_think=False), cfg)
    assert isinstance(v, Continue) and v.confidence == 0.0
    v = decide(ThinkState(probes=1), probe(sure, ["{", "7", "}"], closed_think=True), cfg)
    assert isinstance(v, Exit) and v.reason == "confident"


def test_failed_probe_continues_and_counts():
    state = ThinkState(probes=3)
    v = decide(state, None, PolicyConfig(max_probes=10))
    assert v == Continue(None)
    assert state.confidences == []


def test_max_probes_stops_probing_by_default():
    cfg = PolicyConfig(max_probes=2)
    state = ThinkState(probes=2)
    v = decide(state, probe([0.1, 0.2]), cfg)
    assert v == Continue(pytest.approx(0.2), probe_more=False)
    assert not may_probe(state, cfg)
    assert may_probe(ThinkState(probes=1), cfg)


def test_max_probes_can_exit():
    v = decide(ThinkState(probes=2), None, PolicyConfig(max_probes=2, on_max_probes="exit"))
    assert v == Exit("max_probes", None)


def test_budget_and_wall_clock():
    assert check_limits(ThinkState(thinking_tokens=99, thinking_budget=100)) is None
    assert check_limits(ThinkState(thinking_tokens=100, thinking_budget=100)) == Exit("budget")
    assert check_limits(ThinkState(thinking_tokens=10**6)) is None  # no budget set
    assert check_limits(ThinkState(elapsed_s=5.0, wall_clock_s=5.0)) == Exit("wall_clock")
    # an unconfident probe past the budget exits on the budget, keeping its confidence
    v = decide(ThinkState(probes=1, thinking_tokens=120, thinking_budget=100), probe([0.1, 0.5]), PolicyConfig())
    assert v == Exit("budget", pytest.approx(0.5))


def test_confident_wins_over_budget():
    v = decide(ThinkState(probes=1, thinking_tokens=120, thinking_budget=100), probe([0.1, 0.99]), PolicyConfig())
    assert v == Exit("confident", pytest.approx(0.99))


def test_confidences_are_recorded():
    state = ThinkState(probes=1)
    decide(state, probe([0.5, 0.5]), PolicyConfig())
    state.probes = 2
    decide(state, probe([0.5, 0.7]), PolicyConfig())
    assert state.confidences == [pytest.approx(0.5), pytest.approx(0.7)]


@pytest.mark.parametrize(
    "text,kind",
    [
        ("Compute $\\frac{3}{4} + 1$.", "math"),
        ("How many positive divisors does 36 have?", "math"),
        ("What is 17 * 23?", "math"),
        ("Which of the following is a prime?\nA) 4\nB) 9\nC) 7\nD) 8", "choice"),
        ("Pick one:\n(A) red\n(B) blue", "choice"),
        ("Write a Python function that returns the n-th Fibonacci number.", "text"),
        ("Explain why the sky is blue.", "text"),
        ("Tell me a story about a fox.", "text"),
    ],
)
def test_answer_kind(text, kind):
    assert answer_kind(text) == kind


def test_probe_stops():
    assert probe_stops("math")
    assert probe_stops("choice") == [")"]
    assert probe_stops("math", "</think>", require_think_close=True) == ["</think>"]
    assert "</think>" in probe_stops("text")


# -- the reference's per-family scoring -------------------------------------------------

QWEN3 = PolicyConfig(threshold=0.95, confidence="geometric", require_think_close=True, scoring="qwen3")
R1 = PolicyConfig(threshold=0.95, scoring="deepseek-r1")


def test_qwen3_scores_the_close_tag_too():
    # the example: a sure answer, but P(</think>) = 0.40
    p = probe([0.3, 0.99, 0.99, 0.40], ["{", "4", "}", "</think>"])
    conf = confidence(p, "geometric", scoring="qwen3")
    assert conf == pytest.approx((0.99 * 0.99 * 0.40) ** (1 / 3)) and round(conf, 3) == 0.732
    assert isinstance(decide(ThinkState(probes=1), p, QWEN3), Continue)
    # the balanced-group rule (generic) would have scored only "4" and "}": 0.990, an exit
    assert confidence(p, "geometric", scoring="generic") == pytest.approx(0.99)


def test_qwen3_counts_what_lies_between_the_brace_and_the_close_tag():
    p = probe([0.3, 0.99, 0.99, 0.5, 0.6, 0.98], ["{", "4", "}", ".\n", "\n", "</think>"])
    assert confidence(p, "geometric", scoring="qwen3") == pytest.approx((0.99 * 0.99 * 0.5 * 0.6 * 0.98) ** (1 / 5))


def test_qwen3_scores_zero_unless_the_probe_ends_with_the_close_tag():
    sure = [0.3, 0.999, 0.999, 0.999]
    # ran out of tokens, or the tag came glued to other text: not the close token itself
    for tokens in (["{", "4", "}", "."], ["{", "4", "}", "}</think>"], ["{", "4", "</", "think>"]):
        v = decide(ThinkState(probes=1), probe(sure, tokens, closed_think=True), QWEN3)
        assert isinstance(v, Continue) and v.confidence == 0.0, tokens
    v = decide(ThinkState(probes=1), probe(sure, ["{", "4", "}", "</think>"]), QWEN3)
    assert isinstance(v, Exit) and v.reason == "confident"


def test_qwen3_floors_each_probability_at_1e_10():
    p = probe([0.5, 1e-30, 1.0], ["{", "4", "</think>"])
    assert confidence(p, "geometric", scoring="qwen3") == pytest.approx(math.sqrt(1e-10))


def test_r1_span_ends_where_the_reference_probe_stops():
    # the first end string, wherever it falls: "}\\" cuts \frac{1}{2}\sqrt{3} after "}\\"
    tokens = ["{\\", "frac", "{1", "}{", "2", "}\\", "sqrt", "{3", "}}"]
    p = probe([0.5, 0.9, 0.9, 0.9, 0.9, 0.8, 0.01, 0.01, 0.01], tokens)
    assert answer_span(p, "math", "deepseek-r1")[0] == tokens[:6]
    assert confidence(p, "mean", scoring="deepseek-r1") == pytest.approx((0.9 * 4 + 0.8) / 5)
    # the token that completes the end string counts ("}" then "\n")
    tokens = ["{", "4", "}", "\n", "More"]
    assert answer_span(probe([0.5] * 5, tokens), "math", "deepseek-r1")[0] == tokens[:4]
    # no end string within the probe: every token
    assert answer_span(probe([0.5] * 3, ["{", "4", "x"]), "math", "deepseek-r1")[0] == ["{", "4", "x"]


def test_r1_server_stops_never_stop_before_the_reference():
    stops = probe_stops("math", scoring="deepseek-r1")
    assert stops == R1_SERVER_STOPS and len(stops) <= 4  # vLLM rejects more than 4 stop strings
    assert set(stops) <= set(R1_ANSWER_ENDS)


# -- the reference's budget rule -------------------------------------------------------------


def test_forced_exit_near_the_budget():
    cfg = PolicyConfig(exit_margin_tokens=50)
    unsure = probe([0.5, 0.5, 0.5], ["{", "4", "}"])
    v = decide(ThinkState(probes=1, thinking_budget=1000, tokens_at_probe=949), unsure, cfg)
    assert isinstance(v, Continue)
    v = decide(ThinkState(probes=1, thinking_budget=1000, tokens_at_probe=950), unsure, cfg)
    assert v == Exit("budget", pytest.approx(0.5))
    # a confident probe there is still "confident"
    v = decide(ThinkState(probes=1, thinking_budget=1000, tokens_at_probe=990), probe([0.5, 0.99]), cfg)
    assert v == Exit("confident", pytest.approx(0.99))


def test_budget_is_judged_on_the_thinking_the_probe_saw():
    # the tail streamed while the probe ran (thinking_tokens) is not what the answer would keep
    state = ThinkState(probes=1, thinking_budget=100, thinking_tokens=100, tokens_at_probe=60)
    v = decide(state, probe([0.5, 0.5]), PolicyConfig())
    assert isinstance(v, Continue)


def test_family_settings_follow_the_reference():
    from router.config import DeerSettings

    r1, q3, gen = DeerSettings(family="deepseek-r1"), DeerSettings(family="qwen3"), DeerSettings()
    assert (r1.thinking_budget, r1.exit_margin_tokens, r1.probe_temperature, r1.confidence) == (0.6, 50, 1.0, "mean")
    assert (q3.thinking_budget, q3.exit_margin_tokens, q3.probe_temperature) == (0.8, 50, 1.0)
    assert q3.confidence == "geometric" and q3.require_think_close
    assert (gen.thinking_budget, gen.exit_margin_tokens, gen.probe_temperature) == (0.8, 0, 0.0)
    # explicit keys win over the family's defaults
    assert DeerSettings(family="qwen3", probe_temperature=None, thinking_budget=0.5).probe_temperature is None


# -- the probe kind: the request's own signals first ----------------------------------------------


def test_probe_kind_prefers_the_request_signals():
    code_words = "Let f be the function that returns the class of x. Compute f(3)."
    assert answer_kind(code_words) == "text"  # the guess alone is fooled
    assert probe_kind([code_words + " Put your answer in \\boxed{}."], code_words) == ("math", "boxed_instruction")
    # a system prompt's instruction counts too
    assert probe_kind(["Reply with \\boxed{}", code_words], code_words) == ("math", "boxed_instruction")
    assert probe_kind(["What is 2+2?"], "What is 2+2?", {"type": "json_object"}) == ("text", "response_format")
    assert probe_kind(["What is 2+2?"], "What is 2+2?", {"type": "text"}) == ("math", "guess")
    assert probe_kind(["\\boxed{}"], "x", None, "choice") == ("choice", "setting")
    assert probe_kind(["Tell me a story."], "Tell me a story.") == ("text", "guess")


@pytest.mark.skipif(not MATH500.exists(), reason="../shared/data/math/math.jsonl is not present")
def test_every_math500_prompt_gets_the_math_probe():
    rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    assert len(rows) == 500
    prompts = [f"{r['problem']}\n\n{BENCH_INSTRUCTION}" for r in rows]
    kinds = [probe_kind([p], p) for p in prompts]
    assert [k for k in kinds if k[0] != "math"] == []
    assert {src for _, src in kinds} == {"boxed_instruction"}
    # the reference's layout too: the instruction as the system prompt, the problem alone as the user's
    assert all(probe_kind([BENCH_INSTRUCTION, r["problem"]], r["problem"])[0] == "math" for r in rows)
    # what the guess alone did (the figure before request signals were read)
    guessed_wrong = sum(answer_kind(p) != "math" for p in prompts)
    print(f"\nMATH-500: the guess alone gives {guessed_wrong} of 500 a non-math probe; request signals: 0")
