"""calibrate.joint: simulating a joint policy on outcomes, the three curves,
system APGR, and `thinkgate calibrate joint` end to end on a synthetic file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from calibrate import joint
from calibrate.cli import main
from policies.joint import JointPolicy


def data(n: int = 600, seed: int = 0) -> joint.Data:
    """Two signals that see different errors: P sees the hard prompts (only the
    strong model gets them right), on which the fast model is confidently wrong;
    the confidence sees the easy prompts the fast model slips on."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n) < 0.4
    slip = rng.random(n) < 0.25  # easy prompts the fast model still gets wrong
    fast = np.where(hard | slip, 0.0, 1.0)
    strong = np.ones(n)
    p = np.clip(np.where(hard, 0.7, 0.3) + rng.normal(0, 0.12, n), 0, 1)
    conf = np.clip(np.where(slip & ~hard, 0.35, 0.75) + rng.normal(0, 0.12, n), 0, 1)
    conf[:5] = np.nan  # a few answers without logprobs
    return joint.Data(p, conf, fast, strong, np.ones(n), np.full(n, 10.0))


def test_simulate_counts_reasoning_at_once_escalations_and_costs():
    d = joint.Data(np.array([0.9, 0.1, 0.1]), np.array([0.9, 0.2, 0.9]), np.array([0.0, 0.0, 1.0]),
                   np.array([1.0, 1.0, 1.0]), np.ones(3), np.full(3, 10.0))
    pt = joint.simulate(d, JointPolicy.from_lists(0.5, [0.5]))
    assert math.isclose(pt.share, 2 / 3) and pt.quality == 1.0
    assert math.isclose(pt.cost, (10 + 11 + 1) / 3)  # an escalation pays for both answers


def test_system_apgr_of_the_two_ends_is_the_diagonal_and_of_an_oracle_is_high():
    assert math.isclose(joint.system_apgr([], 0.0, 1.0), 0.5, abs_tol=1e-9)
    assert joint.system_apgr([joint.Point(0.2, 1.0, 0.0)], 0.0, 1.0) > 0.85


def test_joint_beats_each_signal_alone_when_they_see_different_errors():
    r = joint.fit(data(), {"target_share": 0.5}, bins=2, family="bins")
    assert r["apgr"]["joint"] > max(r["apgr"]["classifier"], r["apgr"]["selfref"]) + 0.02, r["apgr"]
    pol = r["policy"]
    assert r["policy_fit"]["share"] <= 0.5 + 1e-9 and len(pol["thresholds"]) == 2 and len(pol["edges"]) == 1
    assert r["n_fit"] + r["n_eval"] == 600


def test_the_linear_family_ranks_by_one_score_and_beats_each_signal_alone():
    r = joint.fit(data(), {"target_share": 0.5})
    assert r["family"] == "linear" and r["slope"] > 0, r["fit_apgr_by_slope"]
    assert r["apgr"]["joint"] > max(r["apgr"]["classifier"], r["apgr"]["selfref"]) + 0.02, r["apgr"]
    pol = r["policy"]
    assert pol["p_hi"] == math.inf and pol["edges"] == [] and pol["slope"] == r["slope"]
    # slope 0 is Self-Ref alone: the same curve
    d = data()
    assert joint.system_apgr(joint.linear_curve(d, 0.0), d.fast.mean(), d.strong.mean()) == \
        joint.system_apgr(joint.selfref_curve(d), d.fast.mean(), d.strong.mean())


def test_where_p_says_nothing_the_linear_family_keeps_self_ref():
    d = data()
    d.p = np.random.default_rng(5).random(len(d.p))  # P unrelated to the outcomes
    slope, by = joint.best_slope(d)
    assert by[0.0] >= max(by.values()) - 0.02, by  # no slope does clearly better than none


def test_a_pgr_target_picks_the_cheapest_policy_that_reaches_it():
    front = [joint.Point(0.2, 0.5, 1), joint.Point(0.4, 0.8, 2), joint.Point(0.6, 0.9, 3)]
    assert joint.choose(front, 0.0, 1.0, {"target_pgr": 0.75}) is front[1]
    assert joint.choose(front, 0.0, 1.0, {"max_cost": 2.5}) is front[1]
    assert joint.choose(front, 0.0, 1.0, {"target_share": 0.1}) is None


def test_the_command_fits_writes_and_plots(tmp_path: Path, capsys):
    d = data(300, seed=1)
    rows = [{"id": str(i), "prompt": f"q{i}", "fast": float(d.fast[i]), "strong": float(d.strong[i]), "p": float(d.p[i]),
             "fast_confidence": None if np.isnan(d.conf[i]) else float(d.conf[i])} for i in range(300)]
    f = tmp_path / "o.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    out, png = tmp_path / "j.json", tmp_path / "j.png"
    assert main(["joint", "--outcomes", str(f), "--target-share", "0.5", "--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "system APGR" in text and "chosen: p_hi=" in text
    saved = json.loads(out.read_text())
    assert set(saved["apgr"]) == {"joint", "classifier", "selfref"} and png.stat().st_size > 1000


def test_the_command_says_what_is_missing(tmp_path: Path, capsys):
    f = tmp_path / "o.jsonl"
    f.write_text(json.dumps({"id": "1", "prompt": "q", "fast": 1, "strong": 1, "fast_confidence": 0.5}))
    assert main(["joint", "--outcomes", str(f)]) == 2
    assert "no `p`" in capsys.readouterr().err
