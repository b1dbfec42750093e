"""The printed report and the precision/escalation plot of `thinkgate calibrate selfref`.

Both read the result dict of `calibrate.selfref_analysis.analyse` (or a saved
`--out` file), so a previous run can be re-reported without a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_report(result: dict[str, Any]) -> str:
    lines = [
        f"answers: {result['n']} (errors {result['errors']}), fast-model accuracy: {_pct(result['accuracy'])}",
        f"target: >= {_pct(result['target_precision'])} of kept fast answers correct, over >= {result.get('min_kept', 1)} kept"
        f" (missing confidence: {result['on_missing']})",
        "",
        f"{'mode':<17}{'AUROC':>7}{'95% CI':>14}{'cover':>7}{'threshold':>11}{'escalate':>10}{'kept acc':>10}",
    ]
    for mode, m in result["modes"].items():
        thr = "-" if m["threshold"] is None else ("always" if m["threshold"] > 1 else f"{m['threshold']:.4f}")
        lines.append(
            f"{mode:<17}{_num(m['auroc']):>7}{_ci(m.get('auroc_ci95')):>14}{_pct(m['coverage']):>7}{thr:>11}"
            f"{_pct(m['escalation_rate']):>10}{_pct(m['kept_accuracy']):>10}"
        )
    for mode, m in result["modes"].items():
        if m["auroc"] is None:
            continue
        lines += ["", f"trade-off, {mode}:", f"  {'escalate':>9}{'threshold':>11}{'kept':>6}{'kept acc':>10}"]
        for p in m["table"]:
            thr = "always" if p["threshold"] > 1 else f"{p['threshold']:.4f}"
            lines.append(f"  {_pct(p['escalation_rate']):>9}{thr:>11}{p['kept']:>6}{_pct(p['kept_accuracy']):>10}")
    rec = result.get("recommended")
    lines.append("")
    if rec:
        lines.append(f"recommended: selfref.mode={rec['mode']} selfref.threshold={rec['threshold']:.4f}")
    else:
        lines.append(
            "recommended: none: no mode keeps any fast answers at this target; escalate everything "
            "(selfref.threshold above 1) or lower --target-precision"
        )
    if result.get("score_us_median") is not None:
        gen = result.get("generation_s_median")
        lines.append(
            f"scoring CPU time per response (all modes): median {result['score_us_median']:.0f} us, "
            f"p99 {result['score_us_p99']:.0f} us" + (f"; generation median {gen * 1000:.0f} ms" if gen else "")
        )
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci: Any) -> str:
    return "-" if not ci else f"{ci[0]:.2f}-{ci[1]:.2f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def plot(result: dict[str, Any], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, m in result["modes"].items():
        pts = [p for p in m["curve"] if p["kept_accuracy"] is not None]
        if m["auroc"] is None or not pts:
            continue
        (line,) = ax.plot(
            [100 * p["escalation_rate"] for p in pts],
            [100 * p["kept_accuracy"] for p in pts],
            label=f"{mode} (AUROC {m['auroc']:.2f})",
        )
        if m["kept_accuracy"] is not None:  # the chosen threshold
            ax.scatter([100 * m["escalation_rate"]], [100 * m["kept_accuracy"]], s=30, color=line.get_color(), zorder=3)
    ax.axhline(100 * result["target_precision"], color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel("escalated to the reasoning route (%)")
    ax.set_ylabel("kept fast answers correct (%)")
    ax.set_title(title or "Self-Ref: precision vs escalation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
