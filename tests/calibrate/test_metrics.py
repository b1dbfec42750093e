import math

import numpy as np
import pytest

from calibrate import metrics

# Four prompts: the fast model fails the first two, the strong model gets all.
# q_fast = 0.5, q_strong = 1.0.
FAST = [0, 0, 1, 1]
STRONG = [1, 1, 1, 1]
PERFECT = [0.9, 0.8, 0.2, 0.1]
REVERSED = [0.1, 0.2, 0.8, 0.9]


def test_quality_curve_perfect_router():
    shares, q = metrics.quality_curve(PERFECT, FAST, STRONG)
    assert shares.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert q.tolist() == [0.5, 0.75, 1.0, 1.0, 1.0]


def test_apgr_known_answers():
    # mean quality over the sweep: perfect 4.25/5, reversed 3.25/5, ties 3.75/5
    assert metrics.apgr(PERFECT, FAST, STRONG) == pytest.approx(0.7)
    assert metrics.apgr(REVERSED, FAST, STRONG) == pytest.approx(0.3)
    assert metrics.apgr([0.5] * 4, FAST, STRONG) == pytest.approx(0.5)


def test_ties_count_as_random_order():
    # a constant router on any data is exactly the random expectation: 0.5
    rng = np.random.default_rng(1)
    f = rng.integers(0, 2, 300)
    s = np.maximum(f, rng.integers(0, 2, 300))
    assert metrics.apgr(np.zeros(300), f, s) == pytest.approx(0.5)


def test_cpt_known_answers():
    # target q_fast + x * gap: x=0.5 -> 0.75 reached at 1 of 4; x=0.8 -> 0.9 at 2 of 4
    assert metrics.cpt(PERFECT, FAST, STRONG, 0.5) == 0.25
    assert metrics.cpt(PERFECT, FAST, STRONG, 0.8) == 0.5
    assert metrics.cpt(REVERSED, FAST, STRONG, 0.8) == 1.0
    assert metrics.quality_at(PERFECT, FAST, STRONG, 0.5) == 1.0


def test_strong_not_better_gives_nan():
    assert math.isnan(metrics.apgr([1, 0], [1, 1], [1, 0]))


def test_auroc_and_ece():
    y = [1, 1, 0, 0]
    assert metrics.auroc(PERFECT, y) == 1.0
    assert metrics.auroc(REVERSED, y) == 0.0
    assert metrics.auroc([0.3] * 4, y) == 0.5
    assert metrics.ece([0.5] * 4, y) == 0.0
    assert metrics.ece([1.0, 1.0, 0.0, 0.0], [0, 0, 1, 1]) == 1.0


def test_summary_keys():
    s = metrics.summary(PERFECT, [0.9, 0.8, 0.2, 0.1], FAST, STRONG)
    assert {"n", "q_fast", "q_strong", "apgr", "cpt", "quality_at_50", "auroc", "ece"} <= set(s)
    assert set(s["cpt"]) == {"50", "80", "95"}
