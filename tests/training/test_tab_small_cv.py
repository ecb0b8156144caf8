"""Small tables (issue 27): repeated k-fold OOF, the validation score's spread, and a tuned threshold
kept only when it beats the fold-to-fold noise; a large table keeps one partition and its tuned threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelloop.data.schema import Schema
from modelloop.data.split import make_folds
from modelloop.families.tabular.search import (
    DEFAULT_THRESHOLD, SMALL_TABLE_ROWS, SMALL_TABLE_REPEATS, SearchSettings, cv_repeats, run_search)


def _table(n: int, seed: int, signal: float) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    logit = signal * (X["a"] + 0.5 * X["b"]) - 1.0
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int), name="y")
    return X, y


def _search(tmp_path, X, y, repeats: int, metric: str = "f1_macro", **kw):
    folds = [f for r in range(repeats)
             for f in make_folds(pd.DataFrame({"y": y}), strategy="stratified", n_folds=5, seed=r, target="y")]
    settings = SearchSettings(task="binary", metric=metric, families=["linear"], budget=None, n_trials=1,
                              ensemble=False, cv_repeats=repeats, **kw)
    return run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds,
                      settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s",
                      work_dir=tmp_path / "w")


def test_repeats_follow_rows_and_budget():
    assert cv_repeats(300, 60.0) == SMALL_TABLE_REPEATS == 5  # issue 27: 5 repeats beat 3 on the small sets
    assert cv_repeats(300, None) == SMALL_TABLE_REPEATS
    assert cv_repeats(300, 12.0) == 1          # a short budget leaves no room for repeats
    assert cv_repeats(SMALL_TABLE_ROWS, 600.0) == 1


def test_small_table_oof_averages_repeats_and_reports_spread(tmp_path):
    X, y = _table(300, 0, signal=2.0)
    result = _search(tmp_path, X, y, repeats=3)
    cv = result.cv
    assert cv["repeats"] == 3 and cv["folds"] == 15 and cv["small_table"]
    assert 0 < cv["spread"] < 0.5
    # each row's OOF output is the mean over its 3 repeats: not the last repeat's alone
    oof = np.load(tmp_path / "w" / "trial_0.npy")
    single = _search(tmp_path / "one", X, y, repeats=1)
    assert not np.allclose(oof, np.load(tmp_path / "one" / "w" / "trial_0.npy"))
    assert single.cv["repeats"] == 1 and single.cv["folds"] == 5


def test_noisy_small_table_keeps_the_default_threshold_and_says_why(tmp_path):
    X, y = _table(300, 1, signal=0.0)        # labels independent of the features
    result = _search(tmp_path, X, y, repeats=3)
    th = result.cv["threshold"]
    assert th["used"] == "default" and "noise" in th["reason"] and th["gain"] <= th["noise"]
    assert result.threshold == DEFAULT_THRESHOLD == result.model.threshold_
    assert th["tuned"] != DEFAULT_THRESHOLD


def test_large_table_keeps_one_partition_and_the_tuned_threshold(tmp_path):
    X, y = _table(SMALL_TABLE_ROWS + 100, 2, signal=0.0)
    assert cv_repeats(len(X), 60.0) == 1
    result = _search(tmp_path, X, y, repeats=1)
    assert not result.cv["small_table"] and "threshold" not in result.cv
    assert result.threshold is not None and result.threshold != DEFAULT_THRESHOLD
    assert result.model.threshold_ == result.threshold


def test_train_on_a_small_table_repeats_k_fold_and_reports_spread_and_threshold(tmp_path, capsys):
    from modelloop import Project, parse_config
    from modelloop.ui import render_train

    X, y = _table(240, 1, signal=0.0)
    X.assign(y=y).to_csv(tmp_path / "d.csv", index=False)
    cfg = parse_config({"name": "small", "data": {"source": "d.csv", "target": "y"},
                        "train": {"trials": 1, "cv_folds": 3, "families": ["linear"], "budget": 60,
                                  "metric": "f1_macro"}},
                       root=tmp_path)
    project = Project(cfg)
    project.ingest()
    res = project.train()
    assert res["cv"]["repeats"] == SMALL_TABLE_REPEATS and res["cv"]["folds"] == 3 * SMALL_TABLE_REPEATS
    assert res["cv_spread"] == res["cv"]["spread"] > 0
    assert res["cv"]["threshold"]["used"] in ("default", "tuned")
    # how train.budget was spent: the search within it, choosing and refitting after it (train JSON)
    spent = res["budget"]
    assert spent["seconds"] == 60 and 0 < spent["search_seconds"] < 60 and spent["after_search_seconds"] > 0
    assert spent["trials_stopped_by_budget"] == 0
    render_train(res)
    shown = capsys.readouterr().out
    assert f"{SMALL_TABLE_REPEATS} repeats of k-fold" in shown and "threshold: " in shown
