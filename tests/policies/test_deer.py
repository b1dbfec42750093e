import math

import pytest

from policies.deer import (
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
    probe_stops,
)


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


def test_threshold_is_inclusive():
    v = decide(ThinkState(probes=1), probe([0.5, 0.9], ["{", "7"]), PolicyConfig(threshold=0.9))
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
