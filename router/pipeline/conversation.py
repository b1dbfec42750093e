"""The conversation step, right after the classifier: look up the route this
conversation took before, let `policies.conversation` bend this turn's, and
remember the route the turn finally took (after any escalation or fallback).
Only decisions the gateway made itself (classifier, default) are bent; a rule,
a forced route or a pinned alias is obeyed and, except a pin, remembered.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies import conversation as policy
from router.cache.conversations import RouteStore
from router.config import RoutingSettings
from router.types import ChatRequest, Decision, Route


@dataclass
class Turn:
    store: RouteStore
    cid: str
    prior: Route | None
    mode: policy.Mode

    async def remember(self, d: Decision) -> None:
        if d.route in ("fast", "reasoning") and d.status == 200:
            route = policy.remembered(self.mode, self.prior, d.route)  # type: ignore[arg-type]
            await self.store.put(self.cid, route)  # also refreshes the idle TTL


async def begin(
    store: RouteStore | None, cfg: RoutingSettings, req: ChatRequest, d: Decision, route: Route, pinned: str | None
) -> tuple[Route, Turn | None]:
    if store is None or cfg.conversation == "independent" or pinned is not None:
        return route, None
    cid, _source = policy.conversation_id(req)
    d.conversation = cid
    prior = await store.get(cid)
    if d.reason in ("classifier", "default"):
        new, sticky = policy.decide(cfg.conversation, prior, route, d.difficulty, d.threshold, cfg.margin)
        if sticky:  # the earlier route held against this turn's own decision
            d.route, d.reason, d.sticky = new, "sticky", True
        route = new
    return route, Turn(store, cid, prior, cfg.conversation)
