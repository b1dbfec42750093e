"""Shadow sampling: for `learning.shadow_rate` of live requests, ask the route
*not* taken as well, after the client has its answer, have the configured
judge compare the two answers (both orders, policies.judge), and append the
graded pair to the outcome log. Self-Ref escalations already hold both answers
(the discarded fast one and the reasoning one): they are graded with no extra
upstream call.

The client never waits for any of it and never sees it: the pipeline only
*offers* a finished request (`answered`, then `start` once the response is
sent); jobs run as background tasks, at most `max_concurrent` at once (more are
dropped, not queued), within an hourly token/USD budget, and are cancelled at
shutdown. Shadow and judge calls go to the upstream behind its circuit
breaker, so background failures cannot open a breaker on client traffic. Every
failure is logged and counted (`stats`), never raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from policies.agent_turn import classify, routing_messages
from policies.features import conversation_text, message_text
from policies.judge import JUDGE_VERSION, pairwise_messages, pairwise_scores, parse_verdict
from router.config import RouteSettings, Settings
from router.settings.aliases import route_key
from router.learning.budget import HourlyBudget
from router.learning.outcome_log import OutcomeLog
from router.types import ChatRequest, Decision, DeerStats
from router.upstreams.base import CallContext, Upstream
from router.upstreams import user_field
from router.upstreams.hygiene import clean_body

log = logging.getLogger("thinkgate.learning")

SHADOW_REASONS = ("classifier", "default", "forced")  # a pinned alias, a fallback or a cache hit has no route "not taken"
PENDING_MAX = 1024  # requests offered but whose response is not sent yet (streams in flight)


@dataclass
class Stats:
    sampled: int = 0  # requests chosen for a shadow call
    escalations: int = 0  # escalations offered for grading
    started: int = 0
    recorded: int = 0  # outcome records appended
    failed: int = 0  # a shadow call, the judge or the log failed
    ungraded: int = 0  # the judge answered but gave no verdict in one of the orders
    over_budget: int = 0  # skipped: the hour's budget is spent
    busy: int = 0  # skipped: max_concurrent jobs already running
    shadow_calls: int = 0  # upstream calls made for the route not taken
    judge_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Job:
    req: ChatRequest
    d: Decision
    taken: dict[str, Any]  # the completion the client got
    fast: dict[str, Any] | None = None  # escalations: the discarded fast answer
    embedding: Any = None
    source: str = "shadow"


def _text(completion: dict[str, Any]) -> str:
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message")
    if isinstance(msg, dict):
        return message_text(msg.get("content"))
    return str(choice.get("text") or "")


def _usage(completion: dict[str, Any]) -> tuple[int, int]:
    u = completion.get("usage") or {}
    return int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)


class Learner:
    def __init__(
        self, settings: Settings, upstreams: dict[str, Upstream], outcome_log: OutcomeLog, *,
        rng: random.Random | None = None, budget: HourlyBudget | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.learning
        # behind the breaker: a failing background call must not open it on clients
        self.upstreams = {n: getattr(u, "inner", u) for n, u in upstreams.items()}
        self.log = outcome_log
        self.rng = rng or random.Random()
        self.budget = budget or HourlyBudget(self.cfg.budget_tokens_per_hour, self.cfg.budget_usd_per_hour)
        self.stats = Stats()
        self.enabled = self.cfg.judge is not None
        self._pending: OrderedDict[str, _Job] = OrderedDict()
        self._held: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- offers from the pipeline (all synchronous and cheap) ----------------------

    def hold_fast(self, d: Decision, completion: dict[str, Any]) -> None:
        """Self-Ref is escalating: keep the fast answer to grade against the reasoning one."""
        if self.enabled and self.cfg.grade_escalations:
            self._held[d.id] = completion
            while len(self._held) > PENDING_MAX:
                self._held.popitem(last=False)

    def answered(self, req: ChatRequest, d: Decision, completion: dict[str, Any], embedding: Any = None) -> None:
        """The client's answer is complete (not yet sent): decide whether to learn from it."""
        if not self.enabled:
            return
        fast = self._held.pop(d.id, None)
        if d.escalated:
            if fast is None:
                return
            job = _Job(req, d, completion, fast=fast, embedding=embedding, source="escalation")
            self.stats.escalations += 1
        elif self._shadowable(d) and self.cfg.shadow_rate > 0 and self.rng.random() < self.cfg.shadow_rate:
            job = _Job(req, d, completion, embedding=embedding)
            self.stats.sampled += 1
        else:
            return
        self._pending[d.id] = job
        while len(self._pending) > PENDING_MAX:  # responses that never finished sending
            self._pending.popitem(last=False)

    def start(self, d: Decision) -> None:
        """The response has been sent: run the job offered for it, if any."""
        job = self._pending.pop(d.id, None)
        if job is None:
            return
        if len(self._tasks) >= self.cfg.max_concurrent:
            self.stats.busy += 1
            return
        if not self.budget.allows():
            self.stats.over_budget += 1
            return
        self.stats.started += 1
        task = asyncio.ensure_future(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shadowable(self, d: Decision) -> bool:
        if d.reason not in SHADOW_REASONS or d.route not in ("fast", "reasoning") or d.status != 200:
            return False
        rs = self._route(d)
        return rs is not None and rs.pin is None and self._other(d) is not None

    def _route(self, d: Decision) -> RouteSettings | None:
        # the alias may have been served by a pattern key (router/settings/aliases.py)
        key = route_key(self.settings.routes, self.settings.models, d.alias)
        return self.settings.routes[key] if key is not None else None

    def _other(self, d: Decision) -> str | None:
        rs = self._route(d)
        assert rs is not None
        name = rs.reasoning if d.route == "fast" else rs.fast
        return name if name != d.upstream and name in self.upstreams else None

    # -- the job -------------------------------------------------------------------

    def _charge(self, job: _Job, model: str, completion: dict[str, Any]) -> tuple[int, float]:
        pt, ct = _usage(completion)
        price = self.settings.models[model].price
        usd = (pt * price.input + ct * price.output) / 1e6
        self.budget.spend(pt + ct, usd)
        return pt + ct, usd

    async def _run(self, job: _Job) -> None:
        d = job.d
        try:
            taken_name = str(d.upstream)
            if job.source == "escalation":
                fast_c, strong_c = job.fast or {}, job.taken
                rs = self._route(d)
                fast_name = rs.fast if rs is not None else taken_name
                strong_name = taken_name
            else:
                other = self._other(d)
                assert other is not None
                shadow = await self._shadow_call(job.req, other)
                self._charge(job, other, shadow)
                if d.route == "fast":
                    fast_c, strong_c, fast_name, strong_name = job.taken, shadow, taken_name, other
                else:
                    fast_c, strong_c, fast_name, strong_name = shadow, job.taken, other, taken_name
            scores = await self._judge(job.req, _text(fast_c), _text(strong_c))
            if scores is None:
                self.stats.ungraded += 1
                return
            await self.log.append(self._record(job, scores, fast_c, strong_c, fast_name, strong_name))
            self.stats.recorded += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # learning never surfaces: count it, log it, move on
            self.stats.failed += 1
            log.warning("shadow job for %s failed: %s: %s", d.id, type(e).__name__, str(e)[:200])

    async def _shadow_call(self, req: ChatRequest, name: str) -> dict[str, Any]:
        upstream = self.upstreams[name]
        # the same message hygiene as the pipeline's calls: a strict upstream rejects client extras
        body = clean_body(req.upstream_body(upstream.model), self.settings.models[name].accepts_reasoning_history)
        user_field.apply(body, self.settings.server.upstream_user, self.settings.server.upstream_user_key)
        body.pop("stream", None)  # the client may have streamed; the shadow answer is read whole
        body.pop("stream_options", None)
        ctx = CallContext(controls=req.controls)
        if self.settings.models[name].reasoning:
            ctx.deer = DeerStats()
        self.stats.shadow_calls += 1
        return await upstream.complete(body, ctx)

    async def _judge(self, req: ChatRequest, fast: str, strong: str) -> tuple[float, float] | None:
        name = self.cfg.judge
        assert name is not None
        judge = self.upstreams[name]
        question = conversation_text(req.messages)
        n = self.cfg.answer_chars

        async def ask(a: str, b: str) -> str:
            body = {"model": judge.model, "messages": pairwise_messages(question, a, b, max_chars=n),
                    "max_tokens": self.cfg.judge_max_tokens, "temperature": 0}
            self.stats.judge_calls += 1
            out = await judge.complete(body, CallContext())
            pt, ct = _usage(out)
            price = self.settings.models[name].price
            self.budget.spend(pt + ct, (pt * price.input + ct * price.output) / 1e6)
            return _text(out)

        # one order after the other: a local judge (llama.cpp) answers one request at a time anyway
        first = await ask(fast, strong)
        second = await ask(strong, fast)
        return pairwise_scores(parse_verdict(first), parse_verdict(second))

    def _record(
        self, job: _Job, scores: tuple[float, float], fast_c: dict[str, Any], strong_c: dict[str, Any], fast_name: str, strong_name: str
    ) -> dict[str, Any]:
        d, req = job.d, job.req
        # what the router read (an agent turn: its task and latest turn), so training sees what serving does
        seen = routing_messages(req.messages, classify(req.messages, req.body))
        text = conversation_text(seen)
        rec: dict[str, Any] = {"id": d.id}
        if self.settings.decisions.store_prompt:
            rec["prompt"] = seen if len(seen) > 1 else text
        else:
            # no prompt text kept: an id to join on, and the sentence embedding when one was computed
            rec["prompt_sha256"] = hashlib.sha256(text.encode()).hexdigest()
            if job.embedding is not None:
                rec["embedding"] = [round(float(x), 5) for x in job.embedding]
        rec["fast"], rec["strong"] = scores
        for side, c, name in (("fast", fast_c, fast_name), ("strong", strong_c, strong_name)):
            pt, ct = _usage(c)
            price = self.settings.models[name].price
            rec[f"{side}_tokens"] = pt + ct
            rec[f"{side}_cost"] = (pt * price.input + ct * price.output) / 1e6
        if d.confidence is not None:
            rec["fast_confidence"] = d.confidence
        rec.update({
            "tenant": d.tenant, "alias": d.alias, "route": d.route, "reason": d.reason, "source": job.source,
            "difficulty": d.difficulty, "threshold": d.threshold, "artifact": getattr(d, "artifact", None),
            "fast_model": fast_name, "strong_model": strong_name, "judge": self.cfg.judge, "judge_version": JUDGE_VERSION,
            "ts": round(time.time(), 3),
        })  # fmt: skip
        return rec

    # -- lifecycle -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled, "shadow_rate": self.cfg.shadow_rate, "judge": self.cfg.judge,
            "running": len(self._tasks), "budget": self.budget.state(), "stats": self.stats.as_dict(),
        }  # fmt: skip

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """For tests and benches: until every started job has finished."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def close(self) -> None:
        """Shutdown: cancel the jobs still running (they are best effort), then close the log."""
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._pending.clear()
        self._held.clear()
        await self.log.close()
