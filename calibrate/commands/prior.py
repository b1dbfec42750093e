"""`calibrate prior`: the pair-agnostic difficulty prior.

  prior corpus  public per-item result dumps and outcome tables -> a corpus JSONL
  prior pair    two models of a corpus source -> an outcome table (fast, strong)
  prior fit     corpus -> item-response targets -> the prior artifact
  prior loso    leave one source out: the prior's cold-start APGR on each source's
                pair table, next to other artifacts scored the same way"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from calibrate.commands.common import _add_target_args, _err, _json, _out, _targets


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="prior_cmd", required=True, metavar="{corpus,pair,fit,loso}")
    c = sub.add_parser("corpus", help="build a corpus of many models' per-item outcomes")
    c.add_argument("--alpaca-eval", metavar="DIR", help="a tatsu-lab/alpaca_eval checkout (or its results/ folder)")
    c.add_argument("--table", action="append", default=[], metavar="SOURCE=FILE",
                   help="an outcome JSONL (e.g. RouteLLM GSM8K after `calibrate convert`) as a two-model source; repeatable")
    c.add_argument("--rated", action="append", default=[], metavar="SOURCE=FILE:FIELD",
                   help="items rated for difficulty instead of outcomes (e.g. math-levels=../shared/data/math/math.jsonl:level; "
                        "the text is the `problem` field, or FILE:FIELD:TEXTFIELD); repeatable")
    c.add_argument("-o", "--out", required=True, help="corpus JSONL to write")

    pr = sub.add_parser("pair", help="an outcome table from two models of one corpus source")
    pr.add_argument("--corpus", required=True, help="corpus JSONL from `prior corpus`")
    pr.add_argument("--source", required=True, help="the corpus source both models come from (e.g. alpaca_eval)")
    pr.add_argument("--fast", required=True, help="model name as in the corpus (alpaca_eval: MODEL@ANNOTATOR)")
    pr.add_argument("--strong", required=True, help="the stronger model's name as in the corpus")
    pr.add_argument("-o", "--out", required=True, help="outcome JSONL to write (id, prompt, fast, strong)")

    for name, helptext in (("fit", "fit the prior and write an artifact"), ("loso", "leave-one-source-out cold-start evaluation")):
        f = sub.add_parser(name, help=helptext)
        f.add_argument("--corpus", required=True, help="corpus JSONL from `prior corpus`")
        f.add_argument("--pairs", action="append", default=[], metavar="SOURCE=FILE",
                       help="a pair outcome table of a corpus source: `fit` fits the Platt map and threshold on them, "
                            "`loso` scores the held-out source's; repeatable")
        f.add_argument("--target", default="both", choices=["difficulty", "gain", "both"],
                       help="what the prompt predicts: item difficulty, the stronger model's gain on it, or their mean")
        f.add_argument("--alpha", type=float, help="ridge penalty (default: chosen by CV on the corpus, see --select)")
        f.add_argument("--embedding-dim", type=int,
                       help="0 (cheap features alone), 384 (sentence embedding) or 2688 (+ layer means); 256 with the static "
                            "encoder; default chosen by CV")
        f.add_argument("--select", default="source", choices=["source", "item"],
                       help="how alpha and width are chosen: holding out whole sources (default: the prior must carry to "
                            "sources it never saw) or random items; `loso` chooses again inside every fold")
        f.add_argument("--embedder", default="auto", choices=["auto", "onnx", "onnx-fp32", "torch", "hash", "static"],
                       help="the encoder the artifact will be served with (default: the gateway's MiniLM ONNX int8)")
        f.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
        f.add_argument("--quiet", action="store_true", help="no progress bars")
        if name == "fit":
            f.add_argument("-o", "--out", required=True, help="artifact directory, e.g. models/default")
            _add_target_args(f)
        else:
            f.add_argument("--compare", action="append", default=[], metavar="ARTIFACT",
                           help="also score these artifacts on each held-out table (e.g. the old default)")
            f.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws for the 95%% intervals")


def _pairs(specs: list[str]) -> dict[str, str]:
    out = {}
    for s in specs:
        src, eq, path = s.partition("=")
        if not eq or not src or not path:
            raise ValueError(f"expected SOURCE=FILE, got {s!r}")
        out[src] = path
    return out


def _run(args: argparse.Namespace) -> int:
    return {"corpus": _corpus, "pair": _pair, "fit": _fit, "loso": _loso}[args.prior_cmd](args)


def _corpus(args: argparse.Namespace) -> int:
    from calibrate.prior import corpus

    rows: list[Any] = []
    if args.alpaca_eval:
        rows += list(corpus.read_alpaca_eval(args.alpaca_eval))
    for src, path in _pairs(args.table).items():
        rows += list(corpus.read_outcome_table(path, source=src))
    for src, spec in _pairs(args.rated).items():
        parts = spec.split(":")
        path, field, text = (parts + ["problem"])[:3] if len(parts) in (2, 3) else ("", "", "")
        if not path or not field or not text:
            raise ValueError(f"expected SOURCE=FILE:FIELD[:TEXTFIELD], got {src}={spec}")
        rows += list(corpus.read_rated(path, source=src, field=field, prompt=text))
    if not rows:
        raise ValueError("nothing to read: give --alpaca-eval DIR, --table SOURCE=FILE and/or --rated SOURCE=FILE:FIELD")
    n = corpus.write(rows, args.out)
    card = corpus.card(rows)
    Path(args.out).with_suffix(".card.json").write_text(json.dumps(card, indent=1) + "\n")
    for src, c in card.items():
        what = f"{c['ratings']} ratings" if "ratings" in c else f"{c['items']} items x {c['models']} models = {c['outcomes']} outcomes"
        _err(f"{src}: {what} ({c['licence']})")
    _out(_json({"rows": n, "sources": card}))
    return 0


def _pair(args: argparse.Namespace) -> int:
    from calibrate.outcomes import OutcomeError
    from calibrate.prior import corpus

    by: dict[str, dict[str, Any]] = {}
    for r in corpus.read(args.corpus):
        if r.source == args.source and r.model in (args.fast, args.strong):
            by.setdefault(r.item, {"id": r.item, "prompt": r.prompt})["fast" if r.model == args.fast else "strong"] = r.score
    rows = [d for d in by.values() if "fast" in d and "strong" in d]
    if not rows:
        raise OutcomeError(f"no item of {args.source!r} has both {args.fast!r} and {args.strong!r}")
    with open(args.out, "w", encoding="utf-8") as fh:
        for d in rows:
            fh.write(json.dumps({**d, "source": args.source}, ensure_ascii=False) + "\n")
    _err(f"wrote {len(rows)} outcomes to {args.out}")
    return 0


def _features(args: argparse.Namespace, o: Any) -> tuple[np.ndarray, np.ndarray, str]:
    from calibrate.commands.data import featurise

    return featurise(o, args.embedder, not args.no_cache, not args.quiet)


def _items(args: argparse.Namespace) -> tuple[Any, np.ndarray, np.ndarray, str, list[Any]]:
    from calibrate.outcomes import Outcomes
    from calibrate.prior import corpus
    from calibrate.prior.fit import item_table

    rows = corpus.read(args.corpus)
    items = item_table(rows)
    _err(f"{len(rows)} outcomes -> {len(items)} items in {len(items.fits)} sources")
    o = Outcomes(items.item, items.prompt, [0.0] * len(items), [0.0] * len(items))
    E, F, enc = _features(args, o)
    return items, E, F, enc, rows


def _hyper(
    args: argparse.Namespace, items: Any, E: np.ndarray, F: np.ndarray, *, say: bool = True,
) -> tuple[float, int, list[dict[str, Any]]]:
    from calibrate.prior.select import choose

    if args.alpha is not None and args.embedding_dim is not None:
        return args.alpha, args.embedding_dim, []
    alpha, dim, grid = choose(items, E, F, target=args.target, alphas=None if args.alpha is None else (args.alpha,),
                              dims=None if args.embedding_dim is None else (args.embedding_dim,), by=args.select)
    if say:
        _err(f"chosen by {args.select}-level CV on {', '.join(sorted(set(items.source)))}: alpha {alpha:g}, "
             f"embedding width {dim}")
    return alpha, dim, grid


def _fit(args: argparse.Namespace) -> int:
    from calibrate import artifact
    from calibrate.outcomes import read as load
    from calibrate.prior import corpus
    from calibrate.prior.fit import fit_prior, platt
    from calibrate.prior.write import write_prior

    items, E, F, enc, rows = _items(args)
    alpha, dim, grid = _hyper(args, items, E, F)
    prior = fit_prior(E, F, items.target(args.target), items.source, embedding_dim=dim, alpha=alpha, target=args.target)
    pairs = _pairs(args.pairs)
    if not pairs:
        raise ValueError("fit needs at least one --pairs SOURCE=FILE to calibrate P(strong better) and the threshold")
    S, fast, strong = [], [], []
    for path in pairs.values():
        t = load(path)
        Ep, Fp, _ = _features(args, t)
        S.append(prior.scores(Ep, Fp))
        fast += list(t.fast)
        strong += list(t.strong)
    s = np.concatenate(S)
    f, st = np.asarray(fast, float), np.asarray(strong, float)
    from calibrate.metrics import needs_strong

    a, b = platt(s, needs_strong(f, st).astype(float))
    probs = 1 / (1 + np.exp(-(a * s + b)))
    table = artifact.calibration_table(probs, f, st)
    thr, rule = artifact.choose_threshold(table, **_targets(args, default_pgr=0.8))
    out = write_prior(args.out, prior, platt=(a, b), embedder_variant=enc, corpus=corpus.card(rows), grid=grid,
                      pairs=sorted(pairs), table=table, threshold=thr, rule=rule)
    _err(f"wrote {out} (threshold {thr:.4f}, {100 * rule['share']:.0f}% to the reasoning route on the pair tables)")
    _out(_json({"out": str(out), "alpha": alpha, "embedding_dim": dim, "platt": [a, b], "threshold": thr}))
    return 0


def _loso(args: argparse.Namespace) -> int:
    from calibrate.outcomes import read as load
    from calibrate.prior import loso
    from policies.difficulty import DifficultyClassifier

    items, E, F, enc, _ = _items(args)
    pairs: dict[str, dict[str, Any]] = {}
    for src, path in _pairs(args.pairs).items():
        t = load(path)
        Ep, Fp, _ = _features(args, t)
        pairs[src] = {"E": Ep, "F": Fp, "fast": t.fast, "strong": t.strong, "msgs": [t.messages(i) for i in range(len(t))]}
    others = {}
    for path in args.compare:
        clf = DifficultyClassifier.load(path, embedder_id=enc.split("@")[0])
        others[Path(path).name] = (lambda c: lambda s: c.predict_many(pairs[s]["F"], pairs[s]["E"], pairs[s]["msgs"]))(clf)
    # nested: each fold chooses alpha and width on its own training sources
    res = loso.run(items, E, F, pairs, target=args.target, others=others, draws=args.bootstrap,
                   select=lambda it, e, f: _hyper(args, it, e, f, say=False)[:2])
    for r in res:
        cols = [f"prior {r['prior']['apgr']:.3f} [{r['prior']['ci'][0]:.3f}, {r['prior']['ci'][1]:.3f}] "
                f"(alpha {r['alpha']:g}, width {r['embedding_dim']})"]
        cols += [f"{k} {r[k]['apgr']:.3f} [{r[k]['ci'][0]:.3f}, {r[k]['ci'][1]:.3f}]" for k in others]
        _out(f"held out {r['held_out']} (n={r['n']}, trained on {', '.join(r['trained_on'])}): " + "; ".join(cols))
    _out(_json({"select": args.select, "target": args.target, "results": res}))
    return 0


prior = SimpleNamespace(configure=_configure, run=_run)
