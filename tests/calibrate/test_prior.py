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


def test_rated_items_become_a_source_whose_rating_is_the_difficulty(tmp_path: Path) -> None:
    f = tmp_path / "levels.jsonl"
    f.write_text("\n".join(json.dumps({"problem": f"problem {i}", "level": lv}) for i, lv in enumerate([1, 5, 3, 2, 4]))
                 + "\n" + json.dumps({"problem": "unrated", "level": None}))
    with pytest.raises(OutcomeError, match="levels.jsonl:6"):
        list(corpus.read_rated(f, source="levels", field="level"))
    f.write_text(f.read_text().rsplit("\n", 1)[0])
    rated = list(corpus.read_rated(f, source="levels", field="level"))
    assert [r.score for r in rated] == [1, 5, 3, 2, 4] and {r.model for r in rated} == {corpus.RATING}
    table = tmp_path / "t.jsonl"
    table.write_text("\n".join(json.dumps({"id": f"q{i}", "prompt": f"p{i}", "fast": i % 2, "strong": 1}) for i in range(6)))
    t = item_table(rated + list(corpus.read_outcome_table(table, source="pair")))
    lv = t.difficulty[np.asarray(t.source) == "levels"]
    assert np.argsort(lv).tolist() == [0, 3, 2, 4, 1]  # the ratings' order, z-scored
    assert abs(lv.mean()) < 1e-9 and np.array_equal(lv, t.gain[np.asarray(t.source) == "levels"])
    assert t.fits["levels"] is None and t.fits["pair"] is not None
    with pytest.raises(ValueError, match="mixes ratings"):
        item_table(rated + [corpus.Row("levels", "x", "x", "m", 1.0)])
    card = corpus.card(rated)
    assert card["levels"]["ratings"] == 5 and card["levels"]["models"] == 0


def _carry_and_memorise(seed: int = 0) -> tuple[object, np.ndarray, np.ndarray]:
    """Three sources. A cheap feature carries difficulty in every one; each source also
    has its own embedding direction for it, which means nothing in the others."""
    from calibrate.prior.fit import ItemTable

    rng = np.random.default_rng(seed)
    n, src = 200, []
    E, F, y = [], [], []
    for k, name in enumerate(("a", "b", "c")):
        f0 = rng.normal(size=n)
        e = rng.normal(size=(n, 6))
        d = 0.6 * f0 + 1.5 * e[:, k] + rng.normal(0, 0.3, n)
        E.append(e)
        F.append(np.column_stack([f0, rng.normal(size=n)]))
        y.append((d - d.mean()) / d.std())
        src += [name] * n
    Y = np.concatenate(y)
    items = ItemTable(src, [f"{s}{i}" for i, s in enumerate(src)], [""] * len(src), Y, Y)
    return items, np.vstack(E), np.vstack(F)


def test_source_level_selection_keeps_what_carries_to_an_unseen_source() -> None:
    from calibrate.prior.select import choose

    items, E, F = _carry_and_memorise()
    _, dim_item, _ = choose(items, E, F, target="difficulty", dims=(0, 6), by="item")
    _, dim_src, grid = choose(items, E, F, target="difficulty", dims=(0, 6), by="source")
    assert dim_item == 6  # random item folds reward each source's own direction
    assert dim_src == 0  # held-out sources show it does not carry; the shared feature does
    assert {g["by"] for g in grid} == {"source"}


def test_loso_chooses_inside_each_fold_without_the_held_out_source() -> None:
    from calibrate.prior import loso

    items, E, F = _carry_and_memorise(1)
    rng = np.random.default_rng(2)
    pairs = {}
    for s in ("a", "c"):
        m = np.asarray(items.source) == s
        hard = items.difficulty[m] > 0
        pairs[s] = {"E": E[m], "F": F[m], "fast": (~hard | (rng.random(m.sum()) < 0.2)).astype(float),
                    "strong": np.ones(m.sum())}
    seen: list[set[str]] = []

    def select(it, e, f):  # type: ignore[no-untyped-def]
        seen.append(set(it.source))
        return 10.0, 0

    res = loso.run(items, E, F, pairs, target="difficulty", select=select, draws=50)
    assert seen == [{"b", "c"}, {"a", "b"}]
    assert [r["held_out"] for r in res] == ["a", "c"] and all(r["embedding_dim"] == 0 for r in res)
    assert all(r["prior"]["apgr"] > 0.55 for r in res)  # the shared feature carries to the held-out pair (random: 0.5)
    with pytest.raises(ValueError, match="alpha and embedding_dim"):
        loso.run(items, E, F, pairs, target="difficulty", draws=10)


def test_a_fitted_prior_is_an_artifact_that_loads_routes_and_reloads(tmp_path: Path) -> None:
    """`prior corpus` -> `prior fit` (hash embedder: no model) -> served by the gateway,
    swapped in by the admin reload like any other artifact."""
    import asyncio

    import httpx

    from calibrate.cli import main
    from router import config
    from router.app import create_app
    from router.embedding.batcher import fake_embedder
    from router.learning import admin
    from router.learning.slot import ClassifierSlot, load_checked
    from router.upstreams.fake import FakeUpstream

    levels = tmp_path / "levels.jsonl"
    words = ["add", "sum", "prove", "integral", "matrix", "prime", "limit", "graph"]
    levels.write_text("\n".join(json.dumps({"problem": " ".join(words[: 1 + i % 8]) + f" {i} " + "x" * (i % 8 * 20),
                                            "level": 1 + i % 5}) for i in range(40)))
    table = tmp_path / "pair.jsonl"
    table.write_text("\n".join(json.dumps({"id": f"q{i}", "prompt": f"question {i} " + "y" * (i % 10 * 30),
                                           "fast": float(i % 10 < 5), "strong": 1.0}) for i in range(40)))
    corpus_path, art = tmp_path / "corpus.jsonl", tmp_path / "prior"
    assert main(["prior", "corpus", "--rated", f"levels={levels}:level", "--table", f"pair={table}", "-o", str(corpus_path)]) == 0
    assert main(["prior", "fit", "--corpus", str(corpus_path), "--pairs", f"pair={table}", "--embedder", "hash",
                 "--no-cache", "--quiet", "-o", str(art)]) == 0
    meta = json.loads((art / "meta.json").read_text())
    assert meta["procedure"] == "prior-irt/1" and set(meta["training_data"]["corpus"]) == {"levels", "pair"}

    s = config.from_dict({
        "models": {"fast": {"provider": "fake", "model": "f"}, "reasoning": {"provider": "fake", "model": "r", "reasoning": True}},
        "selfref": {"enabled": False}, "cache": {"enabled": False},
    })  # fmt: skip
    again = tmp_path / "prior-again"  # refitted on another target: a new version to reload
    assert main(["prior", "fit", "--corpus", str(corpus_path), "--pairs", f"pair={table}", "--embedder", "hash",
                 "--target", "difficulty", "--alpha", "100", "--embedding-dim", "0", "--no-cache", "--quiet",
                 "-o", str(again)]) == 0
    embedder = fake_embedder()
    # served with the embedder it was fitted on (the gateway's slot takes the family from its first artifact)
    slot = ClassifierSlot(load_checked(str(art), embedder.dim, embedder.id), embedding_dim=embedder.dim, default_path=str(art))
    ups = {"fast": FakeUpstream("fast", "f"), "reasoning": FakeUpstream("reasoning", "r")}
    app = create_app(s, upstreams=ups, embedder=embedder, classifier=slot, routes=admin.routes(slot))

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tg") as c:
            for version in (slot.current.version, None):
                if version is None:
                    rr = await c.post("/admin/router/reload", json={"artifact": str(again)})
                    assert rr.status_code == 200, rr.text
                    version = rr.json()["artifact"]["version"]
                    assert rr.json()["previous"] != version
                for body in ("question 1", "question 9 " + "y" * 270):
                    r = await c.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": body}]})
                    assert r.status_code == 200 and r.headers["x-thinkgate-router"] == version
                    assert r.headers["x-thinkgate-route"] in ("fast", "reasoning")
                    assert 0.0 <= float(r.headers["x-thinkgate-difficulty"]) <= 1.0

    asyncio.run(go())


def test_evaluate_prior_adds_its_logit_to_the_baseline_on_the_same_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`evaluate --prior`: the CV line with and without the prior as a feature. Here the
    outcomes follow prompt length, which the prior (cheap features) sees and a normalised
    bag of hashed words does not (the same words, repeated), so the prior must help
    beyond its paired CI."""
    from calibrate.cli import main

    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        long = i % 2 == 1
        words = " ".join([f"alpha beta gamma delta omega w{i}"] * (8 if long else 1))
        rows.append({"id": f"q{i}", "prompt": words, "fast": float(not long or rng.random() < 0.1), "strong": 1.0})
    table = tmp_path / "pair.jsonl"
    table.write_text("\n".join(json.dumps(r) for r in rows))
    corpus_path, art = tmp_path / "corpus.jsonl", tmp_path / "prior"
    assert main(["prior", "corpus", "--table", f"pair={table}", "-o", str(corpus_path)]) == 0
    assert main(["prior", "fit", "--corpus", str(corpus_path), "--pairs", f"pair={table}", "--embedder", "hash",
                 "--embedding-dim", "0", "--alpha", "10", "--no-cache", "--quiet", "-o", str(art)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--outcomes", str(table), "--embedder", "hash", "--no-cache", "--quiet", "--prior", str(art),
                 "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    s = json.loads(out.strip().splitlines()[-1])
    w = s["baseline_with_prior"]
    assert w["procedure"].endswith("+ the prior's logit") and w["prior"] == str(art)
    assert w["apgr"] > s["baseline"]["apgr"] + 0.1
    assert w["ci"]["diff_ci"][0] > 0 and "baseline + prior" in out
    capsys.readouterr()
    assert main(["evaluate", "--outcomes", str(table), "--embedder", "hash", "--model", str(art), "--prior", str(art)]) == 1
    assert "--prior adds a feature" in capsys.readouterr().err
