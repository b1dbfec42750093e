"""ridge-gain-lex/3 chooses by inner CV whether the embedding ridge reads the
sentence embedding alone or with the layer means, and serving reads exactly
the chosen width of the routing vector."""

import numpy as np
import pytest

from calibrate import artifact, train
from policies.difficulty import ArtifactError, DifficultyClassifier
from policies.features import cheap_features
from router.embedding.encoders import DIM, LAYERS_DIM

WIDE = DIM + LAYERS_DIM


def _data(signal_in_layers: bool, n=400, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(n, WIDE))
    V[:, :DIM] /= np.linalg.norm(V[:, :DIM], axis=1, keepdims=True)
    col = DIM + 5 if signal_in_layers else 5
    hard = V[:, col] > np.quantile(V[:, col], 0.6)
    strong = (hard & (rng.random(n) < 0.9)).astype(float)
    msgs = [[{"role": "user", "content": f"question {i}"}] for i in range(n)]
    F = np.asarray([cheap_features(m) for m in msgs])
    return msgs, V, F, np.zeros(n), strong


@pytest.mark.parametrize("in_layers", [True, False])
def test_the_view_with_the_signal_wins(in_layers, tmp_path):
    msgs, V, F, fast, strong = _data(in_layers)
    cfg = train.TrainConfig(alphas=(10.0, 100.0, 1000.0), feature_weights=(1.0,))
    m = train.fit(V, F, fast, strong, cfg, progress=False)
    assert m.embedding_dim == (WIDE if in_layers else DIM)
    assert {g["embedding_dim"] for g in m.grid} == {DIM, WIDE}  # both were tried
    table = artifact.calibration_table(m.probs(m.oof_scores), fast, strong)
    out = artifact.write_artifact(tmp_path / "art", m, data={"n": len(msgs)}, cv=None, table=table, threshold=0.5,
                               rule={"rule": "share"}, embedder_variant="sentence-transformers/all-MiniLM-L6-v2@test")
    clf = DifficultyClassifier.load(out)
    assert clf.embedding_dim == m.embedding_dim
    served = np.asarray([clf.predict(msgs[i], V[i]) for i in range(20)])
    assert served == pytest.approx(m.probs(m.scores(V[:20], F[:20])), rel=1e-6, abs=1e-9)
    if in_layers:  # a sentence embedding alone is not enough for this artifact: a clear error
        with pytest.raises(ArtifactError, match="layer means"):
            clf.predict(msgs[0], V[0, :DIM])
    else:  # a sentence-only artifact serves any routing vector (it reads the first DIM values)
        assert clf.predict(msgs[0], V[0, :DIM]) == pytest.approx(served[0])


def test_narrow_embeddings_skip_the_wide_view():
    msgs, V, F, fast, strong = _data(False, n=200)
    m = train.fit(V[:, :DIM], F, fast, strong, train.TrainConfig(alphas=(100.0,), feature_weights=(1.0,)), progress=False)
    assert m.embedding_dim == DIM and {g["embedding_dim"] for g in m.grid} == {DIM}


def test_one_standard_error_rule():
    clear = np.array([0.70, 0.71, 0.69]), np.array([0.66, 0.67, 0.66])
    assert train._clearly_better(*clear)
    # a higher mean that rests on one lucky fold is not clearly better
    lucky = np.array([0.60, 0.80, 0.66]), np.array([0.66, 0.67, 0.66])
    assert lucky[0].mean() > lucky[1].mean() and not train._clearly_better(*lucky)
    # folds where APGR is undefined (NaN) are left out of the comparison
    assert train._clearly_better(np.array([0.7, np.nan, 0.71, 0.72]), np.array([0.6, 0.6, 0.61, 0.6]))


def test_without_the_rule_the_best_mean_wins():
    msgs, V, F, fast, strong = _data(False, n=300, seed=3)
    cfg = train.TrainConfig(alphas=(100.0,), feature_weights=(1.0,), one_se_rule=False)
    m = train.fit(V, F, fast, strong, cfg, progress=False)
    best = max((g for g in m.grid if "embedding_dim" in g), key=lambda g: g["inner_apgr"])
    assert m.embedding_dim == best["embedding_dim"]
