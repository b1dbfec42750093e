"""The DEER benchmark's grader: equal by value, not only by string."""

import pytest

from bench import deer_grade
from bench.deer_grade import equal, grader, last_boxed

needs_sympy = pytest.mark.skipif(deer_grade.sympy is None, reason="sympy is not installed")


@pytest.mark.parametrize(
    "pred,gold",
    [
        ("72", "72"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{3}{4}", "\\frac34"),
        ("x = 5", "5"),
        ("10\\%", "10"),
        ("(1, -2)", "(1,-2)"),
    ],
)
def test_string_and_numeric_equal(pred, gold):
    assert equal(pred, gold)


@needs_sympy
@pytest.mark.parametrize(
    "pred,gold",
    [
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
        ("\\frac{1}{2}\\pi", "\\frac{\\pi}{2}"),
        ("x^2+2x+1", "(x+1)^2"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("2^{10}", "1024"),
        ("\\sqrt[3]{27}", "3"),
    ],
)
def test_symbolic_equal(pred, gold):
    assert grader() == "string+numeric+sympy"
    assert equal(pred, gold)


@pytest.mark.parametrize(
    "pred,gold",
    [
        ("2\\sqrt{3}", "\\sqrt{8}"),
        ("x^2+1", "(x+1)^2"),
        ("(1, 2)", "[1, 2]"),  # an open interval is not a closed one
        ("(1, 2)", "(1, 2, 3)"),
        (None, "1"),
        ("\\frac{1}{0", "1"),  # unparseable: not shown equal, no crash
        ("", "1"),
    ],
)
def test_not_equal(pred, gold):
    assert not equal(pred, gold)


def test_last_boxed():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\boxed 7") == "7"
    assert last_boxed("no box") is None
