"""What a trained classifier leaves behind: the held-out calibration table
and the threshold chosen on it (RouteLLM's quantile rule), and the artifact
directory (meta.json + weights.npz) that policies.difficulty serves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from calibrate import metrics
from calibrate.train import Fitted
from policies.difficulty import FORMAT
from policies.features import CHEAP_FEATURE_NAMES, FEATURE_VERSION, LEXICAL_DIM, LEXICAL_VERSION

# -- thresholds ------------------------------------------------------------------


def calibration_table(probs: np.ndarray, fast: np.ndarray, strong: np.ndarray, points: int = 101) -> dict[str, Any]:
    """What `threshold` needs later without the data: held-out probability
    quantiles and the quality reached at each strong share."""
    shares = np.linspace(0, 1, points)
    all_shares, q = metrics.quality_curve(probs, fast, strong)
    return {
        "shares": [round(float(s), 4) for s in shares],
        "threshold_at_share": [float(np.quantile(probs, 1 - s)) if 0 < s < 1 else (1.0 + 1e-9 if s == 0 else 0.0) for s in shares],
        "quality_at_share": [float(np.interp(s, all_shares, q)) for s in shares],
        "q_fast": float(np.mean(fast)),
        "q_strong": float(np.mean(strong)),
    }


def choose_threshold(
    table: dict[str, Any], *, target_share: float | None = None, target_quality: float | None = None,
    target_pgr: float | None = None, max_cost: float | None = None, fast_cost: float = 1.0, strong_cost: float = 10.0,
) -> tuple[float, dict[str, Any]]:
    """Pick a threshold on held-out probabilities (RouteLLM's quantile rule).
    Exactly one target: a strong share; an absolute quality; a share of the
    fast-to-strong gap (pgr); or a mean cost per request with the two prices."""
    given = [x is not None for x in (target_share, target_quality, target_pgr, max_cost)]
    if sum(given) != 1:
        raise ValueError("give exactly one of --target-share, --target-quality, --target-pgr, --max-cost")
    shares = np.asarray(table["shares"])
    quality = np.asarray(table["quality_at_share"])
    pgr = target_pgr
    if pgr is not None:
        target_quality = table["q_fast"] + pgr * (table["q_strong"] - table["q_fast"])
    if target_share is not None:
        share = float(np.clip(target_share, 0, 1))
        rule = {"rule": "share", "target": target_share}
    elif target_quality is not None:
        ok = np.flatnonzero(quality >= target_quality - 1e-12)
        share = float(shares[ok[0]]) if len(ok) else 1.0
        rule = {"rule": "quality", "target": target_quality, "reached": bool(len(ok))}
        if pgr is not None:
            rule = {"rule": "pgr", "target": pgr, "quality": target_quality, "reached": bool(len(ok))}
    else:
        assert max_cost is not None
        if strong_cost <= fast_cost:
            share = 1.0
        else:
            share = float(np.clip((max_cost - fast_cost) / (strong_cost - fast_cost), 0, 1))
        share = float(shares[shares <= share + 1e-12].max()) if (shares <= share + 1e-12).any() else 0.0
        rule = {"rule": "max_cost", "target": max_cost, "fast_cost": fast_cost, "strong_cost": strong_cost}
    thr = float(np.interp(share, shares, np.asarray(table["threshold_at_share"])))
    rule.update({"share": share, "expected_quality": float(np.interp(share, shares, quality))})
    return thr, rule


# -- artifacts ---------------------------------------------------------------------


def write_artifact(
    out: str | Path, fitted: Fitted, *, data: dict[str, Any], cv: dict[str, Any] | None,
    table: dict[str, Any], threshold: float, rule: dict[str, Any], embedder_variant: str, fallback: str | None = None,
) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "weights.npz", **{k: np.asarray(v) for k, v in fitted.arrays.items()})
    import sklearn

    meta = {
        "format": FORMAT,
        "procedure": fitted.procedure,
        "embedder": embedder_variant.split("@")[0],  # e.g. sentence-transformers/all-MiniLM-L6-v2
        "embedder_variant": embedder_variant,  # e.g. ...@onnx-int8 (variants agree to cosine >= 0.98)
        "embedding_dim": int(fitted.arrays["coef_emb"].shape[0]),
        "feature_version": FEATURE_VERSION,
        "features": list(CHEAP_FEATURE_NAMES),
        **({"lexical_version": LEXICAL_VERSION, "lexical_dim": LEXICAL_DIM} if "lex_coef" in fitted.arrays else {}),
        "probability": "P(strong answer better than fast answer), Platt-calibrated on inner out-of-fold scores",
        "hyperparameters": {"embedding_dim": fitted.embedding_dim, "alpha": fitted.alpha, "feature_weight": fitted.feature_weight,
                            "lexical_alpha": fitted.lexical_alpha, "lexical_weight": fitted.lexical_weight,
                            "inner_apgr": fitted.inner_apgr},
        # select-lex/4: which candidate the inner CV chose, and each one's inner APGR
        "candidate": fitted.candidate,
        "candidates": fitted.candidates,
        **({"fallback": fallback} if fallback else {}),
        "model_selection": fitted.grid,
        "training_data": data,
        "metrics": cv,
        "threshold": threshold,
        "threshold_rule": rule,
        "calibration": table,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sklearn": sklearn.__version__,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def set_threshold(path: str | Path, threshold: float, rule: dict[str, Any]) -> None:
    p = Path(path) / "meta.json"
    meta = json.loads(p.read_text())
    meta["threshold"], meta["threshold_rule"] = threshold, rule
    p.write_text(json.dumps(meta, indent=1) + "\n")
