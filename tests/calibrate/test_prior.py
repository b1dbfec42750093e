"""The difficulty prior: the corpus builder on a small fixture, the item-response fit
on a synthetic table whose difficulties it must recover, and the prior's artifact
loading and routing like any other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calibrate.outcomes import OutcomeError
from calibrate.prior import corpus, irt
from calibrate.prior.fit import fit_prior, item_table


def _alpaca(tmp_path: Path) -> Path:
    """Two models, two annotators, three instructions; one failed judgement (None)."""
    root = tmp_path / "alpaca_eval" / "results"
    prefs = {("m1", "ann"): ["2", "1", "1.5"], ("m2", "ann"): ["2", "2", None], ("m1", "old"): ["1", "1", "1"]}
    for (model, ann), ps in prefs.items():
        d = root / model / ann
        d.mkdir(parents=True)
        rows = [{"instruction": f"task {i}", "generator_2": model, "annotator": ann, "preference": p} for i, p in enumerate(ps)]
        (d / "annotations.json").write_text(json.dumps(rows))
    return root.parent


def test_alpaca_reader_keys_items_by_instruction_and_models_by_annotator(tmp_path: Path) -> None:
    rows = list(corpus.read_alpaca_eval(_alpaca(tmp_path)))
    assert len(rows) == 8  # 9 judgements, one failed
    assert {r.model for r in rows} == {"m1@ann", "m2@ann", "m1@old"}
    by = {(r.model, r.prompt): r.score for r in rows}
    assert by[("m1@ann", "task 2")] == 0.5 and by[("m2@ann", "task 1")] == 1.0
    assert len({r.item for r in rows if r.prompt == "task 0"}) == 1  # one id per instruction, across files
    card = corpus.card(rows)
    assert card["alpaca_eval"]["items"] == 3 and card["alpaca_eval"]["models"] == 3
    assert "CC BY-NC" in card["alpaca_eval"]["licence"]


def test_alpaca_reader_names_a_folder_without_results(tmp_path: Path) -> None:
    with pytest.raises(OutcomeError, match="annotations.json"):
        list(corpus.read_alpaca_eval(tmp_path))


def test_corpus_round_trip_and_outcome_tables(tmp_path: Path) -> None:
    table = tmp_path / "t.jsonl"
    table.write_text("\n".join(json.dumps({"id": f"q{i}", "prompt": f"p{i}", "fast": i % 2, "strong": 1}) for i in range(4)))
    rows = list(corpus.read_outcome_table(table, source="mine"))
    assert len(rows) == 8 and {r.model for r in rows} == {"mine:fast", "mine:strong"}
    out = tmp_path / "c.jsonl"
    assert corpus.write(rows, out) == 8
    assert corpus.read(out) == rows
    out.write_text('{"source": "x"}\n')
    with pytest.raises(OutcomeError, match="c.jsonl:1"):
        corpus.read(out)


def _synthetic(n_items: int = 300, n_models: int = 40, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    b = rng.normal(0, 1.5, n_items)
    a = np.exp(rng.normal(0, 0.3, n_items))
    theta = rng.normal(0, 1, n_models)
    ii, mm = (x.ravel() for x in np.meshgrid(np.arange(n_items), np.arange(n_models), indexing="ij"))
    y = (rng.random(len(ii)) < 1 / (1 + np.exp(-(a[ii] * theta[mm] - b[ii])))).astype(float)
    return b, a, theta, ii, mm, y


def test_irt_recovers_difficulties_and_abilities() -> None:
    b, a, theta, ii, mm, y = _synthetic()
    f = irt.fit(ii, mm, y, items=list(range(len(b))), models=list(range(len(theta))))
    assert np.corrcoef(f.b, b)[0, 1] > 0.9
    assert np.corrcoef(f.theta, theta)[0, 1] > 0.9
    assert np.corrcoef(f.a, a)[0, 1] > 0.3  # discrimination is the hardest to pin down
    # a scrambled table recovers nothing: the fit reads the data, not the generator
    g = irt.fit(ii, mm, np.random.default_rng(1).permutation(y), items=list(range(len(b))), models=list(range(len(theta))))
    assert abs(np.corrcoef(g.b, b)[0, 1]) < 0.3


def test_irt_with_two_models_is_rasch_and_orders_items_by_failures() -> None:
    b, _, theta, ii, mm, y = _synthetic(n_models=2)
    f = irt.fit(ii, mm, y, items=list(range(len(b))), models=[0, 1])
    assert np.all(f.a == 1.0)
    fails = np.bincount(ii, 1 - y, len(b))
    assert np.corrcoef(f.b, fails)[0, 1] > 0.95


def test_gain_is_largest_where_ability_matters() -> None:
    f = irt.IRTFit(["easy", "mid", "flat"], ["w", "s"], np.array([-1.0, 1.0]), np.array([-6.0, 0.0, 0.0]),
                   np.array([1.0, 1.0, 0.01]), 0.0)
    g = f.gain()
    assert g[1] > g[0] and g[1] > g[2]


def test_prior_learns_a_difficulty_it_can_see_and_weights_sources_equally() -> None:
    rng = np.random.default_rng(0)
    n = 600
    E = rng.normal(size=(n, 8))
    F = rng.normal(size=(n, 3))
    y = E[:, 0] * 2 + rng.normal(0, 0.3, n)
    sources = ["big"] * 500 + ["small"] * 100
    p = fit_prior(E, F, y, sources, embedding_dim=8, alpha=1.0)
    assert np.corrcoef(p.scores(E, F), y)[0, 1] > 0.9
    assert p.arrays["coef_emb"].shape == (8,) and p.arrays["coef_feat"].shape == (3,)


def test_item_table_z_scores_targets_within_each_source() -> None:
    rows = []
    for src, shift in (("a", 0.0), ("b", 3.0)):
        for i in range(30):
            for m in range(5):
                rows.append(corpus.Row(src, f"{src}{i}", f"prompt {src}{i}", f"m{m}", float((i + m + shift) % 3 == 0)))
    t = item_table(rows)
    for src in ("a", "b"):
        d = t.difficulty[np.asarray(t.source) == src]
        assert abs(d.mean()) < 1e-9 and abs(d.std() - 1) < 1e-9
    assert len(t) == 60 and set(t.fits) == {"a", "b"}
