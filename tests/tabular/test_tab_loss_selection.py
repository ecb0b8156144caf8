"""Small multiclass tables (issue 27): with an F1-type metric the served trial and the greedy blend are
chosen on the out-of-fold log-loss (no stack), and the metric decides only at the end; other searches keep choosing on
the metric. Without this the search served the trial with the best OOF macro-F1, a few hundred rows' noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, log_loss

from modelloop.data.schema import Schema
from modelloop.data.split import make_folds
from modelloop.families.tabular import search as S
from modelloop.families.tabular.ensemble import ClassScaledClassifier
from modelloop.families.tabular.model import multiclass_weights, prepare_features
from modelloop.families.tabular.search import SMALL_TABLE_ROWS, SearchSettings, run_search


def _table(n: int, seed: int, classes: int = 4) -> tuple[pd.DataFrame, pd.Series]:
    """A noisy multiclass table: levels cut from a linear score plus noise (shares 15/25/35/25 %)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"x{i}" for i in range(5)])
    z = X["x0"] + 0.6 * X["x1"] - 0.4 * X["x2"] * X["x3"] + rng.normal(0, 1.2, n)
    cuts = np.quantile(z, np.cumsum([0.15, 0.25, 0.35, 0.25][:classes - 1]))
    return X, pd.Series(np.searchsorted(cuts, z), name="y").map(lambda v: f"level{v}")


def _search(tmp_path, X, y, *, metric: str = "f1_macro", task: str = "multiclass", stack: bool = True,
            n_trials: int = 10):
    folds = [f for r in range(3)
             for f in make_folds(pd.DataFrame({"y": y}), strategy="stratified", n_folds=5, seed=r, target="y")]
    settings = SearchSettings(task=task, metric=metric, families=["lightgbm", "linear"], budget=None,
                              n_trials=n_trials, stack=stack, cv_repeats=3)
    result = run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds,
                        settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s",
                        work_dir=tmp_path / "w")
    return result


def _prior(idx: np.ndarray) -> np.ndarray:
    """The decision scale the search should use: the tempered class weights, largest 1."""
    w = multiclass_weights(idx)
    return w / w.max()


def _losses(tmp_path, result, y) -> dict[int, float]:
    idx = pd.factorize(y, sort=True)[0]
    out = {}
    for r in result.trials:
        if r.state == "complete":
            oof = np.load(tmp_path / "w" / f"trial_{r.number}.npy")
            out[r.number] = log_loss(idx, np.clip(oof, 1e-15, 1) / np.clip(oof, 1e-15, 1).sum(1, keepdims=True),
                                     labels=list(range(oof.shape[1])))
    return out


def test_small_multiclass_f1_search_chooses_on_oof_log_loss(tmp_path):
    X, y = _table(500, 3)
    result = _search(tmp_path, X, y)
    losses = _losses(tmp_path, result, y)
    complete = [r for r in result.trials if r.state == "complete"]
    by_f1 = max(complete, key=lambda r: (r.value, -r.number))
    by_loss = min(losses, key=lambda n: (losses[n], n))
    assert by_f1.number != by_loss          # the two rules disagree on this table, so the test can tell them apart
    assert result.best_single.number == by_loss
    ens = result.ensemble
    assert ens["selected_by"] == "log_loss" and ens["to_beat"] == pytest.approx(losses[by_loss])
    # the blend is kept only for a lower OOF log-loss than the best single trial's, and scored on the metric
    assert ens["kept"] == (ens["log_loss"] < losses[by_loss] and len(ens["members"]) > 1)
    idx = pd.factorize(y, sort=True)[0]
    oofs = [np.load(tmp_path / "w" / f"trial_{n}.npy") for n in ens["members"]]
    blended = np.average(np.stack(oofs), axis=0, weights=ens["weights"])
    assert ens["log_loss"] == pytest.approx(log_loss(idx, blended, labels=list(range(4))), rel=1e-6)
    prior = _prior(idx)
    assert ens["score"] == pytest.approx(f1_score(idx, (blended * prior).argmax(1), average="macro"))
    # greedy candidates reach past train.ensemble_size (5) on the log-loss ranking
    ranked = sorted(losses, key=lambda n: (losses[n], n))
    assert set(ens["members"]) <= set(ranked[: 5 * S.LOSS_SELECTION_DEPTH])
    assert not ens["stack"]["kept"] and ens["stack"]["reason"] == S.STACK_NOT_BY_LOSS
    assert result.model.family != "stacked"
    # the metric still decides: the validation score is a macro-F1 of the chosen model's OOF output
    assert 0.0 < result.validation_score < 1.0 and result.metric == "f1_macro"


def test_other_searches_keep_choosing_on_the_metric(tmp_path):
    X, y = _table(500, 3)
    result = _search(tmp_path, X, y, metric="accuracy", stack=False)
    complete = [r for r in result.trials if r.state == "complete"]
    assert result.best_single.number == max(complete, key=lambda r: (r.value, -r.number)).number
    assert "selected_by" not in (result.ensemble or {})


@pytest.mark.parametrize(("task", "metric", "rows", "by_loss"), [
    ("multiclass", "f1_macro", SMALL_TABLE_ROWS - 1, True),
    ("multiclass", "f1_weighted", 300, True),
    ("multiclass", "f1_macro", SMALL_TABLE_ROWS, False),   # a large table: its metric is not that noisy
    ("multiclass", "accuracy", 300, False),
    ("binary", "f1_macro", 300, False),                    # its tuned threshold is reviewed on its own
])
def test_which_searches_choose_on_log_loss(task, metric, rows, by_loss):
    data = S._Data(X=pd.DataFrame(), y=np.zeros(rows, dtype=int), classes=None, folds=[],
                   eval_idx=np.arange(rows), fit_idx=np.arange(rows), numeric=[], categorical=[],
                   schema=Schema(columns={}))
    assert S._selection(data, SearchSettings(task=task, metric=metric)).by_loss is by_loss


def test_small_multiclass_fits_unweighted_and_decides_with_the_class_weights(tmp_path, monkeypatch):
    """The tempered class weights become a decision (probabilities times the weights, then the argmax) on
    the tables that choose on the log-loss: every fit is unweighted, the trial values and the served model
    decide with the weights; other searches keep fitting with them."""
    seen: list[str] = []
    real = S.fit_estimator

    def spy(*args, **kwargs):
        seen.append(kwargs["class_weight"])
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "fit_estimator", spy)
    X, y = _table(500, 3)
    result = _search(tmp_path, X, y, n_trials=4)
    assert seen and set(seen) == {"none"}
    idx = pd.factorize(y, sort=True)[0]
    prior = _prior(idx)
    for r in result.trials:
        if r.state == "complete":
            oof = np.load(tmp_path / "w" / f"trial_{r.number}.npy")
            assert r.value == pytest.approx(f1_score(idx, (oof * prior).argmax(1), average="macro"))
    scaled = result.model.estimator_
    assert isinstance(scaled, ClassScaledClassifier)
    decision = result.cv["class_scale"]
    assert decision["prior"] == pytest.approx(list(prior))
    expected = prior if decision["used"] == "argmax" else prior * decision["scale"] / (prior * decision["scale"]).max()
    assert scaled.scale_ == pytest.approx(expected)
    # the served labels are the argmax of the unweighted members' probabilities times that scale
    inner = scaled.estimators_[0].predict_proba(prepare_features(X, Schema(columns={c: "numeric" for c in X})))
    assert np.array_equal(np.asarray(sorted(set(y)))[(inner * expected).argmax(1)], result.model.predict(X))

    seen.clear()
    _search(tmp_path / "acc", X, y, metric="accuracy", stack=False, n_trials=2)
    assert set(seen) == {"balanced"}
