"""What deciding Self-Ref on a prefix costs (selfref.stream: prefix:K).

The streaming gateway judges the fast answer on its first K tokens and then
streams the rest; this scores every recorded answer on its first K tokens too
and compares the AUROC with the whole answer's. Only the modes that read token
probabilities can judge a prefix (answer_span needs the final answer,
confidence_token the tag at the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from calibrate.selfref_analysis import auroc, auroc_ci
from calibrate.selfref_data import Record
from policies import selfref

PREFIX_MODES: tuple[str, ...] = ("mean_logprob", "min_prob", "quantile_prob")


def truncate(choice: dict[str, Any], k: int) -> dict[str, Any]:
    """The choice as the gateway holds it after K tokens (chat or completions logprobs)."""
    lp = choice.get("logprobs") or {}
    out = dict(choice)
    if isinstance(lp.get("content"), list):
        toks = lp["content"][:k]
        out["logprobs"] = {**lp, "content": toks}
        out["message"] = {**(choice.get("message") or {}), "content": "".join(t.get("token", "") for t in toks)}
    elif isinstance(lp.get("tokens"), list):
        out["logprobs"] = {key: (v[:k] if isinstance(v, list) else v) for key, v in lp.items()}
        out["text"] = "".join(lp["tokens"][:k])
    return out


def key(mode: str, k: int) -> str:
    return f"{mode}@{k}"


def prefix_scores(choice: dict[str, Any], ks: Sequence[int], quantile: float = 0.1) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k in ks:
        head = truncate(choice, k)
        for mode in PREFIX_MODES:
            out[key(mode, k)] = selfref.confidence(head, mode, quantile=quantile)
    return out


def compare(records: Sequence[Record], ks: Sequence[int]) -> dict[str, Any]:
    done = [r for r in records if r.error is None]
    labels = [r.correct for r in done]
    lengths = sorted(r.completion_tokens for r in done)
    rows = []
    for mode in PREFIX_MODES:
        whole = auroc([r.conf.get(mode) for r in done], labels)
        row: dict[str, Any] = {"mode": mode, "whole": whole, "whole_ci95": auroc_ci([r.conf.get(mode) for r in done], labels)}
        for k in ks:
            a = auroc([r.conf.get(key(mode, k)) for r in done], labels)
            row[str(k)] = a
            row[f"{k}_ci95"] = auroc_ci([r.conf.get(key(mode, k)) for r in done], labels)
            # answers no longer than K are judged whole: the prefix costs them nothing
            row[f"{k}_whole_share"] = sum(n <= k for n in lengths) / len(lengths) if lengths else None
        rows.append(row)
    return {"ks": list(ks), "n": len(done), "median_tokens": lengths[len(lengths) // 2] if lengths else None, "rows": rows}


def format_prefix(result: dict[str, Any]) -> str:
    ks = result["ks"]
    head = f"{'mode':<15}{'whole':>8}" + "".join(f"{'K=' + str(k):>16}" for k in ks)
    lines = [
        f"Self-Ref on a prefix: AUROC on the first K tokens vs the whole answer "
        f"({result['n']} answers, median {result['median_tokens']} tokens)",
        head,
    ]
    for row in result["rows"]:
        cells = "".join(
            f"{_n(row[str(k)]):>8} ({_d(row[str(k)], row['whole']):>5})" for k in ks
        )
        lines.append(f"{row['mode']:<15}{_n(row['whole']):>8}{cells}")
    share = ", ".join(f"K={k}: {_p(result['rows'][0][f'{k}_whole_share'])}" for k in ks)
    lines.append(f"answers no longer than K (judged whole): {share}")
    return "\n".join(lines)


def _n(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _d(x: float | None, whole: float | None) -> str:
    return "-" if x is None or whole is None else f"{x - whole:+.3f}"


def _p(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"
