"""`thinkgate replay`'s report: the result of router/decisions/replay.py's `replay` as the
text an operator reads (the logged and replayed columns, what could not be re-decided and
why, how a cost was estimated), and the threshold sweep's table. MIN_PROMPT_JOIN lives here
so that both modules read it without an import cycle (replay.py imports this one)."""

from __future__ import annotations

from typing import Any

MIN_PROMPT_JOIN = 16  # shorter logged prompts are too ambiguous to join on (replay.py joins on it)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _usd(x: float) -> str:
    return f"${x:.4f}" if abs(x) < 100 else f"${x:,.2f}"


def _q(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_report(res: dict[str, Any], source: str) -> str:
    lg, rp = res["logged"], res["replay"]
    kept = ", ".join(f"{k} {v}" for k, v in sorted(res["kept_as_logged"].items())) or "none"
    th = "logged" if res["threshold"] is None else f"{res['threshold']:.3f}"
    sr = "logged" if res["selfref_threshold"] is None else f"{res['selfref_threshold']:.3f}"
    lines = [
        f"thinkgate replay: {res['records']:,} decisions from {source}",
        f"  re-scored {res['rescored']:,} ({res['changed']:,} changed); kept as logged: {kept}",
    ]
    if res["unknown_confidence"]:
        lines.append(f"  {res['unknown_confidence']:,} moved to fast without a logged Self-Ref confidence (counted as not escalated)")
    if res["difficulty_rescored"]:
        lines.append(f"  difficulty re-scored from stored embeddings for {res['difficulty_rescored']:,}")
    if res.get("difficulty_not_rescorable"):
        lines.append(
            f"  {res['difficulty_not_rescorable']:,} kept their logged difficulty: the artifact reads layer means, "
            "the log stores sentence embeddings"
        )
    lines += [
        "",
        f"  {'':24}{'logged':>14}{'replay':>14}",
        f"  {'threshold':24}{'':>14}{th:>14}",
        f"  {'self-ref threshold':24}{'':>14}{sr:>14}",
    ]
    for k in ("fast", "reasoning", "cache"):
        lines.append(f"  {k + ' share':24}{_pct(lg['share'][k]):>14}{_pct(rp['share'][k]):>14}")
    lines += [
        f"  {'escalation rate':24}{_pct(lg['escalation_rate']):>14}{_pct(rp['escalation_rate']):>14}",
        f"  {'est. cost':24}{_usd(lg['cost']):>14}{_usd(rp['cost']):>14}",
        f"  {'always-reasoning cost':24}{_usd(lg['baseline_cost']):>14}{_usd(rp['baseline_cost']):>14}",
        f"  {'saved vs baseline':24}{_pct(lg['saved_pct']):>14}{_pct(rp['saved_pct']):>14}",
    ]
    if res["outcomes"] is not None:
        o = res["outcomes"]
        lines.append(f"  {'quality (n=' + str(o['matched']) + ')':24}{_q(lg['quality']):>14}{_q(rp['quality']):>14}")
        if o["matched"]:
            lines.append(f"  always fast {_q(o['always_fast'])}, always reasoning {_q(o['always_strong'])} on the matched requests")
        else:
            lines.append("  " + no_join_reason(res))
    if res.get("artifact") and not res["difficulty_rescored"]:
        lines.append(
            f"  --artifact re-scored 0 of {res['records']:,} records: "
            + ("none has a stored embedding (set decisions.store_embedding: true and collect new traffic)"
               if not res.get("with_embedding") else "their stored embeddings are narrower than the artifact reads")
            + "; the logged difficulty was used"
        )
    if res.get("fast_cost_from") == "configured prices":
        lines.append("  (a fast cost the log did not observe: the request's tokens at the fast model's configured price)")
    else:
        lines.append(
            f"  (fast cost estimated as {res['fast_cost_ratio']:.3f} x the always-reasoning cost where it was not observed, "
            f"from {res.get('fast_cost_from', 'the log')})"
        )
    return "\n".join(lines)


def no_join_reason(res: dict[str, Any]) -> str:
    """Why no decision joined an outcome, in words an operator can act on."""
    why = "no decision joined an outcome: decision ids (req-...) are not outcome ids"
    if not res.get("with_prompt"):
        return why + ", and no record stores its prompt (set decisions.store_prompt: true, then replay new traffic)"
    return why + f", and none of the {res['with_prompt']:,} stored prompts begins an outcome's prompt (at least {MIN_PROMPT_JOIN} characters, unambiguous)"


def format_sweep(rows: list[dict[str, Any]]) -> str:
    out = [f"  {'threshold':>10}{'reasoning':>11}{'escalated':>11}{'est. cost':>13}{'saved':>9}{'quality':>9}"]
    for row in rows:
        rp = row["replay"]
        out.append(
            f"  {row['threshold']:>10.2f}{_pct(rp['share']['reasoning']):>11}{_pct(rp['escalation_rate']):>11}"
            f"{_usd(rp['cost']):>13}{_pct(rp['saved_pct']):>9}{_q(rp['quality']):>9}"
        )
    return "\n".join(out)
