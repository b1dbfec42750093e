import math

import pytest

from policies import selfref
from policies.confidence_tags import TagFilter, strip_choice, strip_confidence_token
from policies.final_answer import answer_text
from policies.selfref import confidence, should_escalate
from policies.stream_choice import merge_stream

LN = math.log


def chat_choice(items, content=None):
    """items: (token, prob, [(alt, prob), ...]); prob None = a missing logprob."""
    return {
        "index": 0,
        "message": {"role": "assistant", "content": content if content is not None else "".join(t for t, _, _ in items)},
        "logprobs": {
            "content": [
                {
                    "token": t,
                    "logprob": None if p is None else LN(p),
                    "bytes": None,
                    "top_logprobs": [{"token": a, "logprob": LN(q)} for a, q in alts],
                }
                for t, p, alts in items
            ]
        },
        "finish_reason": "stop",
    }


def completion_choice(items):
    return {
        "index": 0,
        "text": "".join(t for t, _, _ in items),
        "logprobs": {
            "tokens": [t for t, _, _ in items],
            "token_logprobs": [None if p is None else LN(p) for _, p, _ in items],
            "top_logprobs": [{a: LN(q) for a, q in alts} or None for _, _, alts in items],
            "text_offset": [],
        },
        "finish_reason": "stop",
    }


ANSWER = [("The", 0.9, []), (" answer", 0.8, []), (" is", 0.9, []), (" 4", 0.5, []), ("2", 0.4, []), (".", 0.95, [])]


@pytest.mark.parametrize("build", [chat_choice, completion_choice])
def test_training_free_modes_on_known_sequence(build):
    c = build(ANSWER)
    probs = [0.9, 0.8, 0.9, 0.5, 0.4, 0.95]
    assert confidence(c, "mean_logprob") == pytest.approx(math.prod(probs) ** (1 / 6))
    assert confidence(c, "min_prob") == pytest.approx(0.4)
    # numpy's linear quantile of the six probabilities at 0.1: between 0.4 and 0.5
    assert confidence(c, "quantile_prob", quantile=0.1) == pytest.approx(0.4 + 0.5 * (0.5 - 0.4))
    assert confidence(c, "quantile_prob", quantile=0.5) == pytest.approx((0.8 + 0.9) / 2)
    # the answer "42" is two tokens: joint probability 0.5 * 0.4
    assert confidence(c, "answer_span") == pytest.approx(0.2)
    assert confidence(c, "answer_span", span_reduce="mean") == pytest.approx(math.sqrt(0.2))
    assert confidence(c, "answer_span", span_reduce="min") == pytest.approx(0.4)


def test_scores_order_a_sure_answer_above_an_unsure_one():
    sure = chat_choice([("7", 0.99, []), (".", 0.99, [])])
    unsure = chat_choice([("7", 0.3, []), (".", 0.99, [])])
    for mode in ("mean_logprob", "min_prob", "quantile_prob", "answer_span"):
        assert confidence(sure, mode) > confidence(unsure, mode), mode
        assert 0.0 <= confidence(unsure, mode) <= 1.0


def test_answer_span_prefers_marker_then_last_number_then_last_line():
    assert answer_text("3 + 4 = 7, so 7 * 2 = 14\nThe answer is 14.") == "14"
    assert answer_text("first 12 then 13 and finally 99") == "99"
    assert answer_text("We get \\boxed{\\frac{3}{4}} in the end 5") == "\\frac{3}{4}"
    assert answer_text("#### 1,250") == "1,250"
    assert answer_text("The answer is: Paris.") == "Paris"
    assert answer_text("hello\n\nworld.\n") == "world"
    assert answer_text("  \n") is None
    assert answer_text("It is 5 <CN>") == "5"


def test_answer_span_uses_only_the_answer_tokens():
    c = chat_choice([("Step", 0.1, []), (" 1", 0.1, []), (":", 0.1, []), (" answer", 0.9, []), (" is", 0.9, []), (" 8", 0.6, [])])
    assert confidence(c, "answer_span") == pytest.approx(0.6)


# ---------------------------------------------------------------- confidence tokens


def test_confidence_token_single_token():
    c = chat_choice([(" 42", 0.9, []), ("<CN>", 0.6, [("<CN>", 0.6), ("<UN>", 0.3), ("I", 0.1)])])
    assert confidence(c, "confidence_token") == pytest.approx(0.6 / 0.9)


def test_confidence_token_when_the_model_said_unsure():
    c = chat_choice([(" 42", 0.9, []), ("<UN>", 0.7, [("<UN>", 0.7), ("<CN>", 0.2)])])
    assert confidence(c, "confidence_token") == pytest.approx(0.2 / 0.9)


def test_confidence_token_split_over_three_tokens():
    # "<", "CN", ">": the tags diverge at the middle token
    c = chat_choice(
        [(" 42", 0.9, []), (" <", 0.99, [(" <", 0.99)]), ("CN", 0.55, [("CN", 0.55), ("UN", 0.4), ("C", 0.05)]), (">", 1.0, [(">", 1.0)])]
    )
    # "C" is a prefix of "CN>": another spelling of the same tag, so it counts as <CN>
    assert confidence(c, "confidence_token") == pytest.approx(0.6 / 1.0)


def test_confidence_token_split_with_prefix_glued_to_letter():
    # "<C" + "N>" vs "<U" + "N>"
    c = chat_choice([("42", 0.9, []), ("<C", 0.3, [("<U", 0.6), ("<C", 0.3)]), ("N>", 1.0, [])])
    assert confidence(c, "confidence_token") == pytest.approx(0.3 / 0.9)


def test_confidence_token_glued_to_answer_text():
    c = chat_choice([("4", 0.9, []), ("2<", 0.9, []), ("UN", 0.8, [("UN", 0.8), ("CN", 0.1)]), (">", 1.0, [])])
    assert confidence(c, "confidence_token") == pytest.approx(0.1 / 0.9)


def test_confidence_token_alternative_not_listed_is_bounded_conservatively():
    # <UN> absent from a full top-2 list: P(UN) <= min(listed, 1 - listed) = 0.1
    c = chat_choice([("7", 0.9, []), ("<CN>", 0.8, [("<CN>", 0.8), ("<", 0.1)])])
    assert confidence(c, "confidence_token") == pytest.approx(0.8 / 0.9)
    # no list at all: P(UN) <= 1 - P(CN)  ->  confidence = P(CN)
    c = chat_choice([("7", 0.9, []), ("<CN>", 0.8, [])])
    assert confidence(c, "confidence_token") == pytest.approx(0.8)


def test_confidence_token_uses_the_last_tag():
    c = chat_choice([("<UN>", 0.9, [("<UN>", 0.9), ("<CN>", 0.1)]), (" 5", 0.9, []), ("<CN>", 0.9, [("<CN>", 0.9), ("<UN>", 0.1)])])
    assert confidence(c, "confidence_token") == pytest.approx(0.9)


def test_confidence_token_absent_is_none():
    assert confidence(chat_choice(ANSWER), "confidence_token") is None


def test_completions_confidence_token():
    c = completion_choice([(" 3", 0.9, []), (" <", 1.0, []), ("CN", 0.5, [("CN", 0.5), ("UN", 0.5)]), (">", 1.0, [])])
    assert confidence(c, "confidence_token") == pytest.approx(0.5)


def test_tag_tokens_do_not_count_in_the_other_modes():
    with_tag = chat_choice(ANSWER + [(" <", 0.01, []), ("UN", 0.01, [("UN", 0.01)]), (">", 0.01, [])])
    for mode in ("mean_logprob", "min_prob", "quantile_prob", "answer_span"):
        assert confidence(with_tag, mode) == pytest.approx(confidence(chat_choice(ANSWER), mode)), mode


# ---------------------------------------------------------------- missing logprobs


@pytest.mark.parametrize("mode", selfref.MODES)
@pytest.mark.parametrize(
    "choice",
    [
        {"message": {"content": "42"}},
        {"message": {"content": "42"}, "logprobs": None},
        {"message": {"content": "42"}, "logprobs": {"content": None}},
        {"message": {"content": "42"}, "logprobs": {"content": []}},
        {"text": "42", "logprobs": {"tokens": [], "token_logprobs": [], "top_logprobs": []}},
        {"message": {"content": "42"}, "logprobs": {"content": [{"token": "42", "logprob": None, "top_logprobs": []}]}},
    ],
)
def test_missing_logprobs_give_none(choice, mode):
    assert confidence(choice, mode) is None


def test_individual_missing_logprob_is_skipped():
    c = chat_choice([("4", None, []), ("2", 0.5, [])])
    assert confidence(c, "mean_logprob") == pytest.approx(0.5)


def test_special_tokens_are_ignored():
    c = chat_choice([("7", 0.5, []), ("<|im_end|>", 0.01, [])])
    assert confidence(c, "min_prob") == pytest.approx(0.5)
    assert confidence(c, "min_prob", skip_special=False) == pytest.approx(0.01)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown self-ref mode"):
        confidence(chat_choice(ANSWER), "vibes")


# ---------------------------------------------------------------- decisions


def test_should_escalate_compares_with_threshold():
    assert should_escalate(0.4, 0.5, "trust") is True
    assert should_escalate(0.5, 0.5, "trust") is False  # at the threshold the answer is kept
    assert should_escalate(0.9, 0.5, "escalate") is False


def test_should_escalate_missing_follows_fallback():
    assert should_escalate(None, 0.5, "trust") is False
    assert should_escalate(None, 0.5, "escalate") is True
    with pytest.raises(ValueError):
        should_escalate(None, 0.5, "maybe")


@pytest.mark.parametrize("conf", [None, 0.0, 0.5, 1.0])
def test_threshold_edges(conf):
    assert should_escalate(conf, 1.0001, "trust") is True  # above 1: always
    assert should_escalate(conf, 2.0, "trust") is True
    assert should_escalate(conf, 0.0, "escalate") is False  # 0: never, even without logprobs
    assert should_escalate(conf, -1.0, "escalate") is False


def test_threshold_one_escalates_everything_but_certainty():
    assert should_escalate(0.999, 1.0) is True
    assert should_escalate(1.0, 1.0) is False


# ---------------------------------------------------------------- client-visible text


@pytest.mark.parametrize(
    "text, want",
    [
        ("The answer is 42. <CN>", "The answer is 42."),
        ("The answer is 42.<UN>", "The answer is 42."),
        ("The answer is 42.\n<CN>\n", "The answer is 42."),
        ("a <CN> b", "a b"),
        ("no tags <CM> here ", "no tags <CM> here "),
        ("x < y and y > z", "x < y and y > z"),
        ("", ""),
    ],
)
def test_strip_confidence_token(text, want):
    assert strip_confidence_token(text) == want


def test_strip_choice_handles_chat_and_completions():
    assert strip_choice({"message": {"role": "assistant", "content": "5 <CN>"}})["message"]["content"] == "5"
    assert strip_choice({"text": "5<UN>", "logprobs": {"x": 1}}, keep_logprobs=False) == {"text": "5", "logprobs": None}


@pytest.mark.parametrize(
    "deltas",
    [
        ["The answer", " is 42. <CN>"],
        ["The answer is 42. <", "C", "N>"],
        ["The answer is 42.", " ", "<", "U", "N", ">"],
        ["The answer is 42. <C", "N>"],
    ],
)
def test_tag_filter_never_leaks_a_split_tag(deltas):
    f = TagFilter()
    out = [f.feed(d) for d in deltas] + [f.flush()]
    assert "".join(out) == "The answer is 42."
    assert not any("<" in o for o in out)


def test_tag_filter_releases_lookalikes():
    f = TagFilter()
    out = f.feed("if x <") + f.feed(" y") + f.feed(" then <CA") + f.flush()
    assert out == "if x < y then <CA"


# ---------------------------------------------------------------- streams


def test_merge_stream_chat_chunks_scores_like_the_whole_response():
    whole = chat_choice(ANSWER)
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None}]}]
    for item in whole["logprobs"]["content"]:
        chunks.append({"choices": [{"index": 0, "delta": {"content": item["token"]}, "logprobs": {"content": [item]}}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    merged = merge_stream(chunks)
    assert merged["message"]["content"] == whole["message"]["content"]
    assert merged["finish_reason"] == "stop"
    for mode in selfref.MODES:
        assert confidence(merged, mode) == confidence(whole, mode)


def test_merge_stream_completions_and_no_logprobs():
    whole = completion_choice(ANSWER)
    lp = whole["logprobs"]
    chunks = [
        {"choices": [{"index": 0, "text": t, "logprobs": {"tokens": [t], "token_logprobs": [l], "top_logprobs": [tp]}}]}
        for t, l, tp in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"])
    ]
    merged = merge_stream(chunks)
    assert merged["text"] == whole["text"]
    assert confidence(merged, "mean_logprob") == pytest.approx(confidence(whole, "mean_logprob"))
    bare = merge_stream([{"choices": [{"index": 0, "delta": {"content": "hi"}}]}])
    assert bare["logprobs"] is None and confidence(bare, "mean_logprob") is None
