"""router.pipeline.escalation: the Self-Ref step as the pipeline runs it."""

import math

from router.config import SelfRefSettings
from router.pipeline.escalation import escalate, logprob_args, strip_logprobs
from router.types import ChatRequest, Controls, Decision


def _request(**body):
    return ChatRequest(endpoint="chat", alias="auto", body=body, messages=[{"role": "user", "content": "2+2?"}])


def _completion(tokens):
    """tokens: (text, prob, [(alternative, prob), ...])"""
    return {
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "".join(t for t, _, _ in tokens)},
            "logprobs": {"content": [
                {"token": t, "logprob": math.log(p), "top_logprobs": [{"token": a, "logprob": math.log(q)} for a, q in alts]}
                for t, p, alts in tokens
            ]},
        }]
    }


def test_confident_tag_keeps_the_answer_and_strips_the_tag():
    cfg = SelfRefSettings(mode="confidence_token", threshold=0.5)
    c = _completion([("4", 0.9, []), (" <CN>", 0.8, [(" <CN>", 0.8), (" <UN>", 0.1)])])
    d = Decision(tenant="t", alias="auto", endpoint="chat", stream=False)
    assert escalate(cfg, _request(), d, c) is False
    assert c["choices"][0]["message"]["content"] == "4"  # the client never sees the tag
    assert d.confidence is not None and d.confidence > 0.5 and not d.escalated


def test_unsure_tag_escalates_and_records_why():
    cfg = SelfRefSettings(mode="confidence_token", threshold=0.5)
    c = _completion([("5", 0.9, []), (" <UN>", 0.8, [(" <UN>", 0.8), (" <CN>", 0.1)])])
    d = Decision(tenant="t", alias="auto", endpoint="chat", stream=False)
    assert escalate(cfg, _request(), d, c) is True
    assert (d.escalated, d.route, d.reason, d.selfref_mode) == (True, "reasoning", "escalated", "confidence_token")


def test_per_request_threshold_overrides_the_config():
    cfg = SelfRefSettings(mode="mean_logprob", threshold=0.0)
    req = _request()
    req.controls = Controls(selfref_threshold=0.99)
    c = _completion([("4", 0.9, [])])
    d = Decision(tenant="t", alias="auto", endpoint="chat", stream=False)
    assert escalate(cfg, req, d, c) is True and d.selfref_threshold == 0.99


def test_logprobs_the_client_did_not_ask_for_are_removed_and_asked_ones_trimmed():
    cfg = SelfRefSettings(top_logprobs=5)
    assert logprob_args(cfg, _request(top_logprobs=8)) == {"logprobs": True, "top_logprobs": 8}
    c = _completion([("4", 0.9, [("4", 0.9), ("5", 0.05)])])
    strip_logprobs(_request(), c)
    assert c["choices"][0]["logprobs"] is None
    c = _completion([("4", 0.9, [("4", 0.9), ("5", 0.05)])])
    strip_logprobs(_request(logprobs=True, top_logprobs=1), c)
    assert len(c["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 1
