"""``train.budget`` bounds every tabular trial, the first included: on a table where one trial takes far
longer than the budget, the search (one process, and ``train.parallel: 2``) ends near the budget with a
usable model, its boosting stopped at the deadline with the rounds fitted so far."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from modelloop.data.schema import Schema
from modelloop.families.tabular.model import DEADLINE_MIN_ROUNDS, build_estimator, fit_estimator
from modelloop.families.tabular.search import MAX_ROUNDS, SearchSettings, run_search
from modelloop.evaluation.metrics import score

BUDGET = 3.0
SLACK = 6.0  # opening the study, the refit on all rows, a loaded machine
START = 10.0  # train.parallel: the workers' start (the fork server's imports, 4-9 s at load 5) is spent from the budget too


@pytest.fixture(scope="module")
def slow_table():
    """20,000 rows whose signal LightGBM keeps learning for hundreds of rounds: its default trial (1,000
    rounds, early stopping 50) took about 50 s over 5 folds unbounded (one fold: 885 rounds, 9.7 s at
    load 4); bounded, the search ends about 2 s after the budget."""
    rng = np.random.default_rng(0)
    n, d = 20000, 20
    X = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"x{i}" for i in range(d)])
    z = (np.sin(3 * X.x0) + X.x1 * X.x2 + np.cos(2 * X.x3) * X.x4 + 0.5 * X.x5 ** 2
         + 0.3 * X.iloc[:, 6:].sum(axis=1))
    y = pd.Series(np.where(z + rng.normal(scale=0.3, size=n) > np.median(z), "yes", "no"))
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    return X, y, Schema(columns={c: "numeric" for c in X.columns}), folds


def _search(table, tmp_path, **overrides):
    X, y, schema, folds = table
    settings = SearchSettings(**{"task": "binary", "metric": "roc_auc", "budget": BUDGET, "families": ["lightgbm"],
                                 "ensemble": False, **overrides})
    t0 = time.monotonic()
    result = run_search(X, y, schema=schema, folds=folds, settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}",
                        study_name="b", work_dir=tmp_path / "w")
    return result, time.monotonic() - t0


def _assert_bounded_and_usable(table, result, seconds, slack):
    X, y, _, _ = table
    assert seconds < BUDGET + slack, f"the search took {seconds:.1f} s on a {BUDGET} s budget"
    first = min(result.trials, key=lambda r: r.number)
    assert first.state == "complete" and first.stopped_by_budget       # cut, and still a result
    assert 1 <= first.best_iteration < MAX_ROUNDS
    assert result.seconds is not None and result.seconds["search"] < BUDGET + slack
    proba = result.model.predict_proba(X)[:, 1]
    assert result.validation_score > 0.75                               # chance is 0.5
    assert score("roc_auc", (y == "yes").to_numpy().astype(int), np.c_[1 - proba, proba]) > 0.75


def test_a_boosting_fit_stops_at_its_deadline_with_the_rounds_so_far(slow_table):
    X, y, schema, folds = slow_table
    tr, va = folds[0]
    target = (y == "yes").to_numpy().astype(int)
    for family in ("lightgbm", "xgboost", "catboost"):
        pipe = build_estimator(family, {"n_estimators": MAX_ROUNDS}, task="binary", numeric_cols=list(X.columns),
                               categorical_cols=[])
        t0 = time.monotonic()
        best = fit_estimator(pipe, X.iloc[tr], target[tr], task="binary", valid=(X.iloc[va], target[va]),
                             deadline=t0 + 0.5)
        assert time.monotonic() - t0 < 0.5 + 2.0, family
        assert best is not None and 1 <= best < MAX_ROUNDS, family   # the best of the rounds it reached
        assert pipe.predict_proba(X.iloc[va]).shape == (len(va), 2)
    # past its deadline already: the fit keeps DEADLINE_MIN_ROUNDS rounds (one round is no model)
    pipe = build_estimator("lightgbm", {"n_estimators": MAX_ROUNDS}, task="binary", numeric_cols=list(X.columns),
                           categorical_cols=[])
    fit_estimator(pipe, X.iloc[tr], target[tr], task="binary", deadline=time.monotonic() - 1.0)
    assert pipe.named_steps["model"].booster_.num_trees() == DEADLINE_MIN_ROUNDS


def test_the_first_tabular_trial_ends_near_the_budget_with_a_usable_model(slow_table, tmp_path):
    result, seconds = _search(slow_table, tmp_path)
    _assert_bounded_and_usable(slow_table, result, seconds, SLACK)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="train.parallel: 2 needs 2 CPUs")
def test_the_first_trials_of_a_parallel_search_end_near_the_budget_with_a_usable_model(slow_table, tmp_path):
    result, seconds = _search(slow_table, tmp_path, parallel=2)
    _assert_bounded_and_usable(slow_table, result, seconds, SLACK + START)
