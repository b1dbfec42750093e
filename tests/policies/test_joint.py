"""policies.joint: reason at once on a high P, else escalate on a P-dependent confidence cut."""

import math

import pytest

from policies.joint import JointPolicy, outcome


def test_high_p_reasons_at_once_whatever_the_confidence():
    pol = JointPolicy.from_lists(0.8, [0.5])
    assert pol.first_route(0.8) == "reasoning" and pol.first_route(0.79) == "fast"
    assert outcome(pol, 0.9, 0.99) == "reasoning"


def test_the_threshold_follows_the_p_bins():
    pol = JointPolicy.from_lists(0.9, [0.1, 0.4, 0.7], edges=[0.3, 0.6])
    assert [pol.threshold_at(p) for p in (0.0, 0.29, 0.3, 0.59, 0.6, 0.89)] == [0.1, 0.1, 0.4, 0.4, 0.7, 0.7]
    # the same confidence is kept on an easy prompt and escalated on a harder one
    assert outcome(pol, 0.1, 0.5) == "fast" and outcome(pol, 0.65, 0.5) == "escalated"


def test_zero_never_escalates_above_one_always_and_missing_confidence_follows_on_missing():
    assert JointPolicy.from_lists(1.1, [0.0]).escalate(0.5, 0.0) is False
    assert JointPolicy.from_lists(1.1, [1.01]).escalate(0.5, 1.0) is True
    pol = JointPolicy.from_lists(1.1, [0.5])
    assert pol.escalate(0.5, None) is False and pol.escalate(0.5, None, "escalate") is True
    assert JointPolicy.from_lists(1.1, [0.0]).escalate(0.5, None, "escalate") is False


def test_a_slope_raises_the_threshold_with_p():
    pol = JointPolicy.from_lists(math.inf, [-0.2], slope=1.0)  # escalate when confidence < P - 0.2
    assert pol.threshold_at(0.9) == pytest.approx(0.7) and pol.threshold_at(0.1) == pytest.approx(-0.1)
    assert pol.escalate(0.9, 0.6) is True and pol.escalate(0.1, 0.05) is False
    with pytest.raises(ValueError, match="slope"):
        JointPolicy.from_lists(math.inf, [0.2], slope=-1.0)


@pytest.mark.parametrize(("thr", "edges"), [([0.1], [0.5]), ([0.1, 0.2, 0.3], [0.6, 0.3]), ([-0.1], [])])
def test_bad_policies_are_refused(thr, edges):
    with pytest.raises(ValueError, match="joint policy"):
        JointPolicy.from_lists(0.9, thr, edges)
