"""The search: defaults-first trials, thresholds, ensembles, failures, budget and resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelloop.data.schema import Schema
from modelloop.errors import ConfigError, ModelloopError
from modelloop.evaluation.metrics import score
from modelloop.families.tabular.ensemble import blend, blend_estimator, caruana_weights
from modelloop.families.tabular.search import SearchSettings, run_search
from modelloop.families.tabular.threshold import tune_threshold
from modelloop.families.tabular import search as tune_module


def _cancer(n_folds: int):
    data = load_breast_cancer(as_frame=True)
    X = data.data
    y = pd.Series(np.where(data.target == 1, "benign", "malignant"))
    schema = Schema(columns={c: "numeric" for c in X.columns})
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=0).split(X, y))
    return X, y, schema, folds


@pytest.fixture(scope="module")
def cancer():
    """3 folds: what these tests check (trial order, resume, threshold, ensemble choice) does not
    depend on the fold count, and each trial fits 3 models instead of 5."""
    return _cancer(3)


@pytest.fixture(scope="module")
def cancer_5fold():
    """The tests whose situation is built from this search's outcome (which member a trial outside the
    ensemble beats, an ensemble that a limit trims at a price, a threshold within the fold noise) were
    made on 5 folds."""
    return _cancer(5)


def _search(cancer, tmp: Path, name: str = "s", storage: str | None = None, progress=None, **overrides):
    X, y, schema, folds = cancer
    calls: list = []
    settings = SearchSettings(**{"task": "binary", "metric": "f1", "budget": None, **overrides})
    result = run_search(X, y, schema=schema, folds=folds, settings=settings,
                        storage=storage or f"sqlite:///{tmp / 'optuna.db'}", study_name=name,
                        work_dir=tmp / name, on_trial=calls.append, progress=progress)
    return result, calls


# --------------------------------------------------------------------------- threshold
@pytest.mark.parametrize("metric", ["f1", "f1_macro", "f1_weighted"])
def test_tune_threshold_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(int)
    p1 = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1).round(2)   # rounding creates ties
    threshold, best = tune_threshold(y, p1, metric)
    brute = max(score(metric, y, np.c_[1 - p1, p1], threshold=t) for t in np.r_[np.unique(p1), 1.01])
    assert best == pytest.approx(brute)
    assert score(metric, y, np.c_[1 - p1, p1], threshold=threshold) == pytest.approx(best)


def test_tune_threshold_rejects_other_metrics():
    with pytest.raises(ConfigError, match="threshold tuning supports"):
        tune_threshold(np.array([0, 1]), np.array([0.2, 0.8]), "roc_auc")


# --------------------------------------------------------------------------- ensemble selection
def test_caruana_weights_sum_to_one_and_beat_members():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=500)
    members = [truth + rng.normal(scale=1.0, size=500) for _ in range(3)]   # independent errors
    rmse = lambda out: float(np.sqrt(np.mean((out - truth) ** 2)))         # noqa: E731
    weights, value = caruana_weights(members, rmse, maximize=False)
    assert weights.sum() == pytest.approx(1.0) and (weights > 0).sum() >= 2
    assert value < min(rmse(m) for m in members)
    assert value == pytest.approx(rmse(blend(members, weights)))
    same, _ = caruana_weights([members[0], members[0]], rmse, maximize=False)
    assert (same > 0).sum() == 1


def test_blend_estimator_is_the_weighted_average(cancer):
    X, y, _, _ = cancer
    yi = (y == "malignant").to_numpy().astype(int)
    fitted = [Pipeline([("s", StandardScaler()), ("m", LogisticRegression(C=c))]).fit(X, yi)
              for c in (0.01, 1.0)]
    est = blend_estimator(fitted, [0.25, 0.75], task="binary", n_classes=2)
    expected = 0.25 * fitted[0].predict_proba(X) + 0.75 * fitted[1].predict_proba(X)
    np.testing.assert_allclose(est.predict_proba(X), expected)


# --------------------------------------------------------------------------- run_search
def test_search_never_worse_than_defaults_and_tunes_threshold(cancer, tmp_path):
    ticks: list = []
    result, calls = _search(cancer, tmp_path, n_trials=8, ensemble=False,
                            progress=lambda n, s: ticks.append((n, s)))
    trials = {t.number: t for t in result.trials}
    assert len(result.trials) == len(calls) == 8 and result.resumed_trials == 0
    assert [trials[i].family for i in range(3)] == ["lightgbm", "xgboost", "linear"]
    assert trials[0].params["num_leaves"] == 31 and trials[0].best_iteration > 0
    assert result.validation_score >= trials[0].value
    # 569 rows: a small table, where the tuned threshold is kept only when it beats the default by more
    # than the fold-to-fold noise (test_tab_small_cv); here it does not, and the score is the default's
    th = result.cv["threshold"]
    assert th["used"] == "default" and result.threshold == th["default"] == 0.5
    assert result.validation_score <= result.best_single.value and 0 < th["tuned"] < 1
    assert result.model.threshold_ == result.threshold
    assert {t.state for t in result.trials} <= {"complete", "pruned"}
    for t in result.trials:
        assert (tmp_path / "s" / f"trial_{t.number}.npy").exists() == (t.state == "complete")
    X, y, _, _ = cancer
    assert (result.model.predict(X) == y.to_numpy()).mean() > 0.95
    assert set(result.model.predict(X)) == {"benign", "malignant"}
    assert [n for n, _ in ticks] == list(range(1, 9)) and ticks[-1][1] > ticks[0][1] > 0


def test_ensemble_kept_when_better(cancer, tmp_path):
    # stack=False: here a level-2 stack beats the blend in turn (tests/training/test_tab_stack.py)
    result, _ = _search(cancer, tmp_path, metric="log_loss", families=["lightgbm", "linear"], n_trials=5,
                        stack=False)
    ens = result.ensemble
    assert ens is not None and ens["kept"] and len(ens["members"]) >= 2
    assert sum(ens["weights"]) == pytest.approx(1.0)
    assert ens["score"] < result.best_single.value                 # log_loss: lower is better
    assert result.validation_score == pytest.approx(ens["score"])
    assert result.threshold is None                                # not an F1-type metric
    est = result.model.estimator_
    assert isinstance(est, VotingClassifier) and len(est.estimators_) == len(ens["members"])
    assert result.model.describe()["members"] == ens["members"]
    X, _, _, _ = cancer
    assert result.model.predict_proba(X).shape == (len(X), 2)


def test_ensemble_not_kept_when_not_better(cancer_5fold, tmp_path):
    result, _ = _search(cancer_5fold, tmp_path, families=["linear"], n_trials=3, ensemble_size=1)
    assert result.ensemble is not None and result.ensemble["kept"] is False
    assert isinstance(result.model.estimator_, Pipeline)
    assert result.validation_score == pytest.approx(result.best_single.value)


def test_regression_search_and_warm_start(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "c": rng.choice(["u", "v"], 300)})
    y = pd.Series(2 * X["a"] + (X["c"] == "u") + rng.normal(scale=0.1, size=300))
    schema = Schema(columns={"a": "numeric", "c": "categorical"})
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    settings = SearchSettings(task="regression", metric="rmse", families=["lightgbm", "linear"],
                              n_trials=3, budget=None)
    result = run_search(X, y, schema=schema, folds=folds, settings=settings,
                        storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="r", work_dir=tmp_path / "w",
                        warm_start=[{"family": "lightgbm", "num_leaves": 7, "n_estimators": 5}])
    assert result.threshold is None and result.direction == "minimize"
    assert result.trials[2].params["num_leaves"] == 7          # warm start runs right after defaults
    assert result.validation_score < 0.5
    assert result.model.predict(X).shape == (300,)


def test_failed_trials_are_recorded_and_search_goes_on(cancer, tmp_path):
    X, y, schema, folds = cancer
    settings = SearchSettings(task="binary", metric="f1", families=["xgboost"], n_trials=2, budget=None,
                              ensemble=False)
    result = run_search(X, y, schema=schema, folds=folds[:2], settings=settings,
                        storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="f", work_dir=tmp_path / "w",
                        warm_start=[{"family": "xgboost", "max_depth": -3}])
    failed = [t for t in result.trials if t.state == "failed"]
    assert len(failed) == 1 and "max_depth" in failed[0].error and failed[0].value is None
    assert result.best_single.state == "complete"


def test_no_completed_trial_raises_with_first_error(cancer, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom in fit")

    monkeypatch.setattr(tune_module, "fit_estimator", broken)
    with pytest.raises(ModelloopError, match="no trial completed; first error: RuntimeError: boom in fit"):
        _search(cancer, tmp_path, families=["linear"], n_trials=2)


def test_budget_spans_resumed_runs(cancer, tmp_path):
    first, calls = _search(cancer, tmp_path, families=["linear"], budget=1.0, ensemble=False)
    assert calls
    again, calls = _search(cancer, tmp_path, families=["linear"], budget=1.0, ensemble=False)
    assert calls == [] and again.resumed_trials == len(first.trials)


def test_lost_oof_files_are_recomputed_on_resume(cancer, tmp_path):
    first, _ = _search(cancer, tmp_path, families=["linear"], n_trials=2)
    for npy in (tmp_path / "s").glob("trial_*.npy"):
        npy.unlink()
    again, calls = _search(cancer, tmp_path, families=["linear"], n_trials=2)
    assert calls == [] and again.validation_score == pytest.approx(first.validation_score)
    assert (tmp_path / "s" / f"trial_{again.best_single.number}.npy").exists()


def _family_cost(family: str) -> float:
    return 1.0 if family == "lightgbm" else 0.1


def _cost(model) -> tuple[float, str]:
    """A served latency that depends only on the model: 1 ms per LightGBM member, 0.1 per linear one."""
    return sum(_family_cost(f) for f in model.describe()["families"]), "cost model"


def test_max_latency_keeps_the_best_model_within_the_limit(cancer, tmp_path):
    result, calls = _search(cancer, tmp_path, metric="log_loss", families=["lightgbm", "linear"], n_trials=6,
                            max_latency_ms=0.5, latency_fn=_cost)
    lat = result.latency
    assert lat["met"] is True and lat["limit_ms"] == 0.5 and lat["latency_ms"] == pytest.approx(0.1)
    # the OOF choice (the ensemble) was timed first and refused, then single trials in OOF order
    assert len(lat["tried"][0]["members"]) >= 2 and lat["tried"][0]["latency_ms"] > 0.5
    assert result.ensemble["kept"] is False and result.ensemble["reason"] == "over train.max_latency_ms"
    assert result.model.describe()["families"] == ["linear"]
    linear = sorted((c for c in calls if c.family == "linear" and c.state == "complete"), key=lambda c: c.value)
    assert result.model.describe()["members"] == [linear[0].number]     # the best linear trial
    assert result.validation_score == pytest.approx(linear[0].value)
    # the ensemble's members were timed alone without a refit; after one LightGBM model was too slow,
    # no larger LightGBM trial was refitted to find out again
    kinds = [t["kind"] for t in lat["tried"]]
    assert kinds[0] == "choice" and kinds.count("member") == len(lat["tried"][0]["members"])
    refitted_lgbm = [t for t in lat["tried"] if t["kind"] == "trial" and t["families"] == ["lightgbm"]]
    assert len(refitted_lgbm) <= 1 and kinds.count("trial") <= tune_module.MAX_LATENCY_TRIES


def test_max_latency_trims_an_ensemble_before_falling_back_to_one_model(cancer_5fold, tmp_path):
    free, _ = _search(cancer_5fold, tmp_path, families=["lightgbm", "linear"], n_trials=10,
                      max_latency_ms=1e6, latency_fn=_cost)
    members = free.ensemble["members"]
    cost = {n: _family_cost(f) for n, f in zip(members, free.model.describe()["families"], strict=True)}
    assert len(members) >= 3
    limit = sum(cost.values()) - min(cost.values()) / 2   # the whole ensemble is over, a smaller set fits
    trimmed, calls = _search(cancer_5fold, tmp_path, families=["lightgbm", "linear"], n_trials=10,
                             max_latency_ms=limit, latency_fn=_cost)   # the same study: nothing retrained
    lat = trimmed.latency
    assert calls == [] and lat["met"] is True and lat["tried"][0]["latency_ms"] > limit
    chosen = trimmed.model.describe()
    assert len(chosen["members"]) >= 2 and set(chosen["members"]) < set(members)
    assert lat["latency_ms"] <= limit and lat["tried"][-1]["kind"] == "members"
    # better on OOF than any one model within the limit, which is what falling back would have kept
    singles = [t for t in free.trials if t.state == "complete" and _family_cost(t.family) <= limit]
    assert trimmed.validation_score >= max(t.value for t in singles)
    assert trimmed.validation_score < free.validation_score      # the price of the limit, on OOF
    assert trimmed.ensemble["kept"] is True


def test_max_latency_without_refits_left_still_takes_the_best_member_within_the_limit(cancer_5fold, tmp_path,
                                                                                      monkeypatch):
    """Out of refits, a trial that would need one is passed over, not the end of the walk: the best
    member within the limit further down is kept, not the fastest model timed so far."""
    free, _ = _search(cancer_5fold, tmp_path, metric="log_loss", families=["lightgbm", "linear", "xgboost"], n_trials=10,
                      max_latency_ms=1e6, latency_fn=_cost)
    members = free.ensemble["members"]
    score = {t.number: t.value for t in free.trials if t.state == "complete"}
    outsiders = [n for n in score if n not in members]
    # a member that a trial outside the ensemble beats on OOF (log loss: lower is better), and a
    # worse member that is faster than it: the walk meets the outsider before the first of the two
    keep = next(m for m in sorted(members, key=score.get) if any(score[o] < score[m] for o in outsiders))
    faster = next(m for m in members if score[m] > score[keep])
    ms = {keep: 0.4, faster: 0.2}                     # each within 0.5 alone, the two together over

    def cost(model):
        return sum(ms.get(n, 1.0) for n in model.describe()["members"]), "cost model"

    monkeypatch.setattr(tune_module, "MAX_LATENCY_TRIES", 0)
    result, calls = _search(cancer_5fold, tmp_path, metric="log_loss", families=["lightgbm", "linear", "xgboost"], n_trials=10,
                            max_latency_ms=0.5, latency_fn=cost)        # the same study: nothing retrained
    lat = result.latency
    assert calls == [] and "trial" not in {t["kind"] for t in lat["tried"]}      # nothing refitted
    assert lat["met"] is True and result.model.describe()["members"] == [keep]
    assert lat["latency_ms"] == pytest.approx(0.4)     # not the fastest timed (0.2): the better of the two


def test_max_latency_that_nothing_meets_keeps_the_fastest_and_says_so(cancer, tmp_path):
    result, _ = _search(cancer, tmp_path, metric="log_loss", families=["lightgbm"], n_trials=3,
                        max_latency_ms=0.01, latency_fn=_cost)
    lat = result.latency
    assert lat["met"] is False and lat["latency_ms"] == min(t["latency_ms"] for t in lat["tried"])
    assert result.model.describe()["families"] == ["lightgbm"]


def test_bad_settings_are_config_errors(cancer, tmp_path):
    with pytest.raises(ConfigError, match="budget or n_trials"):
        _search(cancer, tmp_path, n_trials=None, budget=None)
    with pytest.raises(ConfigError, match="families"):
        _search(cancer, tmp_path, families=["randomforest"], n_trials=1)
    with pytest.raises(ConfigError, match="max_latency_ms"):
        _search(cancer, tmp_path, n_trials=1, max_latency_ms=0)


# --------------------------------------------------------------------------- resume
def test_resume_runs_only_the_missing_trials(cancer, tmp_path, store_url):
    first, calls = _search(cancer, tmp_path, storage=store_url, families=["lightgbm", "linear"],
                           n_trials=4, ensemble=False)
    assert len(calls) == 4
    second, calls = _search(cancer, tmp_path, storage=store_url, families=["lightgbm", "linear"],
                            n_trials=6, ensemble=False)
    assert len(calls) == 2 and [c.number for c in calls] == [4, 5]
    assert second.resumed_trials == 4 and len(second.trials) == 6
    with pytest.raises(ConfigError, match="started with other data or settings"):
        _search(cancer, tmp_path, storage=store_url, families=["lightgbm", "linear"], metric="accuracy",
                n_trials=7)


def test_keyboard_interrupt_leaves_a_resumable_study(cancer, tmp_path, monkeypatch):
    real = tune_module._cross_validate

    def interrupt_second(family, params, data, settings, trial=None, deadline=np.inf):
        if trial is not None and trial.number == 1:
            raise KeyboardInterrupt
        return real(family, params, data, settings, trial, deadline)

    monkeypatch.setattr(tune_module, "_cross_validate", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        _search(cancer, tmp_path, families=["lightgbm", "linear"], n_trials=3, ensemble=False)
    monkeypatch.setattr(tune_module, "_cross_validate", real)
    result, calls = _search(cancer, tmp_path, families=["lightgbm", "linear"], n_trials=3, ensemble=False)
    assert result.resumed_trials == 1 and len(calls) == 2
    assert calls[0].family == "linear" and calls[0].params == {"C": 1.0}  # the interrupted default


_KILLED_SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold
from modelloop.data.schema import Schema
from modelloop.families.tabular.search import SearchSettings, run_search
from modelloop.families.tabular import search as tune

tmp, marker = Path(sys.argv[1]), Path(sys.argv[2])
real = tune._cross_validate

def stall_on_third(family, params, data, settings, trial=None, deadline=np.inf):
    if trial is not None and trial.number == 2:
        marker.write_text("running")
        time.sleep(120)
    return real(family, params, data, settings, trial, deadline)

tune._cross_validate = stall_on_third
data = load_breast_cancer(as_frame=True)
X, y = data.data, pd.Series(np.where(data.target == 1, "benign", "malignant"))
folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds,
           settings=SearchSettings(task="binary", metric="f1", budget=None, n_trials=10),
           storage=f"sqlite:///{tmp / 'optuna.db'}", study_name="s", work_dir=tmp / "s")
"""


def test_resume_after_sigkill_reuses_finished_trials(cancer, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(_KILLED_SCRIPT))
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(marker)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the search in the subprocess never reached trial 2"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "RUNNING"]

    result, calls = _search(cancer, tmp_path, n_trials=4, ensemble=False)
    assert result.resumed_trials == 2
    assert [c.number for c in calls] == [3, 4]                     # 0 and 1 were not re-run
    assert calls[0].family == "linear" and calls[0].params == {"C": 1.0}   # the killed default, again
    assert [t.number for t in result.trials] == [0, 1, 3, 4]
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials[2].state \
        == optuna.trial.TrialState.FAIL
