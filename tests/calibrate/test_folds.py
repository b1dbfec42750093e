"""Cross-validation folds keep the copies of a repeated prompt together."""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from calibrate import crossval, train
from calibrate.folds import fold_mean, kfold, prompt_groups
from policies.features import cheap_features
from router.embedding.encoders import HashEncoder


def test_distinct_prompts_are_plain_kfold():
    assert prompt_groups(["a", "b", "c"]) is None
    got = kfold(50, 5, seed=3)
    want = list(KFold(n_splits=5, shuffle=True, random_state=3).split(np.zeros(50)))
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(got, want))


def test_repeated_prompts_share_a_fold():
    texts = [f"p{i % 13}" for i in range(60)]
    groups = prompt_groups(texts)
    assert groups is not None and len(set(groups)) == 13
    seen = np.zeros(60, int)
    for tr, te in kfold(60, 5, seed=0, groups=groups):
        assert not set(groups[tr]) & set(groups[te])
        assert len(tr) + len(te) == 60
        seen[te] += 1
    assert (seen == 1).all()
    with pytest.raises(ValueError, match="distinct prompts"):
        kfold(60, 20, seed=0, groups=groups)


def test_fold_mean_skips_undefined_folds():
    assert fold_mean([0.6, float("nan"), 0.8]) == pytest.approx(0.7)
    assert np.isnan(fold_mean([float("nan")]))


def test_grouped_cv_does_not_reward_memorising_repeats():
    # 60 prompts, each repeated 5 times, with outcomes that are random per
    # prompt: nothing about a new prompt can be predicted. With the copies
    # split across folds the lexical part recalls each prompt's outcome and
    # the evaluation reports APGR > 1 (better than always calling the strong
    # model: recall, not prediction); kept together, it scores like the
    # random router it is.
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(500)]
    distinct = [" ".join(rng.choice(words, 12)) for _ in range(60)]
    fast_p, strong_p = rng.integers(0, 2, 60).astype(float), rng.integers(0, 2, 60).astype(float)
    rows = [i for i in range(60) for _ in range(5)]
    texts = [distinct[i] for i in rows]
    msgs = [[{"role": "user", "content": t}] for t in texts]
    E, F, L = HashEncoder().encode(texts), np.asarray([cheap_features(m) for m in msgs]), train.lexical_matrix(msgs)
    fast, strong = fast_p[rows], strong_p[rows]
    leaky = crossval.cross_validate(E, F, fast, strong, 5, progress=False, L=L)["summary"]
    grouped = crossval.cross_validate(E, F, fast, strong, 5, progress=False, L=L, groups=prompt_groups(texts))["summary"]
    assert leaky["apgr"] > 1.0
    assert grouped["apgr"] < 0.8
    assert grouped["distinct_prompts"] == 60 and leaky["distinct_prompts"] == 300
