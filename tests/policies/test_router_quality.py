import math

import numpy as np

from policies.router_quality import apgr, at_threshold


def test_perfect_and_inverted_routers():
    fast = [0, 0, 1, 1]
    strong = [1, 1, 1, 1]
    assert apgr([0.9, 0.8, 0.1, 0.2], fast, strong) > apgr([0.1, 0.2, 0.9, 0.8], fast, strong)
    assert abs(apgr([0.5] * 4, fast, strong) - 0.5) < 1e-9  # a constant score is random


def test_at_threshold_per_pair_thresholds():
    out = at_threshold([0.9, 0.1, 0.6, 0.4], [0.5, 0.5, 0.7, 0.3], [0, 1, 0, 1], [1, 1, 1, 0])
    # each pair against its own threshold: pairs 0 and 3 go to strong -> (1 + 1 + 0 + 0) / 4
    assert out["share"] == 0.5 and out["quality"] == 0.5
    assert math.isclose(out["pgr"], 0.0)  # q_fast 0.5, q_strong 0.75: nothing of the gap kept
    assert np.isnan(at_threshold([0.1], 0.5, [1], [0])["pgr"])
