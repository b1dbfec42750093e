"""Builds the configured upstreams. Each concrete client lives in its own module;
reasoning models are wrapped by the DEER driver (router.deer)."""

from __future__ import annotations

from pathlib import Path

from router.config import ModelSettings, Settings
from router.upstreams.base import CallContext, Upstream
from router.upstreams.fake import FakeUpstream
from router.upstreams.llamacpp import LocalServers

__all__ = ["CallContext", "Upstream", "FakeUpstream", "LocalServers", "build_upstream", "build_upstreams"]


def build_upstream(name: str, ms: ModelSettings, local: LocalServers | None = None) -> Upstream:
    api_base = ms.api_base
    gguf: Path | None = None
    if ms.provider == "fake":
        return FakeUpstream(name=name, model=ms.model or name)
    if ms.provider == "llamacpp" and not api_base:
        if local is None:
            raise ValueError(f"model {name}: a local llama.cpp model needs a LocalServers manager")
        server = local.get(ms.gguf or "", n_ctx=ms.n_ctx, n_threads=ms.n_threads)
        api_base, gguf = server.api_base, server.gguf

    if ms.reasoning and ms.deer is not None and ms.deer.enabled and api_base:
        from router.deer import DeerUpstream

        return DeerUpstream.from_settings(name, ms, api_base=api_base, gguf=gguf)

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


def build_upstreams(settings: Settings, local: LocalServers | None = None) -> dict[str, Upstream]:
    return {name: build_upstream(name, ms, local) for name, ms in settings.models.items()}
