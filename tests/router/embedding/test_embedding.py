import asyncio
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from router import errors
from router.config import ClassifierSettings
from router.embedding.batcher import AsyncEmbedder, build_router_model, fake_embedder
from router.embedding.encoders import HashEncoder

DATA = Path(os.environ.get("THINKGATE_DATA") or Path(__file__).resolve().parents[3] / ".." / "shared" / "data")


class CountingEncoder(HashEncoder):
    """Records each forward pass: its batch and the thread it ran on."""

    def __init__(self, delay: float = 0.02, fail: bool = False) -> None:
        super().__init__()
        self.delay, self.fail = delay, fail
        self.calls: list[list[str]] = []
        self.threads: set[int] = set()

    def encode(self, texts):
        self.calls.append(list(texts))
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        return super().encode(texts)


def msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def test_concurrent_callers_share_one_forward_pass():
    enc = CountingEncoder()
    emb = AsyncEmbedder(enc, batch_max=32)
    vecs = await asyncio.gather(*(emb.embed(msg(f"prompt {i}")) for i in range(20)))
    assert len(enc.calls) == 1 and len(enc.calls[0]) == 20
    assert emb.batches == 1
    # each caller gets its own text's vector
    ref = HashEncoder().encode([f"prompt {i}" for i in range(20)])
    assert all(np.allclose(v, r) for v, r in zip(vecs, ref))
    emb.close()


async def test_arrivals_during_a_pass_go_together_in_the_next():
    enc = CountingEncoder(delay=0.1)
    emb = AsyncEmbedder(enc, batch_max=64)
    first = asyncio.ensure_future(emb.embed(msg("first")))
    await asyncio.sleep(0.03)  # the first pass is running now
    rest = [asyncio.ensure_future(emb.embed(msg(f"later {i}"))) for i in range(10)]
    await asyncio.gather(first, *rest)
    assert [len(c) for c in enc.calls] == [1, 10]
    emb.close()


async def test_batch_max_splits_passes():
    enc = CountingEncoder(delay=0.0)
    emb = AsyncEmbedder(enc, batch_max=8)
    await asyncio.gather(*(emb.embed(msg(f"p{i}")) for i in range(20)))
    assert [len(c) for c in enc.calls] == [8, 8, 4]
    emb.close()


async def test_token_cap_keeps_long_prompts_out_of_big_batches():
    enc = CountingEncoder(delay=0.0)
    emb = AsyncEmbedder(enc, batch_max=16, batch_tokens=256)
    long = [f"{i} " + "x" * 200 for i in range(8)]  # ~52 estimated tokens each: 4 fit in 256
    short = [f"s{i}" for i in range(16)]
    await asyncio.gather(*(emb.embed(msg(t)) for t in long))
    await asyncio.gather(*(emb.embed(msg(t)) for t in short))
    assert [len(c) for c in enc.calls] == [4, 4, 16]
    await emb.embed(msg("y" * 5000))  # over the cap alone: still embedded, in a batch of one
    assert len(enc.calls[-1]) == 1
    emb.close()


async def test_workers_run_batches_at_once():
    class Overlap(CountingEncoder):
        def __init__(self) -> None:
            super().__init__(delay=0.1)
            self.lock, self.now, self.most = threading.Lock(), 0, 0

        def encode(self, texts):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                return super().encode(texts)
            finally:
                with self.lock:
                    self.now -= 1

    for workers in (1, 2):
        enc = Overlap()
        emb = AsyncEmbedder(enc, batch_max=4, workers=workers)
        vecs = await asyncio.gather(*(emb.embed(msg(f"p{i}")) for i in range(16)))
        assert enc.most == workers and sum(len(c) for c in enc.calls) == 16
        assert all(np.allclose(v, r) for v, r in zip(vecs, HashEncoder().encode([f"p{i}" for i in range(16)])))
        emb.close()


async def test_runs_off_the_event_loop():
    enc = CountingEncoder(delay=0.2)
    emb = AsyncEmbedder(enc)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.ensure_future(ticker())
    await emb.embed(msg("slow"))
    t.cancel()
    assert ticks >= 5  # the loop kept running while the encoder slept
    assert threading.get_ident() not in enc.threads
    emb.close()


async def test_failure_reaches_every_waiter_and_service_continues():
    enc = CountingEncoder(fail=True)
    emb = AsyncEmbedder(enc)
    results = await asyncio.gather(*(emb.embed(msg(f"x{i}")) for i in range(3)), return_exceptions=True)
    # each text failed alone too (the batch is retried text by text): every waiter is told
    assert all(isinstance(r, errors.EmbeddingFailed) for r in results)
    enc.fail = False
    assert (await emb.embed(msg("ok"))).shape == (384,)
    emb.close()


async def test_repeated_text_is_memoised():
    enc = CountingEncoder(delay=0.0)
    emb = AsyncEmbedder(enc)
    a = await emb.embed(msg("same"))
    b = await emb.embed(msg("same"))
    assert len(enc.calls) == 1 and np.array_equal(a, b)
    emb.close()


async def test_then_runs_in_the_batch_job_and_fails_only_its_caller():
    enc = CountingEncoder(delay=0.05)
    emb = AsyncEmbedder(enc, batch_max=32)
    ran: list[int] = []

    def then(i):  # e.g. the classifier: features and head on the vector
        def f(v):
            ran.append(threading.get_ident())
            if i == 3:
                raise ValueError("this caller's input")
            return i, float(v[0])
        return f

    out = await asyncio.gather(*(emb.embed(msg(f"p{i}"), then=then(i)) for i in range(6)), emb.embed(msg("plain")),
                               return_exceptions=True)
    assert len(enc.calls) == 1 and emb.batches == 1  # one job: the pass and every `then`
    assert set(ran) == enc.threads and threading.get_ident() not in enc.threads
    assert isinstance(out[3], ValueError)
    for i in (0, 1, 2, 4, 5):
        v, (j, first) = out[i]
        assert j == i and first == float(v[0]) and np.allclose(v, HashEncoder().encode([f"p{i}"])[0])
    assert isinstance(out[6], np.ndarray)  # a caller without `then` gets the bare vector
    # a remembered text still runs its `then` off the loop
    v, (j, _) = await emb.embed(msg("p0"), then=then(9))
    assert j == 9 and len(enc.calls) == 1 and ran[-1] != threading.get_ident()
    emb.close()


async def test_then_still_runs_when_the_batch_is_retried_text_by_text():
    class FailsTogether(CountingEncoder):
        def encode(self, texts):
            if len(texts) > 1:
                raise RuntimeError("a batch")
            return super().encode(texts)

    enc = FailsTogether(delay=0.0)
    emb = AsyncEmbedder(enc, batch_max=32)
    out = await asyncio.gather(*(emb.embed(msg(f"p{i}"), then=lambda v, i=i: i) for i in range(4)))
    assert [j for _, j in out] == [0, 1, 2, 3] and all(len(c) == 1 for c in enc.calls[1:])
    emb.close()


async def test_fake_embedder_vectors_are_normalised():
    v = await fake_embedder().embed(msg("hello world"))
    assert v.dtype == np.float32 and v.shape == (384,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_build_router_model():
    assert build_router_model(ClassifierSettings(enabled=False)) == (None, None)
    embedder, clf = build_router_model(ClassifierSettings(embedder="hash", artifact=None))
    assert embedder is not None and clf is None and embedder.dim == 384
    embedder.close()


def test_build_router_model_refuses_an_embedder_narrower_than_the_artifact():
    from policies.difficulty import ArtifactError

    # the MiniLM artifact reads the layer means too; the hashed stand-in has none
    with pytest.raises(ArtifactError, match="layer means"):
        build_router_model(ClassifierSettings(encoder="minilm", embedder="hash"))


# -- the real encoder ------------------------------------------------------------------


def real_prompts(n: int = 48) -> list[str]:
    out = []
    with open(DATA / "prompts" / "arena-hard-v2.jsonl") as fh:
        for line in fh:
            out.append(json.loads(line)["prompt"])
            if len(out) == n // 2:
                break
    with open(DATA / "prompts" / "mt-bench.jsonl") as fh:
        for line in fh:
            out.append(json.loads(line)["turns"][0])
            if len(out) == n:
                break
    return out


@pytest.mark.skipif(not (DATA / "prompts").exists(), reason="../shared/data/prompts is not present")
def test_onnx_int8_parity_with_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from router.embedding.encoders import DIM, LAYERS, OnnxEncoder, TorchEncoder, model_dir, sentence

    texts = real_prompts()
    # the sentence embedding against plain sentence-transformers
    plain = SentenceTransformer(str(model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    ref = TorchEncoder().encode(texts)
    assert np.allclose(sentence(ref), plain, atol=1e-5)
    fast = OnnxEncoder().encode(texts)
    assert fast.shape == (len(texts), DIM * (1 + LAYERS)) and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(sentence(fast), axis=1), 1.0, atol=1e-4)
    cos = (sentence(ref) * sentence(fast)).sum(1)
    assert cos.min() >= 0.98, f"min cosine {cos.min():.4f}"
    # each layer's mean against the torch forward pass
    for layer in range(1, LAYERS + 1):
        a, b = (x[:, DIM * layer : DIM * (layer + 1)] for x in (ref, fast))
        c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert c.min() >= 0.98, f"layer {layer}: min cosine {c.min():.4f}"
    # int8 activations are quantised per batch, so a prompt embedded alone
    # differs slightly from the same prompt in a padded batch: both must hold parity
    enc = OnnxEncoder()
    single = np.stack([enc.encode([t])[0] for t in texts])
    cos_single = (sentence(ref) * sentence(single)).sum(1)
    assert cos_single.min() >= 0.98, f"min cosine (batch of 1) {cos_single.min():.4f}"


@pytest.mark.skipif(not (DATA / "prompts").exists(), reason="../shared/data/prompts is not present")
async def test_real_embedder_batches_concurrent_requests():
    from router.embedding.encoders import OnnxEncoder

    enc = OnnxEncoder()
    emb = AsyncEmbedder(enc, batch_tokens=1 << 20)  # no token cap: all 16 in one pass
    texts = real_prompts(16)
    vecs = await asyncio.gather(*(emb.embed(msg(t)) for t in texts))
    assert enc.forward_calls == 1
    assert np.allclose(np.stack(vecs), enc.encode(texts), atol=1e-3)
    emb.close()


def test_imports_stay_light():
    import subprocess
    import sys

    code = (
        "import sys, router.embedding.batcher, router.embedding.encoders, policies.difficulty, calibrate.cli;"
        "heavy = {'torch', 'onnxruntime', 'sklearn', 'sentence_transformers', 'transformers'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_survives_a_new_event_loop():
    enc = CountingEncoder(delay=0.0)
    emb = AsyncEmbedder(enc)
    for i in range(2):  # e.g. one loop per test, or a restarted app
        assert asyncio.run(emb.embed(msg(f"loop {i}"))).shape == (384,)
    emb.close()
