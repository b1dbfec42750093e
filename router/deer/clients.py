"""Every configured model's client, the DEER driver for reasoning models included.

It sits here, the lowest layer that knows both the plain upstreams and the DEER
driver, so that `router.build` (the gateway) and `thinkgate calibrate collect`
(offline) call the models in exactly the same way: an outcome table collected
through anything else would grade a different model than the one routed to."""

from __future__ import annotations

from router.config import ModelSettings, Settings
from router.upstreams import LocalServers, Upstream, build_upstream, endpoint
from router.upstreams.markup import CleanAnswers


def build_model(name: str, ms: ModelSettings, local: LocalServers | None = None) -> Upstream:
    """One configured model's client: a reasoning model with DEER on and an
    OpenAI-compatible URL gets the DEER driver, every other model a plain upstream."""
    api_base, gguf = endpoint(name, ms, local)
    upstream: Upstream
    if ms.reasoning and ms.deer is not None and ms.deer.enabled and api_base:
        from router.deer.upstream import DeerUpstream

        upstream = DeerUpstream.from_settings(name, ms, api_base=api_base, gguf=gguf)
    else:
        upstream = build_upstream(name, ms, api_base)
    # thinking delimiters never reach answer text, for the gateway and collect alike
    return CleanAnswers(upstream)


def build_upstreams(settings: Settings, local: LocalServers | None = None) -> dict[str, Upstream]:
    return {name: build_model(name, ms, local) for name, ms in settings.models.items()}
