"""The lexical part (ridge-gain-lex/2, a candidate of select-lex/4): chosen by inner CV, folded into the
artifact so that serving (policies.difficulty) reproduces the trainer's scores."""

import numpy as np
import pytest

from calibrate import artifact, train
from policies.difficulty import DifficultyClassifier
from policies.features import cheap_features


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    words = ["solve", "prove", "integral", "capital", "color", "poem", "sum", "translate"]
    msgs, gain = [], []
    for i in range(n):
        w = rng.choice(words, 6)
        hard = ("integral" in w) or ("prove" in w)  # a purely lexical signal
        msgs.append([{"role": "user", "content": " ".join(w) + f" {i}?"}])
        gain.append(1.0 if hard and rng.random() < 0.8 else 0.0)
    E = rng.normal(size=(n, 384))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    F = np.asarray([cheap_features(m) for m in msgs])
    gain = np.asarray(gain)
    return msgs, E, F, np.zeros(n), gain


def test_lexical_part_is_chosen_and_served_identically(tmp_path):
    msgs, E, F, fast, strong = _data()
    L = train.lexical_matrix(msgs)
    m = train.fit(E, F, fast, strong, progress=False, L=L)
    assert m.procedure == train.PROCEDURE and m.lexical_weight > 0 and "lex_coef" in m.arrays
    # the words carry the signal, the embeddings here are noise: the blend wins the inner CV
    emb_only = max(g["inner_apgr"] for g in m.grid if "alpha" in g)
    assert m.inner_apgr > emb_only + 0.03
    table = artifact.calibration_table(m.probs(m.oof_scores), fast, strong)
    out = artifact.write_artifact(tmp_path / "art", m, data={"n": len(msgs)}, cv=None, table=table, threshold=0.5,
                               rule={"rule": "share"}, embedder_variant="sentence-transformers/all-MiniLM-L6-v2@test")
    clf = DifficultyClassifier.load(out)
    served = np.asarray([clf.predict(msgs[i], E[i]) for i in range(20)])
    assert served == pytest.approx(m.probs(m.scores(E[:20], F[:20], L[:20])), rel=1e-6, abs=1e-9)
    assert clf.predict_many(F[:20], E[:20], msgs[:20]) == pytest.approx(served)


def test_without_lexical_matrix_it_is_the_embedding_ridge():
    msgs, E, F, fast, strong = _data(120, seed=1)
    m = train.fit(E, F, fast, strong, progress=False)
    assert m.procedure == "select/4" and m.lexical_alpha is None and "lex_coef" not in m.arrays
    assert m.candidate in ("baseline", "embedding", "cheap") and {c["candidate"] for c in m.candidates} == {"baseline", "embedding", "cheap"}
    old = train.fit(E, F, fast, strong, train.TrainConfig(candidates=("cheap",)), progress=False)
    assert old.procedure == "ridge-gain/1" and old.candidate == "cheap"
    with pytest.raises(ValueError, match="lexical"):
        train.fit(E, F, fast, strong, progress=False, L=train.lexical_matrix(msgs)).scores(E, F)
