"""Turn chat messages into the raw prompt string a reasoning model expects.

DEER drives the model through `/v1/completions` with raw prompts, because it
must control the exact prefix: the thinking so far, then either more thinking,
a trial-answer suffix, or the think-close tag and the answer. Chat endpoints
cannot express "continue this half-written assistant turn" portably (vLLM's
`continue_final_message` re-renders the whole conversation on every call, and
reasoning templates such as DeepSeek-R1's strip thinking from assistant turns),
so the chat template is applied once per request and everything after that is
plain string concatenation, which also keeps the server's prefix cache hot.

Two ways to apply the template, chosen per model (`deer.template`):

- `server` (vLLM): POST `/tokenize` with `messages` + `add_generation_prompt`,
  then `/detokenize` the ids back to text. The server renders with the model's
  own tokenizer config, so thinkgate needs no tokenizer, no model files and no
  transformers import; two cheap calls per request, off the GPU.
- `local` (llama.cpp, whose server has no chat-template tokenize endpoint):
  render the template stored in the GGUF (`tokenizer.chat_template`), or the
  one configured in `deer.chat_template`, with jinja2 in a sandbox, the way
  Hugging Face's `apply_chat_template` does. The GGUF header is read here with
  a small pure-Python reader, so the gateway never loads llama.cpp itself.
"""

from __future__ import annotations

import struct
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from jinja2 import TemplateError as JinjaError

from router import errors
from router.upstreams.openai_compat import map_transport_error

# -- GGUF metadata -------------------------------------------------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_WANTED = ("tokenizer.chat_template", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _read_str(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    return f.read(n).decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _read_str(f)
    if vtype == _ARRAY:
        itype, count = _read(f, "<I"), _read(f, "<Q")
        if not keep and itype in _SCALARS:  # skip without decoding
            f.seek(count * struct.calcsize(_SCALARS[itype]), 1)
            return None
        items = [_read_value(f, itype, keep) for _ in range(count)]
        return items if keep else None
    raise ValueError(f"unknown GGUF value type {vtype}")


@lru_cache(maxsize=8)
def gguf_template_info(path: Path) -> dict[str, Any]:
    """{"chat_template", "bos_token", "eos_token"} from a GGUF file's header."""
    meta: dict[str, Any] = {}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version = _read(f, "<I")
        if version < 2:
            raise ValueError(f"GGUF v{version} is not supported")
        _read(f, "<Q")  # tensor count
        kv_count = _read(f, "<Q")
        for _ in range(kv_count):
            key = _read_str(f)
            vtype = _read(f, "<I")
            keep = key in _WANTED or key == "tokenizer.ggml.tokens"
            value = _read_value(f, vtype, keep)
            if keep:
                meta[key] = value
    tokens = meta.get("tokenizer.ggml.tokens") or []

    def token(key: str) -> str:
        i = meta.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

    return {
        "chat_template": meta.get("tokenizer.chat_template"),
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
    }


# -- jinja rendering -----------------------------------------------------------


class TemplateError(errors.ThinkgateError):
    """The chat template could not be rendered (a configuration problem)."""


def _raise(message: str) -> None:
    raise TemplateError(f"chat template: {message}")


@lru_cache(maxsize=8)
def _compile(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def render_local(source: str, messages: list[dict[str, Any]], *, bos_token: str = "", eos_token: str = "") -> str:
    try:
        return str(
            _compile(source).render(
                messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token, tools=None
            )
        )
    except TemplateError:
        raise
    except (JinjaError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        # a template that fails on these messages is a configuration error: report it with its message
        raise TemplateError(f"chat template failed to render: {type(e).__name__}: {e}") from None


# -- the renderer used by the DEER driver --------------------------------------


class PromptRenderer:
    """Renders messages with the model's chat template (see module doc)."""

    def __init__(
        self,
        mode: str,
        *,
        upstream: str,
        model: str,
        api_base: str,
        client: httpx.AsyncClient,
        chat_template: str | None = None,
        gguf: Path | None = None,
    ) -> None:
        self.mode = mode
        self.upstream = upstream
        self.model = model
        # vLLM serves /tokenize and /detokenize at the root, not under /v1
        base = api_base.rstrip("/")
        self.root = base.removesuffix("/v1")
        self.client = client
        self.chat_template = chat_template
        self.gguf = gguf
        self._can_count = True

    async def render(self, messages: list[dict[str, Any]]) -> tuple[str, int | None]:
        """(prompt text, prompt token count when known)."""
        if self.mode == "local":
            prompt = self._render_local(messages)
            return prompt, await self._count_local(prompt)
        return await self._render_server(messages)

    async def _count_local(self, prompt: str) -> int | None:
        """Prompt tokens for usage, from llama-cpp-python's /extras/tokenize/count;
        None (usage then reports 0 prompt tokens) where a server lacks it."""
        if not self._can_count:
            return None
        try:
            resp = await self.client.post(f"{self.root}/extras/tokenize/count", json={"input": prompt}, timeout=5.0)
            if resp.status_code == 200:
                count = resp.json().get("count")
                return count if isinstance(count, int) else None
            if resp.status_code in (404, 405):
                self._can_count = False
        except (httpx.HTTPError, ValueError):
            pass
        return None

    def _render_local(self, messages: list[dict[str, Any]]) -> str:
        source, bos, eos = self.chat_template, "", ""
        if self.gguf is not None:
            info = gguf_template_info(self.gguf)
            source = source or info["chat_template"]
            bos, eos = info["bos_token"], info["eos_token"]
        if not source:
            raise TemplateError(
                f"model {self.upstream}: template 'local' needs deer.chat_template or a GGUF with a chat template"
            )
        return render_local(source, messages, bos_token=bos, eos_token=eos)

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await self.client.post(f"{self.root}{path}", json=payload)
        except httpx.HTTPError as e:
            raise map_transport_error(e, self.upstream) from None
        if resp.status_code >= 400:
            raise errors.from_status(
                resp.status_code, f"{path} answered HTTP {resp.status_code}", upstream=self.upstream
            )
        try:
            data = resp.json()
        except ValueError:
            raise errors.UpstreamUnavailable(
                f"upstream {self.upstream}: {path} returned invalid JSON", upstream=self.upstream
            ) from None
        return data if isinstance(data, dict) else {}

    async def _render_server(self, messages: list[dict[str, Any]]) -> tuple[str, int | None]:
        tok = await self._post("/tokenize", {"model": self.model, "messages": messages, "add_generation_prompt": True})
        ids = tok.get("tokens")
        if not isinstance(ids, list):
            raise errors.UpstreamUnavailable(
                f"upstream {self.upstream}: /tokenize returned no tokens", upstream=self.upstream
            )
        det = await self._post("/detokenize", {"model": self.model, "tokens": ids})
        prompt = det.get("prompt")
        if not isinstance(prompt, str):
            raise errors.UpstreamUnavailable(
                f"upstream {self.upstream}: /detokenize returned no prompt", upstream=self.upstream
            )
        return prompt, len(ids)
