"""An independent model of the reference DEER decision rule (iie-ycx/DEER), for
the differential test. Written from the paper and the reference's documented
behaviour, not from thinkgate's code and not copied from the reference:

- Thinking is generated in chunks that stop at the transition word ("Wait")
  while fewer than `max_probes` probes have been made, and at `</think>`.
  Chunks are capped by the thinking budget `int(max_tokens * ratio)` minus the
  tokens the thinking so far spans (re-tokenised: a token the kept text cuts
  through counts as one).
- A chunk that stopped at "Wait" (or that used up the budget) is followed by a
  probe: the thinking so far + "\\n**Final Answer**\\n\\boxed", at most 20
  tokens, stopping at the family's strings (R1: where a boxed answer ends;
  Qwen3: `</think>`), with the logprobs of the tokens it wrote.
- Confidence skips the probe's first token. R1: arithmetic mean of the token
  probabilities. Qwen3: geometric mean (each probability floored at 1e-10),
  and 0 unless the probe's last token is `</think>`.
- Exit when confidence > threshold (strict), or when the thinking so far
  spans >= budget - 50 tokens ("forced exit near the limit"; the margin is a
  parameter here). Otherwise "Wait" is put back and thinking goes on.
- The kept thinking on exit is everything before the transition that
  triggered the probe; at `</think>` or the budget, everything generated.

Tokens are strings; the model under test is a fixed token script (the same
continuation whatever the chunking), which is what a greedy model on a
prefix-cached server is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TRANSITION = "Wait"
CLOSE = "</think>"
R1_ENDS = (" }", "}\n", "}\n\n", "}.", "}.\n", "}\\", "}}", ")}", ")}.", ")}\n")
PROBE_TOKENS = 20


@dataclass
class RefProbe:
    step: int  # 1-based
    confidence: float
    exit: bool
    at_budget: bool  # the probe after a chunk that used up the budget (not at a transition)


@dataclass
class RefResult:
    kept: str
    reason: str  # high_prob | too_long | regular_end
    exit_step: int | None  # the probe (at a transition) that ended thinking
    probes: list[RefProbe] = field(default_factory=list)


def probe_span(tokens: list[str], family: str) -> int:
    """How many tokens the probe writes before its stop string fires (or 20)."""
    text = ""
    for i, tok in enumerate(tokens[:PROBE_TOKENS]):
        text += tok
        if family == "qwen3":
            if CLOSE in text:
                return i + 1
        elif any(end in text for end in R1_ENDS):
            return i + 1
    return min(len(tokens), PROBE_TOKENS)


def probe_confidence(tokens: list[str], logprobs: list[float], family: str) -> float:
    n = probe_span(tokens, family)
    probs = [math.exp(lp) for lp in logprobs[1:n]]
    if not probs:
        raise ZeroDivisionError("the reference cannot score a one-token probe")
    if family == "qwen3":
        geo = math.exp(math.fsum(math.log(max(p, 1e-10)) for p in probs) / len(probs))
        return geo if tokens[n - 1] == CLOSE else 0.0
    return math.fsum(probs) / len(probs)


def run_reference(
    thinking: list[str],
    probes: list[tuple[list[str], list[float]]],
    *,
    family: str,
    max_tokens: int,
    ratio: float,
    threshold: float,
    max_probes: int,
    margin: int,
) -> RefResult:
    budget = int(max_tokens * ratio)
    kept = ""
    spans = 0  # tokens the kept thinking spans
    i = 0  # next token of the script
    steps = 0
    out: list[RefProbe] = []

    def probe(at_budget: bool) -> bool:
        nonlocal steps
        steps += 1
        tokens, lps = probes[steps - 1] if steps <= len(probes) else (["{", "x"], [0.0, -5.0])
        conf = probe_confidence(tokens, lps, family)
        leave = conf > threshold or spans >= budget - margin
        out.append(RefProbe(steps, conf, leave, at_budget))
        return leave

    while True:
        room = budget - spans
        if room <= 0:
            return RefResult(kept, "too_long", None, out)
        watching = steps < max_probes
        chunk = ""
        n = 0
        stop = None
        while n < room and i < len(thinking):
            tok = thinking[i]
            i += 1
            n += 1
            if CLOSE in tok:
                chunk += tok[: tok.index(CLOSE)]
                stop = "close"
                break
            if watching and TRANSITION in chunk + tok:
                cut = (chunk + tok).index(TRANSITION)
                chunk = (chunk + tok)[:cut]
                stop = "transition"
                break
            chunk += tok
        if stop == "close" or (stop is None and i >= len(thinking)):
            return RefResult(kept + chunk, "regular_end", None, out)
        if stop == "transition":
            # the kept text spans the tokens before the transition's token, plus that token
            # when part of it ("\n\n" of "\n\nWait") stays
            partial = not thinking[i - 1].startswith(TRANSITION)
            kept += chunk
            spans += n - 1 + (1 if partial else 0)
            if probe(at_budget=False):
                return RefResult(kept, "too_long" if out[-1].confidence <= threshold else "high_prob", steps, out)
            kept += TRANSITION
            spans += 0 if partial else 1
            continue
        # the chunk used up the budget: the reference probes once more, then leaves whatever it says
        kept += chunk
        spans += n
        probe(at_budget=True)
        return RefResult(kept, "too_long", None, out)
