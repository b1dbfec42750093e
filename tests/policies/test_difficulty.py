import json
import shutil

import numpy as np
import pytest

from policies.difficulty import MODELS_DIR, ArtifactError, DifficultyClassifier, decide
from policies.features import (
    CHEAP_FEATURE_NAMES,
    FEATURE_VERSION,
    LEXICAL_DIM,
    cheap_features,
    conversation_text,
    lexical_indices,
)


@pytest.fixture
def default_copy(tmp_path):
    dst = tmp_path / "art"
    shutil.copytree(MODELS_DIR / "default", dst)
    return dst


def _edit_meta(path, **changes):
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def _unit(seed: int) -> np.ndarray:
    """A routing vector: a unit sentence embedding, then layer means."""
    from router.embedding.encoders import DIM, LAYERS_DIM

    v = np.random.default_rng(seed).normal(size=DIM + LAYERS_DIM).astype(np.float32) * 0.1
    v[:DIM] /= np.linalg.norm(v[:DIM])
    return v


def test_default_artifact_loads_and_predicts():
    clf = DifficultyClassifier.load("default")
    assert clf.meta["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert clf.meta["feature_version"] == FEATURE_VERSION
    assert 0.0 < clf.threshold < 1.0
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    p = clf.predict(msgs, _unit(0))
    assert 0.0 <= p <= 1.0
    assert clf.route(p) == decide(p, clf.threshold)
    # the batch path agrees with the single one
    many = clf.predict_many(np.asarray([cheap_features(msgs)]), _unit(0)[None, :], [msgs])
    assert many[0] == pytest.approx(p)


def test_without_messages_features_default_to_training_means():
    from router.embedding.encoders import OnnxEncoder

    clf = DifficultyClassifier.load("default")
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    emb = OnnxEncoder().encode([msgs[0]["content"]])[0]
    p = clf.predict([], emb)  # replay from a stored embedding only
    assert 0.05 < p < 0.6 and abs(p - clf.predict(msgs, emb)) < 0.2


def test_probability_is_monotone_in_score():
    clf = DifficultyClassifier.load("default")
    scores = np.linspace(-2, 2, 41)
    probs = [clf.calibrate(s) for s in scores]
    assert all(b > a for a, b in zip(probs, probs[1:]))


def test_decide_is_inclusive_at_threshold():
    assert decide(0.5, 0.5) == "reasoning"
    assert decide(0.4999, 0.5) == "fast"


def test_refuses_other_embedder(default_copy):
    _edit_meta(default_copy, embedder="BAAI/bge-small-en-v1.5")
    with pytest.raises(ArtifactError, match=r"bge-small.*retrain"):
        DifficultyClassifier.load(default_copy)


def test_refuses_other_feature_version(default_copy):
    _edit_meta(default_copy, feature_version="conv-v0")
    with pytest.raises(ArtifactError, match="feature set 'conv-v0'"):
        DifficultyClassifier.load(default_copy)


def test_refuses_unknown_format_and_missing(default_copy, tmp_path):
    _edit_meta(default_copy, format="something/9")
    with pytest.raises(ArtifactError, match="format"):
        DifficultyClassifier.load(default_copy)
    with pytest.raises(ArtifactError, match="no classifier artifact"):
        DifficultyClassifier.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no meta.json"):
        DifficultyClassifier.load(tmp_path / "empty")


def test_default_artifact_has_a_lexical_part_that_counts():
    clf = DifficultyClassifier.load("default")
    assert clf.meta["format"] == "thinkgate-difficulty/2" and clf.meta["lexical_dim"] == LEXICAL_DIM
    a = [{"role": "user", "content": "Solve 3x + 5 = 20. How many apples are left?"}]
    b = [{"role": "user", "content": "hi"}]
    f = np.asarray([cheap_features(a)] * 2)
    e = np.zeros((2, clf.embedding_dim))  # a neutral embedding keeps P away from 0 and 1
    # same embedding and cheap features, other words: only the lexical part differs
    p = clf.predict_many(f, e, [a, b])
    assert p[0] != pytest.approx(p[1])
    # without messages the lexical part is left out (~ its training mean)
    assert clf.predict_many(f, e)[0] == pytest.approx(clf.predict_many(f, e)[1])


def test_format_1_artifact_without_lexical_weights_still_loads(default_copy):
    with np.load(default_copy / "weights.npz") as z:
        w = {k: z[k] for k in z.files if not k.startswith("lex_")}
    np.savez(default_copy / "weights.npz", **w)
    meta = json.loads((default_copy / "meta.json").read_text())
    for k in ("lexical_version", "lexical_dim"):
        meta.pop(k, None)
    meta["format"] = "thinkgate-difficulty/1"
    (default_copy / "meta.json").write_text(json.dumps(meta))
    clf = DifficultyClassifier.load(default_copy)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    assert clf.predict(msgs, _unit(0)) == pytest.approx(clf.predict_many(np.asarray([cheap_features(msgs)]), _unit(0)[None, :])[0])


def test_refuses_other_lexical_version(default_copy):
    _edit_meta(default_copy, lexical_version="lex-v0")
    with pytest.raises(ArtifactError, match="lexical features 'lex-v0'"):
        DifficultyClassifier.load(default_copy)


def test_refuses_wrong_weight_shapes(default_copy):
    _edit_meta(default_copy, embedding_dim=768)
    with pytest.raises(ArtifactError, match="shapes"):
        DifficultyClassifier.load(default_copy)


# -- the representation shared by training and serving ------------------------------


def test_single_user_turn_is_its_text():
    assert conversation_text([{"role": "user", "content": "  Solve x^2 = 4  "}]) == "Solve x^2 = 4"


def test_last_user_turn_comes_first_then_context_newest_first():
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "Now prove it."}]},
    ]
    assert conversation_text(msgs) == "Now prove it.\n[assistant] 4\n[user] What is 2+2?\n[system] You are terse."


def test_cheap_features_shape_and_signals():
    plain = cheap_features([{"role": "user", "content": "hello there"}])
    mathy = cheap_features([{"role": "user", "content": "Solve 3x + 5 = 20 and compute 12*7 - 4."}])
    assert len(plain) == len(CHEAP_FEATURE_NAMES)
    i = CHEAP_FEATURE_NAMES.index
    assert mathy[i("log_numbers")] > plain[i("log_numbers")]
    assert mathy[i("math_marks_per_100c")] > plain[i("math_marks_per_100c")]
    multi = cheap_features([{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                            {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])
    assert multi[i("has_system")] == 1.0 and multi[i("log_turns")] > plain[i("log_turns")]


def test_lexical_indices_are_stable_hashed_word_ngrams():
    msgs = [{"role": "user", "content": "Solve x = 2 + 2"}]
    idx = lexical_indices(msgs)
    # 6 tokens (solve x = 2 + 2) -> 5 distinct unigrams + 5 bigrams, sorted, in range
    assert idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < LEXICAL_DIM
    assert len(idx) == 10
    assert lexical_indices([{"role": "user", "content": "SOLVE x = 2 + 2"}]) == idx  # lower-cased
    assert lexical_indices([]) == [] and lexical_indices([{"role": "user", "content": ""}]) == []
    import zlib

    assert zlib.crc32(b"solve") % LEXICAL_DIM in idx  # CRC32: the same in every process
