"""Builds the configured upstreams. Each concrete client lives in its own module;
reasoning models are wrapped by the DEER driver (router.deer.upstream)."""

from __future__ import annotations

from pathlib import Path

from router.config import ModelSettings
from router.upstreams.base import CallContext, Upstream
from router.upstreams.fake import FakeUpstream
from router.upstreams.llamacpp import LocalServers

__all__ = ["CallContext", "Upstream", "FakeUpstream", "LocalServers", "build_upstream", "endpoint"]


def endpoint(name: str, ms: ModelSettings, local: LocalServers | None = None) -> tuple[str | None, Path | None]:
    """The model's OpenAI-compatible base URL (starting its local llama.cpp server if it has
    one) and the GGUF behind it, if local. (None, None) for providers without a URL."""
    if ms.provider == "fake":
        return None, None
    if ms.provider == "llamacpp" and not ms.api_base:
        if local is None:
            raise ValueError(f"model {name}: a local llama.cpp model needs a LocalServers manager")
        server = local.get(ms.gguf or "", n_ctx=ms.n_ctx, n_threads=ms.n_threads, chat_format=ms.chat_format,
                           chat_template=ms.chat_template)
        return server.api_base, server.gguf
    return ms.api_base, None


def build_upstream(name: str, ms: ModelSettings, api_base: str | None = None) -> Upstream:
    """A plain (non-DEER) client for one configured model; `api_base` from `endpoint`."""
    if ms.provider == "fake":
        return FakeUpstream(name=name, model=ms.model or name)
    api_base = api_base or ms.api_base
    if ms.provider == "litellm":
        from router.upstreams.litellm_client import LiteLLMUpstream

        return LiteLLMUpstream(name, ms.model, api_base=ms.api_base, api_key=ms.api_key, timeout=ms.timeout, extra=ms.extra)

    from router.upstreams.openai_compat import OpenAICompatUpstream

    assert api_base is not None  # config validation guarantees it for openai/llamacpp
    return OpenAICompatUpstream(
        name,
        ms.model or name,
        api_base,
        api_key=ms.api_key,
        timeout=ms.timeout,
        connect_timeout=ms.connect_timeout,
    )

