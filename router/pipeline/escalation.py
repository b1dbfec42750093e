"""Self-Ref on the fast route, as the pipeline runs it: ask the fast model for
logprobs, judge its answer with `policies.selfref`, and either escalate to the
reasoning route or clean the answer (logprobs the client did not ask for, a
confidence token) before the client sees it.
"""

from __future__ import annotations

from typing import Any

from router.config import SelfRefSettings
from router.types import ChatRequest, Decision


def logprob_args(cfg: SelfRefSettings, req: ChatRequest) -> dict[str, Any]:
    k = cfg.top_logprobs
    if req.endpoint == "chat":
        return {"logprobs": True, "top_logprobs": max(k, int(req.body.get("top_logprobs") or 0))}
    return {"logprobs": max(k, int(req.body.get("logprobs") or 0), 1)}


def escalate(cfg: SelfRefSettings, req: ChatRequest, d: Decision, completion: dict[str, Any]) -> bool:
    from policies import selfref
    from policies.confidence_tags import strip_confidence_token

    # n > 1: the request escalates when its least confident choice would (the client
    # gets all n from one route); a choice without logprobs counts as missing
    choices = completion.get("choices") or [{}]
    confs = [selfref.confidence(c, cfg.mode, quantile=cfg.quantile) for c in choices]
    known = [c for c in confs if c is not None]
    conf = min(known) if len(known) == len(confs) else None
    threshold = req.controls.selfref_threshold if req.controls.selfref_threshold is not None else cfg.threshold
    d.confidence, d.selfref_threshold, d.selfref_mode = conf, threshold, cfg.mode
    escalate = selfref.should_escalate(conf, threshold, cfg.on_missing_logprobs)
    if cfg.mode == "confidence_token" and not escalate:
        for choice in choices:
            _rewrite_text(choice, strip_confidence_token)
    if escalate:
        d.escalated, d.route, d.reason = True, "reasoning", "escalated"
    return escalate


def strip_logprobs(req: ChatRequest, completion: dict[str, Any]) -> None:
    client_wants = req.body.get("logprobs")
    for c in completion.get("choices") or []:
        if not client_wants:
            c["logprobs"] = None
        elif req.endpoint == "chat" and c.get("logprobs"):
            k = int(req.body.get("top_logprobs") or 0)
            for tok in c["logprobs"].get("content") or []:
                tok["top_logprobs"] = (tok.get("top_logprobs") or [])[:k]


def strip_chunk_logprobs(req: ChatRequest, chunks: list[dict[str, Any]]) -> None:
    if req.body.get("logprobs"):
        return
    for ch in chunks:
        for c in ch.get("choices") or []:
            if "logprobs" in c:
                c["logprobs"] = None


def _rewrite_text(choice: dict[str, Any], fn: Any) -> None:
    if "message" in choice and isinstance((choice.get("message") or {}).get("content"), str):
        choice["message"]["content"] = fn(choice["message"]["content"])
    elif isinstance(choice.get("text"), str):
        choice["text"] = fn(choice["text"])
