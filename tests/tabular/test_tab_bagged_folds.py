"""A binary search with a tuned threshold on a table of SMALL_TABLE_ROWS rows or more serves its chosen
members' fold models (the ones whose out-of-fold output the threshold was tuned on) instead of refits
(issue 27); fold models are kept for the best ensemble_size trials only; other searches still refit."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import VotingClassifier
from sklearn.pipeline import Pipeline

from modelloop.data.schema import Schema
from modelloop.data.split import make_folds
from modelloop.families.tabular.export import check_onnx, to_onnx
from modelloop.families.tabular.search import SMALL_TABLE_ROWS, SearchSettings, run_search
from modelloop.serving.runtime import ONNX_ATOL

ROWS = SMALL_TABLE_ROWS + 400


def _table(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"x{i}": rng.normal(size=ROWS) for i in range(5)})
    X["c"] = rng.choice(["a", "b", "c"], size=ROWS)
    logit = 1.5 * X["x0"] - X["x1"] * X["x2"] + (X["c"] == "a") - 3.0
    return X, pd.Series((rng.random(ROWS) < 1 / (1 + np.exp(-logit))).astype(int), name="y")


def _search(tmp_path, X, y, metric: str, **kw):
    folds = make_folds(pd.DataFrame({"y": y}), strategy="stratified", n_folds=3, seed=0, target="y")
    settings = SearchSettings(task="binary", metric=metric, families=["lightgbm", "linear"], budget=None,
                              n_trials=3, stack=False, **kw)
    schema = Schema(columns={**{c: "numeric" for c in X.columns if c != "c"}, "c": "categorical"})
    return run_search(X, y, schema=schema, folds=folds, settings=settings,
                      storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s", work_dir=tmp_path / "w")


def test_a_tuned_threshold_on_a_large_table_is_served_with_the_fold_models_it_was_tuned_on(tmp_path) -> None:
    X, y = _table()
    result = _search(tmp_path, X, y, "f1_macro", ensemble_size=2)
    model = result.model
    bagged = model.describe()["bagged"]
    chosen = bagged["members"]
    assert model.family == "ensemble" and isinstance(model.estimator_, VotingClassifier)
    assert len(model.estimator_.estimators_) == 3 * len(chosen)  # 3 folds per chosen member
    assert np.isclose(sum(model.describe()["weights"]), 1.0) and result.threshold == model.threshold_
    # the served scores are the weighted mean of the chosen members' fold pipelines
    prepared = model._prepare(X.iloc[:200])
    pipes, weights = model.estimator_.estimators_, np.asarray(model.describe()["weights"])
    mean = sum(w * p.predict_proba(prepared)[:, 1] for w, p in zip(weights, pipes, strict=True)) / weights.sum()
    assert np.allclose(model.predict_proba(X.iloc[:200])[:, 1], mean)
    # boosted fold models are cut to their best round: the ONNX graph scores as the model does
    assert check_onnx(model, to_onnx(model), X.iloc[:300]) <= ONNX_ATOL
    # only the best ensemble_size trials keep their fold models on disk
    kept = sorted((tmp_path / "w").glob("trial_*.folds.joblib"))
    assert len(kept) == 2 and {int(p.name.split("_")[1].split(".")[0]) for p in kept} >= set(chosen)


def test_without_a_tuned_threshold_the_chosen_model_is_refitted_and_no_fold_models_are_kept(tmp_path) -> None:
    X, y = _table(1)
    result = _search(tmp_path, X, y, "roc_auc")
    assert "bagged" not in result.model.describe()
    assert not list((tmp_path / "w").glob("trial_*.folds.joblib"))
    estimator = result.model.estimator_
    pipes = estimator.estimators_ if isinstance(estimator, VotingClassifier) else [estimator]
    assert all(isinstance(p, Pipeline) for p in pipes) and len(pipes) == len(result.model.describe()["members"])
