"""The agent-loop step (policies.agent_turn), after the rules and before the cache:
classify the turn, name its session and loop, say what the router reads of it,
scope the cache to its session, and under `routing.agent.in_loop: keep` hold a
relay or summary turn on the route and model its loop took; after the reply,
remember what answered (up, never down).

A rule, a forced route or a pinned alias is obeyed on any turn; the turn is
still classified and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from policies import agent_turn as policy
from policies.conversation import conversation_id
from router.cache.agent_loops import LoopStore
from router.config import AgentSettings
from router.types import ChatRequest, Decision, Route

# Session ids a client sends for one conversation: enough to tell two sessions
# apart for the cache. `user` names a person, and a fingerprint cannot tell two
# sessions with the same system prompt and opening message apart.
_SESSION_SOURCES = ("header", "metadata", "prompt_cache_key")


@dataclass
class AgentTurn:
    turn: policy.TurnType
    messages: list[dict[str, Any]]  # what the router (embedder, classifier) reads
    store: LoopStore | None = None
    key: str | None = None
    prior: policy.LoopState | None = None
    held: bool = False  # the loop's state decides this turn's route and model
    skips_cache: bool = False  # a loop turn of a session the client does not name
    tiered: bool = False  # the relay tier took this turn: what answered is not the loop's

    @property
    def agent(self) -> bool:
        return self.turn != "chat"

    def hold(self, d: Decision) -> tuple[Route, str] | None:
        """(route, model) of the loop, recorded in `d`, when the loop holds this turn."""
        if not self.held or self.prior is None:
            return None
        d.route, d.reason = self.prior.route, "loop"
        return self.prior.route, self.prior.model

    async def remember(self, d: Decision) -> None:
        if self.store is None or self.key is None or d.status != 200:
            return
        if d.route not in ("fast", "reasoning") or not d.upstream:
            return
        final = policy.LoopState(d.route, d.upstream)  # type: ignore[arg-type]
        if self.tiered and final.route == "fast":
            if self.prior is None:
                return  # the tier answered; the loop's own route is for its next untiered turn to find
            final = self.prior
        await self.store.put(self.key, policy.remembered(self.prior, final))  # also refreshes the idle TTL


async def begin(store: LoopStore | None, cfg: AgentSettings, req: ChatRequest, d: Decision, *, obeyed: bool) -> AgentTurn:
    """`obeyed`: a pin, a forced route or a rule decides this turn's route."""
    turn = policy.classify(req.messages, req.body)
    d.turn = turn
    at = AgentTurn(turn, policy.routing_messages(req.messages, turn))
    if not at.agent:
        return at
    session, source = conversation_id(req)
    d.session = session
    at.skips_cache = _scope_cache(req, turn, session, source)
    if store is None or cfg.in_loop == "independent" or obeyed:
        return at
    at.store, at.key = store, policy.loop_id(req.caller.tenant, session, req.messages)
    if turn in ("relay", "summary"):  # a task turn opens its loop: routed on its own
        at.prior = await store.get(at.key)
        at.held = at.prior is not None
    return at


def _scope_cache(req: ChatRequest, turn: str, session: str, source: str) -> bool:
    """No cache hit may answer a tool-loop turn from another session: an agent
    turn's entries are keyed by its session (the semantic lookup is skipped by
    the pipeline); a relay or summary turn whose session the client does not
    name skips the cache (True)."""
    cc = req.controls.cache
    if turn != "task" and source not in _SESSION_SOURCES:
        req.controls = replace(req.controls, cache=replace(cc, no_cache=True, no_store=True))
        return True
    req.controls = replace(req.controls, cache=replace(cc, scope=session))
    return False


def relay_tier(cfg: AgentSettings, at: AgentTurn, req: ChatRequest, d: Decision, route: Route) -> Route:
    """routing.agent.relay: a relay turn that would reason goes fast (`fast`) or
    thinks on a smaller budget (`budget`)."""
    if not policy.relay_applies(cfg.relay, at.turn, route):
        return route
    at.tiered = True
    if cfg.relay == "fast":
        d.route, d.reason = "fast", "relay"
        return policy.relay_route(cfg.relay, at.turn, route)
    deer = req.controls.deer
    tokens = cfg.relay_thinking_tokens if deer.thinking_tokens is None else min(deer.thinking_tokens, cfg.relay_thinking_tokens)
    threshold = deer.threshold if deer.threshold is not None else cfg.relay_deer_threshold
    req.controls = replace(req.controls, deer=replace(deer, thinking_tokens=tokens, threshold=threshold))
    return route
