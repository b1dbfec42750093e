"""Reference graders (policies.grading) and the judge's absolute 1-10 mode (policies.judge)."""

from __future__ import annotations

import pytest

from policies import grading, judge
from policies.grading import auto_kind, choice_letter, grade


@pytest.mark.parametrize(
    "answer, reference",
    [
        ("so f(-2)+f(-1)+f(0) = \\boxed{\\frac{14}{3}}", "\\frac{14}{3}"),
        ("The answer is 18.", "18"),
        ("#### 70,000", "70000"),
        ("\\boxed{\\dfrac{3}{56}}", "\\frac{3}{56}"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("The angle is \\boxed{90}", "90^\\circ"),
        ("The answer is 5.", "x=5"),
        ("\\boxed{x = 5}", "5"),
        ("We get \\boxed{\\text{Evelyn}}", "\\text{Evelyn}"),
        ("I think it costs $1,234.", "1234"),
    ],
)
def test_math_accepts_equal_answers(answer, reference):
    assert grade("math", answer, reference) == 1.0


@pytest.mark.parametrize(
    "answer, reference",
    [
        ("The answer is 17.", "18"),
        ("\\boxed{\\frac{14}{5}}", "\\frac{14}{3}"),
        ("", "5"),  # no answer at all is wrong, not missing
        ("\\boxed{(3, \\pi)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("The answer is 6.", "x=5"),
    ],
)
def test_math_rejects_different_answers(answer, reference):
    assert grade("math", answer, reference) == 0.0


def test_math_uses_the_final_answer_not_the_first_number():
    assert grade("math", "First 3 + 4 = 7, then 7 * 2 = 14. The answer is 14.", "14") == 1.0
    assert grade("math", "First 3 + 4 = 14? No: the answer is 7.", "14") == 0.0


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The answer is (B).", "B"),
        ("Answer: C", "C"),
        ("B. apple", "B"),
        ("(D) is right", "D"),
        ("Options A and B are wrong, so the answer is C", "C"),
        ("\\boxed{A}", "A"),
        ("I am not sure", None),
        ("a banana is a fruit", None),  # lower-case words are not letters
    ],
)
def test_choice_letter(text, letter):
    assert choice_letter(text) == letter


def test_choice_grade_and_a_bad_reference():
    assert grade("choice", "The answer is (B).", "B") == 1.0
    assert grade("choice", "The answer is (B).", "(C)") == 0.0
    with pytest.raises(ValueError, match="not a choice letter"):
        grade("choice", "B", "banana")


def test_exact_match_normalises_like_squad():
    assert grade("exact", "The Eiffel Tower.", "eiffel tower") == 1.0
    assert grade("exact", "I believe the answer is: Paris", "paris") == 1.0
    assert grade("exact", "London", "Paris") == 0.0


def test_auto_kind():
    assert [auto_kind(r) for r in ("B", "(C)", "18", "\\frac{14}{3}", "Paris", "the Eiffel Tower")] == [
        "choice", "choice", "math", "math", "exact", "exact",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown grader"):
        grade("fuzzy", "a", "a")


# ---------------------------------------------------------------- judge (absolute mode; pairwise: test_judge.py)


@pytest.mark.parametrize(
    "reply, rating",
    [
        ("Good answer. Rating: [[8]]", 8.0),
        ("Rating: [[7.5]]", 7.5),
        ("Rating: 6/10", 6.0),
        ("Rating: [[11]]", None),  # outside 1..10
        ("[[3]] or maybe [[4]]", None),
        ("a fine answer", None),
    ],
)
def test_parse_rating(reply, rating):
    assert judge.parse_rating(reply) == rating


def test_judge_prompts_carry_both_answers_and_the_reference():
    conv = judge.pairwise_messages("Q?", "first", "second")
    assert conv[0]["role"] == "system" and "[[C]]" in conv[0]["content"]
    assert conv[1]["content"].index("first") < conv[1]["content"].index("second")
    assert "Reference" in judge.absolute_messages("Q?", "a", "42")[1]["content"]
    assert "Reference" not in judge.absolute_messages("Q?", "a")[1]["content"]
    assert grading.KINDS == ("math", "choice", "exact")
