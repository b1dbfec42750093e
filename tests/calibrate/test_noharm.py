"""select-lex/4 does no harm (issue 16): the simple candidates are part of the
inner-CV choice, `evaluate` says when no signal was found (bootstrap CIs
against 0.5 and against the baseline on the same folds), `train` falls back to
the baseline then, and --split-by keeps a domain's rows on one side of a fold.
Small synthetic tables and the HashEncoder: no model, a few seconds each."""

import json

import numpy as np
import pytest

from calibrate import artifact, bootstrap, crossval, metrics, train
from calibrate.cli import main
from calibrate.outcomes import write
from calibrate.report import markdown
from policies.difficulty import DifficultyClassifier
from policies.features import cheap_features

SMALL = train.TrainConfig(alphas=(10.0, 100.0, 1000.0), feature_weights=(1.0,), lexical_alphas=(3.0,), lexical_weights=(0.0, 1.0))


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _baseline_table(n=400, seed=0):
    """Only the sentence embedding carries the signal, linearly (what the plain
    baseline fits); the words and the cheap features are noise that the richer
    candidates can fit by chance."""
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n, 384))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    p = 1 / (1 + np.exp(-100 * E[:, 3]))
    strong = (rng.random(n) < 0.1 + 0.85 * p).astype(float)
    fast = (rng.random(n) < 0.2).astype(float)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"]
    msgs = [[{"role": "user", "content": " ".join(rng.choice(words, int(rng.integers(3, 30)))) + f" {i}"}] for i in range(n)]
    F = np.asarray([cheap_features(m) for m in msgs])
    return msgs, E, F, fast, strong


@pytest.mark.slow  # ~5-10 s of fits (more on a loaded machine)
def test_candidates_are_tried_on_the_same_folds_and_the_simplest_is_preferred():
    msgs, E, F, fast, strong = _baseline_table()
    m = train.fit(E, F, fast, strong, SMALL, progress=False, L=train.lexical_matrix(msgs))
    assert [c["candidate"] for c in m.candidates] == list(train.CANDIDATES)
    assert all(len(c["per_fold"]) == 3 for c in m.candidates)
    best = max(m.candidates, key=lambda c: c["inner_apgr"])
    # the chosen one is the first (simplest) that the best does not beat clearly
    for c in m.candidates:
        if c["candidate"] == m.candidate:
            break
        assert train._clearly_better(np.asarray(best["per_fold"]), np.asarray(c["per_fold"]), SMALL.clear_se)
    assert not train._clearly_better(np.asarray(best["per_fold"]), np.asarray(next(
        c["per_fold"] for c in m.candidates if c["candidate"] == m.candidate)), SMALL.clear_se)


@pytest.mark.slow  # ~5-10 s of fits (more on a loaded machine)
def test_where_only_the_baseline_has_signal_the_procedure_is_not_below_it():
    msgs, E, F, fast, strong = _baseline_table(n=500, seed=1)
    L = train.lexical_matrix(msgs)
    res = crossval.cross_validate(E, F, fast, strong, 4, SMALL, progress=False, L=L)
    base = crossval.cross_validate_baseline(E, fast, strong, 4, SMALL.seed)
    assert [te.tolist() for _, te in res["splits"]] == [te.tolist() for _, te in base["splits"]]  # same folds
    picked = [f["candidate"] for f in res["summary"]["folds"]]
    assert set(picked) <= {"baseline", "embedding", "cheap"}, picked  # never a lexical part fitted on noise words
    ci = bootstrap.intervals([(res["scores"], res["splits"])], fast, strong, None, [(base["scores"], base["splits"])], draws=300)
    assert ci["apgr_ci"][0] > 0.5 and ci["verdict"].startswith("signal")
    assert res["summary"]["apgr"] >= base["apgr"] - 0.02, (res["summary"]["apgr"], base["apgr"])
    assert ci["diff_ci"][1] >= 0  # not worse than the baseline beyond chance (0: it chose the baseline everywhere)

    # the old procedure (ridge-gain-lex/3's candidates only) is what --compare runs
    old = train.TrainConfig(**{**SMALL.__dict__, "candidates": ("cheap", "full")})
    assert train.procedure_name(old, True) == "ridge-gain-lex/3"


def test_a_baseline_choice_serves_as_trained(tmp_path):
    msgs, E, F, fast, strong = _baseline_table(n=300, seed=2)
    cfg = train.TrainConfig(**{**SMALL.__dict__, "candidates": ("baseline",)})
    m = train.fit(E, F, fast, strong, cfg, progress=False, L=train.lexical_matrix(msgs))
    assert m.candidate == "baseline" and "lex_coef" not in m.arrays
    table = artifact.calibration_table(m.probs(m.oof_scores), fast, strong)
    out = artifact.write_artifact(tmp_path / "art", m, data={"n": len(msgs)}, cv=None, table=table, threshold=0.5,
                                  rule={"rule": "share"}, embedder_variant="sentence-transformers/all-MiniLM-L6-v2@test")
    clf = DifficultyClassifier.load(out)
    assert clf.meta["candidate"] == "baseline"
    served = np.asarray([clf.predict(msgs[i], E[i]) for i in range(30)])
    assert served == pytest.approx(m.probs(m.scores(E[:30], F[:30])), rel=1e-6, abs=1e-9)
    # the ranking is the plain LogisticRegression's
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0, max_iter=2000).fit(E, metrics.needs_strong(fast, strong))
    assert np.corrcoef(m.scores(E[:30], F[:30]), lr.decision_function(E[:30]))[0, 1] > 0.9999
    assert "candidate chosen by inner CV: **baseline**" in markdown(clf.meta, "art")


def test_old_artifacts_still_load_and_report(tmp_path):
    clf = DifficultyClassifier.load("default")  # trained by ridge-gain-lex/3: no candidate in meta.json
    assert "candidate" not in clf.meta
    assert "candidate chosen" not in markdown(clf.meta, "default")


def test_weighted_apgr_is_metrics_apgr_on_repeated_rows():
    rng = np.random.default_rng(0)
    for t in range(100):
        n = int(rng.integers(3, 50))
        s = rng.integers(0, 4, n).astype(float) if t % 2 else rng.normal(size=n)  # with and without ties
        f, g = rng.integers(0, 2, n).astype(float), rng.integers(0, 2, n).astype(float)
        w = rng.integers(0, 3, n)
        idx = np.repeat(np.arange(n), w)
        for a, b in ((metrics.apgr(s, f, g), bootstrap.weighted_apgr(s, f, g)),
                     (metrics.apgr(s[idx], f[idx], g[idx]) if len(idx) else np.nan, bootstrap.weighted_apgr(s, f, g, w))):
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9)


def test_intervals_and_verdicts():
    rng = np.random.default_rng(1)
    n = 600
    fast, strong = (rng.random(n) < 0.4).astype(float), (rng.random(n) < 0.7).astype(float)
    folds = [(np.zeros(0, int), te) for te in np.array_split(rng.permutation(n), 3)]
    oracle, noise = strong - fast + 0.01 * rng.normal(size=n), rng.normal(size=n)
    good = bootstrap.intervals([(oracle, folds)], fast, strong, baseline=[(noise, folds)], draws=200)
    assert good["apgr_ci"][0] > 0.5 and good["diff_ci"][0] > 0
    assert good["verdict"] == "signal: APGR CI above 0.5; better than the baseline (CI of the difference above 0)"
    bad = bootstrap.intervals([(noise, folds)], fast, strong, baseline=[(oracle, folds)], draws=200)
    assert bad["apgr_ci"][0] <= 0.5 <= bad["apgr_ci"][1] and bootstrap.no_signal(bad)
    assert bad["verdict"].startswith("no signal: APGR CI includes 0.5") and "worse than the baseline" in bad["verdict"]
    assert bootstrap.intervals([(-oracle, folds)], fast, strong, draws=100)["verdict"].startswith("worse than random")
    # the strong model worse on average: per-fold APGR may exist by chance, but no verdict is given
    flat = bootstrap.intervals([(oracle, folds)], strong, fast, baseline=[(noise, folds)], draws=50)
    assert flat["apgr_ci"] is None and flat["verdict"].startswith("no verdict") and bootstrap.no_signal(flat)
    # drawing whole groups: 20 groups of 30 identical rows give a wider interval than 600 independent rows
    groups = np.repeat(np.arange(20), 30)
    clustered = np.repeat(rng.normal(size=20), 30)
    f2, s2 = np.repeat(rng.random(20) < 0.4, 30).astype(float), np.repeat(rng.random(20) < 0.7, 30).astype(float)
    wide = bootstrap.intervals([(clustered, folds)], f2, s2, groups, draws=200)["apgr_ci"]
    narrow = bootstrap.intervals([(clustered, folds)], f2, s2, None, draws=200)["apgr_ci"]
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])


def _table(path, n=240, seed=0, shuffled=False, subjects=6):
    """Words that decide the outcome (a lexical signal the HashEncoder also
    sees), and a `group` per row; shuffled: outcomes permuted (no signal)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hard = i % 2 == 0
        words = ["prove", "integral", "theorem"] if hard else ["capital", "colour", "name"]
        text = f"{rng.choice(words)} {rng.choice(['a', 'b', 'c', 'd'])} item {i} of {rng.choice(words)}"
        strong = float(rng.random() < (0.9 if hard else 0.3))
        rows.append({"id": str(i), "prompt": text, "fast": float(rng.random() < 0.3), "strong": strong,
                     "group": f"subject{i % subjects}"})
    if shuffled:
        order = rng.permutation(n)
        rows = [{**r, "fast": rows[j]["fast"], "strong": rows[j]["strong"]} for r, j in zip(rows, order)]
    write(rows, path)
    return path


EVAL = ["--cv", "3", "--json", "--quiet", "--embedder", "hash", "--no-cache", "--bootstrap", "300"]


@pytest.mark.slow  # ~5-10 s of fits (more on a loaded machine)
def test_evaluate_reports_signal_with_cis(tmp_path, capsys):
    assert main(["evaluate", "--outcomes", str(_table(tmp_path / "t.jsonl")), *EVAL]) == 0
    s = last_json(capsys.readouterr().out)
    ci = s["ci"]
    assert ci["apgr_ci"][0] > 0.5 and ci["verdict"].startswith("signal")
    assert ci["apgr"] == pytest.approx(s["apgr"]) and ci["baseline_apgr"] == pytest.approx(s["baseline"]["apgr"])
    assert sum(s["candidates_chosen"].values()) == 3


@pytest.mark.slow  # ~5-10 s of fits (more on a loaded machine)
def test_shuffled_outcomes_say_no_signal_and_train_falls_back(tmp_path, capsys):
    path = _table(tmp_path / "shuffled.jsonl", seed=3, shuffled=True)
    assert main(["evaluate", "--outcomes", str(path), *EVAL[:-1], "300"]) == 0
    s = last_json(capsys.readouterr().out)
    assert s["ci"]["apgr_ci"][0] <= 0.5 <= s["ci"]["apgr_ci"][1]
    assert s["ci"]["verdict"].startswith("no signal: APGR CI includes 0.5")
    art = tmp_path / "art"
    rc = main(["train", "--outcomes", str(path), "--out", str(art), "--cv", "3", "--quiet", "--embedder", "hash", "--no-cache",
               "--bootstrap", "300", "--target-share", "0.3"])
    out = capsys.readouterr()
    assert rc == 0 and "warning: no signal" in out.err
    meta = json.loads((art / "meta.json").read_text())
    assert meta["candidate"] == "baseline" and meta["fallback"].startswith("no signal")
    assert meta["metrics"]["ci"]["verdict"].startswith("no signal")
    text = markdown(meta, "art")
    assert "no signal: APGR CI includes 0.5" in text and "trained the simplest candidate (baseline)" in text


@pytest.mark.slow  # ~5-10 s of fits (more on a loaded machine)
def test_split_by_group_keeps_groups_disjoint(tmp_path, capsys):
    path = _table(tmp_path / "t.jsonl", subjects=6)
    assert main(["evaluate", "--outcomes", str(path), *EVAL, "--split-by", "group"]) == 0
    s = last_json(capsys.readouterr().out)
    assert s["split_by"] == {"field": "group", "groups": 6} and s["ci"]["resampled"] == "6 groups"
    # the folds themselves: no group on both sides
    groups = np.arange(240) % 6
    E = np.random.default_rng(0).normal(size=(240, 384))
    fast, strong = np.zeros(240), (np.arange(240) % 2).astype(float)
    res = crossval.cross_validate(E, np.zeros((240, 13)), fast, strong, 3, SMALL, progress=False, outer_groups=groups)
    for tr, te in res["splits"]:
        assert not set(groups[tr]) & set(groups[te]) and len(te)
    base = crossval.cross_validate_baseline(E, fast, strong, 3, SMALL.seed, outer_groups=groups)
    assert [te.tolist() for _, te in base["splits"]] == [te.tolist() for _, te in res["splits"]]
    # too few groups, or rows without the field: a clear error, not a crash
    assert main(["evaluate", "--outcomes", str(_table(tmp_path / "two.jsonl", subjects=2)), *EVAL, "--split-by", "group"]) == 1
    assert "too few for 3-fold" in capsys.readouterr().err
    bare = tmp_path / "bare.jsonl"
    write(({k: v for k, v in json.loads(line).items() if k != "group"} for line in path.read_text().splitlines()), bare)
    assert main(["evaluate", "--outcomes", str(bare), *EVAL, "--split-by", "group"]) == 1
    assert "have no 'group' field" in capsys.readouterr().err


def test_train_on_one_table_score_another(tmp_path, capsys):
    a, b = _table(tmp_path / "a.jsonl", seed=4), _table(tmp_path / "b.jsonl", n=200, seed=5)
    rows = [json.loads(line) for line in b.read_text().splitlines()]
    write(({**r, "prompt": "other " + r["prompt"]} for r in rows), b)  # no prompt shared with a
    assert main(["evaluate", "--outcomes", str(b), "--train-on", str(a), *EVAL]) == 0
    s = last_json(capsys.readouterr().out)
    assert s["n"] == 200 and s["train_on"]["n"] == 240 and s["train_on"]["shared_prompts"] == 0
    assert s["ci"]["apgr_ci"][0] > 0.5 and "baseline" in s and "diff_ci" in s["ci"]
    assert main(["evaluate", "--outcomes", str(a), "--train-on", str(a), *EVAL]) == 1
    assert "not held-out" in capsys.readouterr().err


def test_unknown_candidate_is_a_clear_error(tmp_path, capsys):
    path = _table(tmp_path / "t.jsonl", n=60)
    assert main(["evaluate", "--outcomes", str(path), *EVAL, "--candidates", "baseline,magic"]) == 1
    assert "unknown ['magic']" in capsys.readouterr().err


def _domain_word_table(n=480, domains=12, seed=6):
    """Each domain has its own word, and the domains differ in how often the strong model
    is better; nothing else carries signal. Within the seen domains the word predicts the
    gain; on a domain never seen it says nothing (what subject names do under a subject shift)."""
    rng = np.random.default_rng(seed)
    dom = np.arange(n) % domains
    hard = rng.permutation(domains) < domains // 2
    strong = (rng.random(n) < np.where(hard[dom], 0.85, 0.15)).astype(float)
    fast = (rng.random(n) < 0.2).astype(float)
    E = rng.normal(size=(n, 384))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    filler = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
    # letters only: a domain's word shares no token (digit, prefix) with another domain's
    names = ["".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 7)) for _ in range(domains)]
    msgs = [[{"role": "user", "content": f"{names[d]} " + " ".join(rng.choice(filler, 12))}] for d in dom]
    F = np.asarray([cheap_features(m) for m in msgs])
    return msgs, E, F, fast, strong, dom


@pytest.mark.slow  # ~10 s of fits (more on a loaded machine)
def test_model_selection_over_domains_does_not_take_words_that_do_not_carry():
    msgs, E, F, fast, strong, dom = _domain_word_table()
    L = train.lexical_matrix(msgs)
    cfg = SMALL
    # inner folds over prompts: the domain words look like signal, the lexical part is taken
    over_prompts = train.fit(E, F, fast, strong, cfg, progress=False, L=L)
    assert over_prompts.candidate in train.LEXICAL_CANDIDATES, over_prompts.candidates
    # inner folds over domains: every candidate is judged on unseen domains, where the
    # words carry nothing, so the simplest is kept
    over_domains = train.fit(E, F, fast, strong, cfg, progress=False, L=L, domains=dom)
    assert over_domains.candidate not in train.LEXICAL_CANDIDATES, over_domains.candidates
    assert all(len(c["per_fold"]) == 3 for c in over_domains.candidates)  # 12 domains: 3 inner folds
    # and the outer CV by domain hands each fit its own domains
    res = crossval.cross_validate(E, F, fast, strong, 3, cfg, progress=False, L=L, outer_groups=dom)
    picked = [f["candidate"] for f in res["summary"]["folds"]]
    assert not set(picked) & set(train.LEXICAL_CANDIDATES), picked


def test_train_split_by_records_the_domain_split(tmp_path, capsys):
    path = _table(tmp_path / "t.jsonl", subjects=6)
    art = tmp_path / "art"
    assert main(["train", "--outcomes", str(path), "--out", str(art), "--cv", "3", "--quiet", "--embedder", "hash",
                 "--no-cache", "--bootstrap", "100", "--split-by", "group", "--target-share", "0.3"]) == 0
    meta = json.loads((art / "meta.json").read_text())
    assert meta["metrics"]["split_by"] == {"field": "group", "groups": 6}
    assert meta["metrics"]["ci"]["resampled"] == "6 groups"
    capsys.readouterr()
    assert main(["train", "--outcomes", str(path), "--out", str(tmp_path / "x"), "--cv", "3", "--quiet", "--embedder", "hash",
                 "--no-cache", "--split-by", "nofield"]) == 1
    assert "have no 'nofield' field" in capsys.readouterr().err
