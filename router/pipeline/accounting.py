"""What one request cost: its tokens (estimated when the upstream does not say),
their price on the model that answered, any escalated fast answer that was
paid for and thrown away, and what the always-reasoning baseline would have
paid — all written onto the request's `Decision`.
"""

from __future__ import annotations

from typing import Any

from policies.features import message_text
from router.config import Settings
from router.settings.aliases import route_key
from router.pipeline.parts import _Target
from router.pipeline.replies import completion_text, estimate_tokens
from router.types import ChatRequest, Decision


def account(settings: Settings, req: ChatRequest, d: Decision, target: _Target, body: dict[str, Any]) -> None:
    usage = body.get("usage") or {}
    pt = usage.get("prompt_tokens")
    ct = usage.get("completion_tokens")
    if pt is None or ct is None:
        pt = pt if pt is not None else sum(estimate_tokens(message_text(m.get("content"))) for m in req.messages)
        ct = ct if ct is not None else estimate_tokens(completion_text(body))
        body["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    d.prompt_tokens, d.completion_tokens = int(pt), int(ct)
    d.upstream, d.upstream_model = target.model_name, target.upstream.model
    d.route = target.route
    d.fanout = d.n > 1 and not settings.models[target.model_name].native_n
    d.cost += price(settings, target.model_name, int(pt), int(ct))
    key = route_key(settings.routes, settings.models, req.alias)
    rs = settings.routes[key] if key is not None else None
    reasoning_name = rs.reasoning if rs and rs.pin is None else None
    if reasoning_name and reasoning_name in settings.models:
        rp = settings.models[reasoning_name].price
        # what the always-reasoning baseline would have paid for the same tokens
        # (a lower bound: a reasoning model also writes its thinking)
        d.baseline_cost = (pt * rp.input + ct * rp.output) / 1e6
    else:
        d.baseline_cost = d.cost


def price(settings: Settings, model_name: str, prompt_tokens: int, completion_tokens: int) -> float:
    price = settings.models[model_name].price
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1e6


def charge_discarded(settings: Settings, d: Decision, target: _Target, completion: dict[str, Any]) -> None:
    """An escalated fast answer was paid for even though the client never sees it."""
    usage = completion.get("usage") or {}
    d.cost += price(settings, target.model_name, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
