"""`POST /v1/embeddings` (OpenAI's embeddings API).

Model names come from the `embeddings.models` config section. `provider: local` is
the packaged all-MiniLM-L6-v2 the router already runs for routing (the pipeline's
embedder, so no second copy is loaded; built on first use when the classifier is
off): 384 dimensions, L2-normalised, inputs cut at 256 word pieces as the model
reads them. Remote models (an OpenAI-compatible server or any litellm provider,
router.upstreams.embeddings) get the request passed on.

`input`: a string or a list of strings; token arrays only for remote models (their
server decides). `encoding_format: base64` is little-endian float32, as OpenAI's.
`dimensions`: the local model has 384 only; a remote model accepts it when its config
says `dimensions: true`. Encoding runs on the embedder's worker threads, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router.access.auth import caller_of
from router import errors
from router.access.auth import check_alias
from router.config import EmbeddingModelSettings, Settings
from router.embedding.encoders import DIM, EMBEDDER_ID, sentence
from router.embedding.static import STATIC_ID
from router.types import Caller
from router.settings.aliases import match, route_key
from router.upstreams import user_field
from router.upstreams.embeddings import RemoteEmbeddings, build_remote

log = logging.getLogger("thinkgate.embeddings")

_FIELDS = {"model", "input", "encoding_format", "dimensions", "user"}


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


def _is_tokens(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)


def parse_input(value: Any, max_inputs: int) -> tuple[list[Any], bool]:
    """(inputs, are token arrays). Strings must be non-empty, as OpenAI's API requires."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif _is_tokens(value):
        return [value], True
    elif isinstance(value, list) and value:
        items = value
    else:
        raise _bad("'input' must be a non-empty string or a non-empty array of strings", "input", "invalid_type")
    if len(items) > max_inputs:
        raise _bad(f"'input' has {len(items)} items; at most {max_inputs} are allowed", "input")
    if all(isinstance(x, str) for x in items):
        for i, x in enumerate(items):
            if not x:
                raise _bad(f"'input[{i}]' must not be an empty string", "input")
        return items, False
    if all(_is_tokens(x) for x in items):
        return items, True
    raise _bad(
        "'input' must be a string, an array of strings, or token arrays (arrays of integers)", "input", "invalid_type"
    )


def _encode(vec: list[float] | np.ndarray, fmt: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return vec.tolist() if isinstance(vec, np.ndarray) else vec


LOCAL_CHARS = 8000  # an input's characters the local model is given (as for routing, policies/features.py)


async def until_disconnect(request: Request, work: Any) -> Any:
    """`work`'s result, or None with `work` cancelled when the client goes away first
    (its queued texts then leave the shared embedder unembedded)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # the client left (or this handler was cancelled): stop the work
            task.cancel()
            log.info("embeddings: the client left; its work is cancelled")
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise errors.ThinkgateError("the client closed the connection", status=499, code="client_closed")
    return task.result()


class Embeddings:
    def __init__(self, settings: Settings, embedder: Any = None) -> None:
        self.settings = settings
        self.cfg = settings.embeddings
        # the pipeline's AsyncEmbedder, shared when it runs MiniLM; the static routing encoder
        # (classifier.encoder static) is not the model this endpoint serves, so one is built here
        self._embedder = embedder if embedder is not None and not str(getattr(embedder, "id", "")).startswith(STATIC_ID) else None
        self._own: Any = None  # one built here when the pipeline has none
        self._tokenizer: Any = None
        self._lock = asyncio.Lock()
        self.remote: dict[str, RemoteEmbeddings] = {
            name: build_remote(name, ms) for name, ms in self.cfg.models.items() if ms.provider != "local"
        }

    def _model(self, name: str) -> tuple[str, EmbeddingModelSettings]:
        ms = self.cfg.models.get(name)
        if ms is not None:
            return name, ms
        for key, m in self.cfg.models.items():  # the local model also answers to its full id
            if m.provider == "local" and name == EMBEDDER_ID:
                return key, m
        pattern = match(self.cfg.models, name)  # `text-embedding-*`, `*` (router/settings/aliases.py)
        if pattern is not None:
            return pattern, self.cfg.models[pattern]
        # a chat route's or model's name (`auto`): a client that sends one model name for
        # everything gets the configured embedding model. Any other name stays a 404: a
        # vector from another model than the one asked for would not fit the client's index
        chat = self.settings
        if self.cfg.models and (name in chat.models or route_key(chat.routes, chat.models, name) is not None):
            first = next(iter(self.cfg.models))
            return first, self.cfg.models[first]
        raise errors.ModelNotFound(
            f"The embedding model '{name}' does not exist; available: {', '.join(self.cfg.models) or 'none'}",
            param="model",
        )

    async def create(self, request: Request) -> Response:
        if not self.cfg.enabled:
            raise errors.NotFound("no route /v1/embeddings: embeddings are disabled in the config", code="not_found")
        raw = await request.body()
        state = request.scope.get("state")
        pre = state.get("parsed_body") if isinstance(state, dict) else None
        if pre is not None and pre[0] == raw:
            data = pre[1]
        else:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise _bad("the request body is not valid JSON", code="invalid_json") from None
        if not isinstance(data, dict):
            raise _bad("the request body must be a JSON object", code="invalid_json")
        for k in data:
            if k not in _FIELDS:
                raise _bad(f"Unrecognized request argument supplied: {k}", k, "unsupported_parameter")
        name = data.get("model")
        if not isinstance(name, str) or not name.strip():
            raise _bad("'model' is required", "model", "missing_field")
        if "input" not in data:
            raise _bad("'input' is required", "input", "missing_field")
        fmt = data.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise _bad("'encoding_format' must be 'float' or 'base64'", "encoding_format")
        dims = data.get("dimensions")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
            raise _bad("'dimensions' must be a positive integer", "dimensions", "invalid_type")
        user = data.get("user")
        if user is not None and not isinstance(user, str):
            raise _bad("'user' must be a string", "user", "invalid_type")
        key, ms = self._model(name)
        caller = caller_of(request.scope)
        if caller.aliases is None or key not in caller.aliases:  # a key allowed the pattern may use what it serves
            check_alias(caller, name)
        inputs, tokens = parse_input(data["input"], self.cfg.max_inputs)

        if ms.provider == "local":
            if tokens:
                raise _bad(f"model '{name}' takes text; token arrays are not supported", "input", "unsupported_value")
            if dims is not None and dims != DIM:
                raise _bad(
                    f"model '{name}' has {DIM} dimensions only; 'dimensions' must be {DIM} or omitted",
                    "dimensions",
                    "unsupported_value",
                )
            texts = [t[:LOCAL_CHARS] for t in inputs]  # the model reads 256 word pieces; the rest is work for nothing
            if sum(map(len, texts)) > self.cfg.max_local_chars:
                raise _bad(
                    f"'input' is over the local model's budget of {self.cfg.max_local_chars} characters a request; "
                    "send it in several requests", "input",
                )
            vectors, n_tokens = await until_disconnect(request, self._local(texts))
            data_out = [
                {"object": "embedding", "index": i, "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)
            ]
            usage = {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
        else:
            if dims is not None and not ms.dimensions:
                raise _bad(f"model '{name}' does not accept 'dimensions'", "dimensions", "unsupported_value")
            body: dict[str, Any] = {"input": data["input"]}
            if dims is not None:
                body["dimensions"] = dims
            if user:
                body["user"] = user
                user_field.apply(body, self.settings.server.upstream_user, self.settings.server.upstream_user_key)
            out = await self.remote[key].embed(body)
            rows = sorted(out["data"], key=lambda d: d.get("index", 0))
            data_out = [
                {"object": "embedding", "index": i, "embedding": _encode(d["embedding"], fmt)}
                for i, d in enumerate(rows)
            ]
            u = out.get("usage") or {}
            pt = int(u.get("prompt_tokens") or 0)
            usage = {"prompt_tokens": pt, "total_tokens": int(u.get("total_tokens") or pt)}
        return JSONResponse({"object": "list", "data": data_out, "model": name, "usage": usage})

    # -- the local model ------------------------------------------------------------

    async def _local(self, texts: list[str]) -> tuple[list[np.ndarray], int]:
        embedder = self._embedder or await self._build_embedder()
        # one call per text: the batcher groups concurrent ones into forward passes
        # bulk: these wait behind every routing text in the shared embedder
        vecs = await asyncio.gather(*(embedder.embed_text(t, bulk=True) for t in texts))
        n = await asyncio.to_thread(self._count_tokens, texts)
        return [np.asarray(sentence(v), dtype=np.float32) for v in vecs], n

    async def _build_embedder(self) -> Any:
        async with self._lock:
            if self._own is None:
                from router.embedding.batcher import AsyncEmbedder
                from router.embedding.encoders import make_encoder

                c = self.settings.classifier
                encoder = await asyncio.to_thread(make_encoder, c.embedder, c.threads)
                self._own = AsyncEmbedder(
                    encoder, batch_max=c.batch_max, batch_tokens=c.batch_tokens, workers=c.workers
                )
        return self._own

    def _count_tokens(self, texts: list[str]) -> int:
        """Word pieces the model read ([CLS] and [SEP] included, at most 256 a text), from
        MiniLM's own tokenizer; ~4 characters a piece if it cannot be loaded."""
        if self._tokenizer is None:
            try:
                from router.embedding.encoders import _tokenizer

                self._tokenizer = _tokenizer()
            except Exception:  # the count is usage reporting: it must not fail the request
                log.warning("MiniLM tokenizer unavailable; estimating embedding tokens", exc_info=True)
                self._tokenizer = False
        if self._tokenizer is False:
            return sum(max(1, len(t) // 4) for t in texts)
        return int(sum(sum(e.attention_mask) for e in self._tokenizer.encode_batch(texts)))

    async def close(self) -> None:
        for r in self.remote.values():
            try:
                await r.close()
            except Exception:  # shutdown goes on
                log.exception("error while closing embedding model %s", r.name)
        if self._own is not None:
            self._own.close()


def routes(service: Embeddings) -> list[Route]:
    return [Route("/v1/embeddings", service.create, methods=["POST"])]
