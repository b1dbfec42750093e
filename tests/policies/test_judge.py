from policies.judge import pairwise_messages, pairwise_scores, parse_verdict


def test_prompt_shows_both_answers_in_order_and_cuts_long_ones():
    msgs = pairwise_messages("Q?", "first", "x" * 50, max_chars=10)
    assert msgs[0]["role"] == "system" and "[[C]]" in msgs[0]["content"]
    user = msgs[1]["content"]
    assert user.index("first") < user.index("Assistant B's Answer]\nxxxxxxxxxx\n[... cut]")
    assert "x" * 11 not in user


def test_parse_verdict_takes_the_last_bracketed_one_and_rejects_noise():
    assert parse_verdict("A is verbose. [[B]]") == "B"
    assert parse_verdict("[[A]] ... on reflection [[C]]") == "tie"
    assert parse_verdict(" b. ") == "B"
    assert parse_verdict("tie") == "tie"
    assert parse_verdict("I cannot decide") is None
    assert parse_verdict("") is None and parse_verdict(None) is None


def test_both_orders_cancel_position_bias():
    # fast shown as A first, then as B
    assert pairwise_scores("B", "A") == (0.0, 1.0)  # strong wins both orders
    assert pairwise_scores("A", "B") == (1.0, 0.0)  # fast wins both orders
    assert pairwise_scores("A", "A") == (0.5, 0.5)  # a judge that always says A: a tie
    assert pairwise_scores("B", "tie") == (0.25, 0.75)
    assert pairwise_scores(None, "A") is None
