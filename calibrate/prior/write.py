"""The prior as an ordinary `thinkgate-difficulty/2` artifact (the same dot product at
serving time), with its data card: the corpus sources, their licences and counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from calibrate.artifact import write_artifact
from calibrate.prior.fit import Prior
from calibrate.train import Fitted

PROCEDURE = "prior-irt/1"


def write_prior(
    out: str | Path, prior: Prior, *, platt: tuple[float, float], embedder_variant: str, corpus: dict[str, Any],
    grid: list[dict[str, Any]], pairs: list[str], table: dict[str, Any], threshold: float, rule: dict[str, Any],
) -> Path:
    arrays = {**prior.arrays, "platt_a": np.float64(platt[0]), "platt_b": np.float64(platt[1])}
    fitted = Fitted(arrays=arrays, alpha=prior.alpha, feature_weight=prior.feature_weight, inner_apgr=float("nan"),
                    embedding_dim=prior.embedding_dim, oof_scores=np.zeros(0), procedure=PROCEDURE, candidate="prior")
    data = {
        "kind": "difficulty prior: prompt -> item-response difficulty/gain, learned from many models' outcomes",
        "target": prior.target, "corpus": corpus, "calibrated_on": pairs,
        "hyperparameter_search": grid,
    }
    path = write_artifact(out, fitted, data=data, cv=None, table=table, threshold=threshold, rule=rule,
                          embedder_variant=embedder_variant)
    import json

    meta_path = Path(path) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["hyperparameters"]["inner_apgr"] = None  # no inner CV over pairs: the prior is not fitted on one
    meta["probability"] = ("P(strong answer better than fast answer) for a pair it was not trained on: a Platt map of the "
                           "prior's score, fitted on the pair tables named in training_data.calibrated_on")
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return Path(path)
