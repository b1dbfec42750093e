"""A human-readable summary of a classifier artifact (markdown, or HTML)."""

from __future__ import annotations

import math

import html as _html
from pathlib import Path
from typing import Any


def render(meta: dict[str, Any], where: str, plots: str | None = None, html: bool = False) -> str:
    md = markdown(meta, where, plots)
    if not html:
        return md
    return _to_html(md)


def markdown(meta: dict[str, Any], where: str, plots: str | None = None) -> str:
    data = meta.get("training_data", {})
    hp = meta.get("hyperparameters", {})
    rule = meta.get("threshold_rule", {})
    out = [
        f"# Difficulty router: `{where}`",
        "",
        f"- procedure: `{meta.get('procedure')}`; embedder `{meta.get('embedder')}` ({meta.get('embedder_variant')}); "
        f"features `{meta.get('feature_version')}`" + (f" + lexical `{meta['lexical_version']}`" if meta.get("lexical_version") else ""),
        f"- trained {meta.get('created')} on {data.get('n')} prompts from {', '.join(data.get('files', []))} "
        f"(sha256 `{str(data.get('sha256', ''))[:16]}…`)",
        f"- chosen by inner CV: embedding width = {hp.get('embedding_dim', meta.get('embedding_dim'))} "
        "(384: sentence embedding; 2688: + layer means), "
        f"alpha = {hp.get('alpha')}, feature weight = {hp.get('feature_weight')}"
        + (f", lexical alpha = {hp.get('lexical_alpha')}, lexical weight = {hp.get('lexical_weight')}" if "lexical_weight" in hp else ""),
        f"- P = {meta.get('probability')}",
        *_candidate_lines(meta),
        "",
        "## Threshold",
        "",
        f"**{meta.get('threshold', 0):.4f}** — rule `{rule.get('rule')}` (target {rule.get('target')}): "
        f"{100 * rule.get('share', 0):.1f}% of prompts go to the reasoning route, expected quality "
        f"{rule.get('expected_quality', float('nan')):.3f}. Change it with `thinkgate calibrate threshold "
        "--target-share S | --target-quality Q | --target-pgr X | --max-cost C`, or per route (`routes.<alias>.threshold`).",
        "",
    ]
    m = meta.get("metrics")
    if m:
        out += [
            f"## Out-of-fold evaluation ({m.get('cv')}-fold CV of the whole procedure)",
            "",
            "| metric | value |",
            "|---|---|",
            f"| prompts | {m['n']}" + (f" ({m['distinct_prompts']} distinct; repeats kept in one fold)" if m.get("distinct_prompts", m["n"]) < m["n"] else "") + " |",
            f"| quality fast / strong / oracle | {m['q_fast']:.3f} / {m['q_strong']:.3f} / {m.get('q_oracle', float('nan')):.3f} |",
            f"| APGR (random ≈ 0.5) | {m['apgr']:.3f} ± {m.get('apgr_std', 0):.3f} |",
            "| CPT 50 / 80 / 95 % | " + " / ".join(f"{100 * m['cpt'][k]:.1f}%" for k in ("50", "80", "95")) + " |",
            f"| quality at 50 % strong | {m['quality_at_50']:.3f} |",
            f"| AUROC (strong better) | {m['auroc']:.3f} ± {m.get('auroc_std', 0):.3f} |",
            f"| ECE | {m['ece']:.3f} |",
            *([f"| baseline APGR, same folds | {m['baseline']['apgr']:.3f} |"] if m.get("baseline") else []),
            *(f"| {k} | {v} |" for k, v in _ci_rows(m.get("ci"))),
            "",
        ]
        if m.get("folds"):
            out += ["| fold | n | APGR | CPT(80%) | AUROC | candidate | width | alpha | feature weight | lexical alpha | lexical weight |",
                    "|---|---|---|---|---|---|---|---|---|---|---|"]
            out += [
                f"| {i + 1} | {f['n']} | {f['apgr']:.3f} | {100 * f['cpt80']:.1f}% | {f['auroc']:.3f} | {f.get('candidate', '–')} | {f.get('embedding_dim', '–')} "
                f"| {f['alpha']:g} | {f['feature_weight']:g} "
                f"| {f.get('lexical_alpha') if f.get('lexical_alpha') is not None else '–'} | {f.get('lexical_weight', 0):g} |"
                for i, f in enumerate(m["folds"])
            ]
            out.append("")
    cal = meta.get("calibration")
    if cal:
        out += ["## Share → threshold → quality (held-out)", "", "| strong share | threshold | quality |", "|---|---|---|"]
        for i in range(0, len(cal["shares"]), 10):
            out.append(f"| {100 * cal['shares'][i]:.0f}% | {min(cal['threshold_at_share'][i], 1.0):.4f} | {cal['quality_at_share'][i]:.3f} |")
        out.append("")
    if plots:
        for name in ("cost_quality.png", "reliability.png"):
            p = Path(plots) / name
            if p.exists():
                out += [f"![{name}]({p})", ""]
    out += [
        "## Retrain on your own data",
        "",
        "```",
        "thinkgate calibrate convert my_results.csv --fast-col small_ok --strong-col big_ok -o outcomes.jsonl",
        "thinkgate calibrate evaluate --outcomes outcomes.jsonl --cv 5 --plots plots/",
        "thinkgate calibrate train --outcomes outcomes.jsonl --out models/mine --target-share 0.3",
        "```",
        "",
    ]
    return "\n".join(out)


def _candidate_lines(meta: dict[str, Any]) -> list[str]:
    """select-lex/4's choice; artifacts of older procedures have none."""
    if "candidate" not in meta:
        return []
    def apgr(x: Any) -> str:  # -inf: undefined in every inner fold (the strong model never better there)
        return f"{x:.3f}" if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"

    cands = meta.get("candidates", [])
    inner = ", ".join(f"{c['candidate']} {apgr(c['inner_apgr'])}" for c in cands)
    se = meta.get("clear_se", 2.0)
    words = {1.0: "one standard error", 2.0: "two standard errors"}.get(float(se), f"{se:g} standard errors")
    out = [f"- candidate chosen by inner CV: **{meta['candidate']}** (inner APGR: {inner}; "
           f"the simplest candidate the best one does not beat by more than {words} of the paired inner-fold gain)"]
    if any(not (isinstance(c.get("inner_apgr"), (int, float)) and math.isfinite(c["inner_apgr"])) for c in cands):
        out.append("- n/a: APGR is undefined in every inner fold (the strong model is never better there), so no candidate could win")
    if meta.get("fallback"):
        out.append(f"- **{meta['fallback']}**")
    return out


def _ci_rows(ci: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not ci:
        return []
    from calibrate.bootstrap import format_lines

    return [(k, f"**{v}**" if k == "verdict" else v) for k, v in format_lines(ci)]


def _to_html(md: str) -> str:
    """A tiny markdown subset (headings, tables, lists, code, images) -> HTML."""
    body, in_table, in_code, in_list = [], False, False, False
    for line in md.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            body.append(_html.escape(line))
            continue
        if in_list and not line.startswith("- "):
            body.append("</ul>")
            in_list = False
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(line[2:])}</li>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<img alt="{_html.escape(alt)}" src="{_html.escape(src.rstrip(")"))}">')
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    if in_table:
        body.append("</table>")
    if in_list:
        body.append("</ul>")
    style = "body{font-family:system-ui;max-width:60rem;margin:2rem auto}td{padding:.2rem .6rem;border-bottom:1px solid #ddd}"
    return f"<!doctype html><meta charset=utf-8><title>thinkgate router report</title><style>{style}</style>\n" + "\n".join(body)


def _inline(text: str) -> str:
    import re

    t = _html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
