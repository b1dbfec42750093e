"""Self-Ref: how sure is the fast model of the answer it just gave?

Pure functions over one OpenAI choice's logprobs; no I/O. The pipeline asks the
fast model for logprobs, calls `confidence(choice, mode)`, and hands the result
to `should_escalate`; below the threshold the request is re-answered by the
reasoning route.

Modes (all return a probability-like score in [0, 1], higher = more sure):
- `confidence_token`: for models fine-tuned the Self-REF way (Chuang et al.),
  which end their answer with `<CN>` or `<UN>`. Confidence is
  P(<CN>) / (P(<CN>) + P(<UN>)) read from `top_logprobs` where the two tags
  diverge. Tags may be split over several tokens ("<", "CN", ">") or glued to
  neighbouring text; when the other tag is not among the listed alternatives
  its probability is bounded by what the list leaves over (conservative).
- `mean_logprob`: exp(mean token logprob), the per-token geometric mean.
- `min_prob`: the least likely token's probability.
- `quantile_prob`: a low quantile (default 10 %) of token probabilities;
  less brittle than the minimum on long answers.
- `answer_span`: the joint probability of the tokens of the final answer (the
  `\\boxed{}` content, what follows "answer is"/"####", else the last number,
  else the last line), as located by `policies.final_answer`.

`None` means "no evidence": the upstream sent no logprobs, or (in
`confidence_token` mode) the model emitted no tag. The caller applies the
configured fallback (`trust` or `escalate`) via `should_escalate`.

The tags themselves, and stripping them from what the client sees, live in
`policies.confidence_tags`; scoring a stream starts with `policies.stream_choice`.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from policies.confidence_tags import TAG
from policies.final_answer import answer_span

Mode = Literal["mean_logprob", "min_prob", "quantile_prob", "answer_span", "confidence_token"]
MODES: tuple[str, ...] = ("mean_logprob", "min_prob", "quantile_prob", "answer_span", "confidence_token")

_SPECIAL = re.compile(r"^(<\|[^|]*\|>|</?s>|<eos>|<bos>|<pad>)$")

# (text, logprob or None, ((alt_text, alt_logprob), ...))
Token = tuple[str, "float | None", tuple[tuple[str, float], ...]]


# ---------------------------------------------------------------- reading logprobs


def tokens(choice: Mapping[str, Any], with_top: bool = True) -> list[Token] | None:
    """Normalise a chat or completions choice's logprobs; None when absent.

    `with_top=False` skips the alternatives (only the confidence-token mode reads them).
    """
    lp = choice.get("logprobs") if isinstance(choice, Mapping) else None
    if not isinstance(lp, Mapping):
        return None
    out: list[Token] = []
    content = lp.get("content")
    if isinstance(content, list):  # chat: [{token, logprob, top_logprobs: [{token, logprob}]}]
        for item in content:
            if not isinstance(item, Mapping):
                continue
            alts = (item.get("top_logprobs") or ()) if with_top else ()
            top = tuple(
                (str(a.get("token", "")), float(a["logprob"]))
                for a in alts
                if isinstance(a, Mapping) and _is_logprob(a.get("logprob"))
            )
            out.append((str(item.get("token", "")), _lp(item.get("logprob")), top))
    elif isinstance(lp.get("tokens"), list):  # completions: parallel lists, top_logprobs as dicts
        toks = lp["tokens"]
        lps = lp.get("token_logprobs") or [None] * len(toks)
        tops = lp.get("top_logprobs") or [None] * len(toks)
        for tok, lpv, alts in zip(toks, lps, tops):
            top = ()
            if with_top and isinstance(alts, Mapping):
                top = tuple((str(k), float(v)) for k, v in alts.items() if _is_logprob(v))
            out.append((str(tok), _lp(lpv), top))
    else:
        return None
    if not any(t[1] is not None for t in out):
        return None
    return out


def _is_logprob(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) and v <= 0.0 + 1e-6


def _lp(v: Any) -> float | None:
    return float(min(v, 0.0)) if _is_logprob(v) else None


def _prob(lp: float) -> float:
    return math.exp(lp) if lp > -745 else 0.0


# ---------------------------------------------------------------- token offsets


def _offsets(toks: Sequence[Token]) -> tuple[str, list[int]]:
    offs, pos = [], 0
    for t in toks:
        offs.append(pos)
        pos += len(t[0])
    return "".join(t[0] for t in toks), offs


def _tag_tokens(text: str, offs: Sequence[int], toks: Sequence[Token]) -> set[int]:
    """Indices of tokens whose visible characters all lie inside a confidence tag."""
    out: set[int] = set()
    if "<" not in text:
        return out
    spans = [m.span() for m in TAG.finditer(text)]
    for a, b in spans:
        i = max(bisect_right(offs, a) - 1, 0)
        while i < len(toks) and offs[i] < b:
            tok, s = toks[i][0], offs[i]
            if s + len(tok) > a:
                outside = "".join(ch for j, ch in enumerate(tok) if not any(x <= s + j < y for x, y in spans))
                if not outside.strip():
                    out.add(i)
            i += 1
    return out


# ---------------------------------------------------------------- scorers


def confidence(choice: Mapping[str, Any], mode: str, **opts: Any) -> float | None:
    """Confidence in [0, 1] of the fast model in its answer; None without evidence.

    opts: `quantile` (quantile_prob, default 0.1), `span_reduce` (answer_span:
    "joint" | "mean" | "min", default "joint"), `skip_special` (default True:
    ignore tokens such as `<|im_end|>`).
    """
    if mode not in MODES:
        raise ValueError(f"unknown self-ref mode {mode!r} (have: {', '.join(MODES)})")
    toks = tokens(choice, with_top=False)
    if toks is None:
        return None
    if mode == "confidence_token":  # alternatives are read at one position only
        return _tag_confidence(toks, lambda i: _top_at(choice, i))
    return score_tokens(toks, mode, **opts)


def _top_at(choice: Mapping[str, Any], i: int) -> tuple[tuple[str, float], ...]:
    lp = choice["logprobs"]
    if isinstance(lp.get("content"), list):
        alts = (lp["content"][i] or {}).get("top_logprobs") or ()
        return tuple(
            (str(a.get("token", "")), float(a["logprob"])) for a in alts if isinstance(a, Mapping) and _is_logprob(a.get("logprob"))
        )
    tops = lp.get("top_logprobs") or ()
    alts = tops[i] if i < len(tops) else None
    if not isinstance(alts, Mapping):
        return ()
    return tuple((str(k), float(v)) for k, v in alts.items() if _is_logprob(v))


def score_tokens(toks: Sequence[Token], mode: str, **opts: Any) -> float | None:
    """`confidence` over already-normalised tokens (see `tokens`)."""
    if mode == "confidence_token":
        return _tag_confidence(toks, lambda i: toks[i][2])
    text, offs = _offsets(toks)
    skip = _tag_tokens(text, offs, toks)
    skip_special = opts.get("skip_special", True)
    idx = [
        i
        for i, t in enumerate(toks)
        if i not in skip and t[1] is not None and not (skip_special and _SPECIAL.match(t[0]))
    ]
    if mode == "answer_span":
        span = answer_span(text)
        if span is None:
            return None
        a, b = span
        idx = [i for i in idx if offs[i] < b and a < offs[i] + len(toks[i][0])]
    lps = [toks[i][1] for i in idx]
    if not lps:
        return None
    if mode == "mean_logprob":
        return _prob(math.fsum(lps) / len(lps))  # type: ignore[arg-type]
    if mode == "min_prob":
        return _prob(min(lps))  # type: ignore[type-var]
    if mode == "quantile_prob":
        return quantile([_prob(x) for x in lps], float(opts.get("quantile", 0.1)))  # type: ignore[arg-type]
    reduce = opts.get("span_reduce", "joint")
    if reduce == "joint":
        return _prob(math.fsum(lps))  # type: ignore[arg-type]
    if reduce == "mean":
        return _prob(math.fsum(lps) / len(lps))  # type: ignore[arg-type]
    if reduce == "min":
        return _prob(min(lps))  # type: ignore[type-var]
    raise ValueError(f"unknown span_reduce {reduce!r} (have: joint, mean, min)")


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method), no numpy needed."""
    if not values:
        raise ValueError("quantile of an empty sequence")
    xs = sorted(values)
    pos = min(max(q, 0.0), 1.0) * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _tag_confidence(toks: Sequence[Token], top_at: Callable[[int], tuple[tuple[str, float], ...]]) -> float | None:
    text, offs = _offsets(toks)
    last = None
    for m in TAG.finditer(text):
        last = m
    if last is None:
        return None
    letter = last.start() + 1  # where <CN> and <UN> diverge
    i = _token_at(offs, toks, letter)
    tok, lp, _ = toks[i]
    top = top_at(i)
    pre = text[offs[i] : letter]  # what this token commits before the C/U letter
    mass = {"C": 0.0, "U": 0.0}
    seen: set[str] = set()
    for cand, cand_lp in top:
        if cand in seen or not cand.startswith(pre):
            continue
        seen.add(cand)
        rest = cand[len(pre) :]
        for key, tail in (("C", "CN>"), ("U", "UN>")):
            if rest and (tail.startswith(rest) or rest.startswith(tail)):
                mass[key] += _prob(cand_lp)
    sampled = last.group(1)[0]
    other = "U" if sampled == "C" else "C"
    if mass[sampled] == 0.0:
        if lp is None:
            return None
        mass[sampled] = _prob(lp)  # some servers list alternatives without the sampled token
    if mass[other] == 0.0:
        # Not listed: it is at most the least listed alternative, and at most the
        # mass the list leaves over (1 - p(sampled) when there is no list at all).
        listed = {c: _prob(x) for c, x in top}
        unlisted = 1.0 - math.fsum(listed.values())
        if tok not in listed and lp is not None:
            unlisted -= _prob(lp)
        mass[other] = max(0.0, min([unlisted, *listed.values()]))
    total = mass["C"] + mass["U"]
    return mass["C"] / total if total > 0 else None


def _token_at(offs: Sequence[int], toks: Sequence[Token], pos: int) -> int:
    for i in range(len(toks) - 1, -1, -1):
        if offs[i] <= pos and toks[i][0]:
            return i
    return 0


# ---------------------------------------------------------------- decisions


def should_escalate(conf: float | None, threshold: float, on_missing: str = "trust") -> bool:
    """Escalate when the confidence is below the threshold.

    A threshold above 1 always escalates and 0 (or less) never does, whatever the
    evidence; missing confidence follows `on_missing` ("trust" | "escalate").
    """
    if threshold > 1.0:
        return True
    if threshold <= 0.0:
        return False
    if conf is None:
        if on_missing not in ("trust", "escalate"):
            raise ValueError(f"on_missing must be 'trust' or 'escalate', not {on_missing!r}")
        return on_missing == "escalate"
    return conf < threshold
