"""Figures that mean what they say (issue 27): no nan/-inf without its reason, report's
words match the procedure, the "too few" messages name the minimum, a prompt file handed
to train points at collect, and collect's bound covers what the reasoning role is sent."""

from __future__ import annotations

import json
import math

import pytest

from calibrate.collect_cost import prompt_bound, row_estimate
from calibrate.commands.evaluation import format_summary
from calibrate.outcomes import OutcomeError, read
from calibrate.report import _candidate_lines
from router.config import Price


def summary(**kw):
    s = {"n": 24, "q_fast": 0.125, "q_strong": 0.083, "q_oracle": 0.2, "apgr": 0.5, "apgr_std": 0.0,
         "pooled": {"apgr": float("nan")}, "cpt": {"50": float("nan"), "80": float("nan"), "95": float("nan")},
         "quality_at_50": 0.1, "auroc": 0.826, "ece": 0.1, "folds": []}
    s.update(kw)
    return s


def test_evaluate_explains_an_undefined_apgr():
    text = format_summary(summary())
    assert "pooled nan" not in text and "pooled n/a (the strong model is not better" in text
    assert "strong 0.083 is not above fast 0.125" in text and "examples/system-bench.yaml" in text


def test_report_says_two_standard_errors_and_explains_an_undefined_inner_apgr():
    lines = _candidate_lines({"candidate": "baseline", "clear_se": 2.0,
                              "candidates": [{"candidate": "baseline", "inner_apgr": float("-inf")}, {"candidate": "full", "inner_apgr": 0.61}]})
    text = "\n".join(lines)
    assert "-inf" not in text and "baseline n/a" in text and "two standard errors" in text and "one standard error" not in text
    assert "undefined in every inner fold" in text


def test_a_prompt_file_given_as_outcomes_points_at_collect(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text(json.dumps({"id": "a", "prompt": "What is 2 + 2?", "answer": "4"}) + "\n")
    with pytest.raises(OutcomeError) as e:
        read(p)
    assert "thinkgate calibrate collect --prompts" in str(e.value)


def test_too_few_for_cv_names_the_minimum():
    from calibrate.folds import kfold

    import numpy as np

    with pytest.raises(ValueError, match=r"too few for 5-fold CV \(at least 5"):
        kfold(4, 5, 0, groups=np.arange(4))


def test_the_bound_counts_every_byte_and_the_reasoning_roles_system_prompt():
    # bytes, not characters: a prompt of multi-byte characters is bounded by its bytes
    assert prompt_bound("é" * 30) >= 60
    system = "You are a careful assistant. First think step by step inside <think> and </think>."
    plain = row_estimate("What is 2 + 2?", fast=Price(input=1, output=1), strong=Price(input=1, output=1), max_tokens=8, strong_max_tokens=8)
    deer = row_estimate("What is 2 + 2?", fast=Price(input=1, output=1), strong=Price(input=1, output=1), max_tokens=8,
                        strong_max_tokens=8, strong_system=system)
    assert deer.tokens - plain.tokens == len(system.encode()) + 16
    assert math.isfinite(deer.usd)


def test_the_cost_quality_legend_is_outside_the_curve(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    import numpy as np

    from calibrate import plots

    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    rng = np.random.default_rng(0)
    fast, strong = (rng.random(200) < 0.4).astype(float), (rng.random(200) < 0.7).astype(float)
    plots.cost_quality(rng.random(200), fast, strong, tmp_path / "cq.png")
    fig = kept[-1]
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))  # below the axes, never over the curve
    assert legend.y0 >= 0 and legend.x0 >= 0  # and still on the figure
    monkeypatch.undo()
    plt.close(fig)
