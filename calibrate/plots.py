"""Cost-quality curve and reliability diagram (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from calibrate import metrics


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cost_quality(scores: Any, fast: Any, strong: Any, path: str | Path, title: str = "") -> Path:
    plt = _plt()
    f, s = np.asarray(fast, float), np.asarray(strong, float)
    shares, q = metrics.quality_curve(scores, f, s)
    rng = np.random.default_rng(0)
    _, q_rand = metrics.quality_curve(rng.random(len(f)), f, s)
    fig, ax = plt.subplots(figsize=(6, 4.8), dpi=110)
    a = metrics.apgr(scores, f, s)
    ax.plot(100 * shares, q, label=f"router (pooled APGR {a:.3f})" if np.isfinite(a) else "router (APGR n/a: strong not better)", lw=2)
    ax.plot(100 * shares, q_rand, label="random", lw=1, ls="--", color="gray")
    ax.axhline(f.mean(), color="tab:red", lw=0.8, ls=":", label=f"fast only {f.mean():.3f}")
    ax.axhline(s.mean(), color="tab:green", lw=0.8, ls=":", label=f"strong only {s.mean():.3f}")
    ax.axhline(np.maximum(f, s).mean(), color="black", lw=0.6, ls=":", label="oracle")
    ax.set_xlabel("% of prompts sent to the strong (reasoning) model")
    ax.set_ylabel("mean quality")
    ax.set_title(f"cost-quality (out-of-fold) {title}".strip())
    # outside the axes, below them: inside, "lower right" covered the curve where it rises
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def reliability(probs: Any, labels: Any, path: str | Path, bins: int = 10) -> Path:
    plt = _plt()
    pts = metrics.reliability(probs, labels, bins)
    fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
    ax.plot([p for p, _, _ in pts], [y for _, y, _ in pts], marker="o")
    for p, y, n in pts:
        ax.annotate(str(n), (p, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("predicted P(needs reasoning)")
    ax.set_ylabel("observed rate (strong better)")
    ax.set_title(f"reliability (ECE {metrics.ece(probs, labels, bins):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
