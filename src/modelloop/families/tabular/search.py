"""Hyper-parameter search for tabular models: Optuna over LightGBM, XGBoost, CatBoost and linear models.

One call, :func:`run_search`, goes from a raw frame and its folds to a fitted
:class:`~modelloop.families.tabular.model.TabularModel`:

1. each trial picks a family and its parameters (TPE, seeded, multivariate over a conditional
   space), fits one model per fold (boosting stops early on the fold's valid part), reports the
   running mean fold score so a ``MedianPruner`` can stop hopeless trials, and saves its
   out-of-fold (OOF) predictions to ``work_dir/trial_{number}.npy``;
2. the first trials are each family's library defaults and the caller's ``warm_start`` sets, so the
   result is never worse on validation than the defaults;
3. after the search, the best trial and a greedy ensemble of the top trials are compared on OOF
   predictions (with a tuned threshold for binary F1-type metrics); the winner is refitted on all rows,
   or, when that threshold is tuned on a table of ``SMALL_TABLE_ROWS`` or more, served as its members'
   fold models, the ones that produced the OOF output the threshold was tuned on (``_bags``).

**Trial value** = the metric on the pooled OOF predictions (with the trial's own tuned threshold when
threshold tuning applies), so trial values, the ensemble score and ``validation_score`` compare
like with like.

**Resume.** The study lives in ``storage`` under ``study_name``. Calling again with the same
arguments reuses every finished trial; the budget and ``n_trials`` count finished trials of all
runs. ``run_search`` assumes it is the only search working on its study: trials left RUNNING (by a
killed process) are marked failed on start and their parameters queued again (the shared driver,
:mod:`.search`). With ``parallel`` > 1 its own worker processes share the study
(:mod:`modelloop.training.parallel`). Those, and trials interrupted by ``KeyboardInterrupt``, do not count as finished.

**The budget bounds every trial**, the first included (the shared driver gives each the deadline):
each fold's boosting stops at its share of the time left (``_fold_deadline``: the folds still to fit
share it equally), keeping the rounds fitted so far, so a trial that cannot finish in time still ends
near the deadline with out-of-fold output for every row and is scored like any other. A linear model
cannot stop inside a fit; it is checked between folds, and a trial past the deadline there is pruned
once some trial has completed. While none has, one trial runs even past a spent budget (a search ends
with a model; each fold then keeps ``DEADLINE_MIN_ROUNDS`` rounds). Choosing the ensemble or stack
and the final refit on all rows come after the budget (``SearchResult.seconds`` says how long).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from sklearn.pipeline import Pipeline

from ...data.schema import Schema
from ...errors import ConfigError, DataError, ModelloopError, cap_list, shown_number
from ...evaluation.metrics import F1_TYPE, direction, score
from ..heads import KINDS
from .model import (
    FAMILIES,
    TASKS,
    TabularModel,
    build_estimator,
    encode_labels,
    fit_estimator,
    prepare_features,
    prepared_columns,
)
from .ensemble import (blend, blend_estimator, caruana_weights, class_scaled, level2_model, stack_estimator,
                       stack_features)
from ...training.parallel import parallel_search_loop
from ...training.search import (
    STATE_NAMES,
    SearchResult,
    TrialRecord,
    completed,
    finished,
    open_study,
    search_loop,
)
from .threshold import apply_class_scale, f1_of_labels, tune_class_scale, tune_threshold

__all__ = ["DEFAULT_PARAMS", "SearchResult", "SearchSettings", "TrialRecord", "run_search", "suggest_params"]

SMALL_TABLE_ROWS = 2000   # below this many training rows: repeated k-fold and a regularised threshold
SMALL_TABLE_REPEATS = 5   # repeats of k-fold on a small table (when the budget allows: cv_repeats)
MIN_BUDGET_PER_REPEAT = 10.0  # seconds of train.budget each repeat needs to leave room for trials
DEFAULT_THRESHOLD = 0.5   # the untuned binary decision (argmax of two classes)
MAX_ROUNDS = 1000          # boosting rounds cap; early stopping picks the real number per fold
EARLY_STOPPING_ROUNDS = 50
_PREFIX = {"lightgbm": "lgb_", "xgboost": "xgb_", "linear": "linear_", "catboost": "cb_"}
# Each family's library defaults, in search-space names (first trials of every search).
# LightGBM's reg_lambda default is 0; 1e-8 is the bottom of its log range and equivalent.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "lightgbm": {"num_leaves": 31, "learning_rate": 0.1, "min_child_samples": 20, "subsample": 1.0,
                 "colsample_bytree": 1.0, "reg_lambda": 1e-8},
    "xgboost": {"max_depth": 6, "learning_rate": 0.3, "min_child_weight": 1.0, "subsample": 1.0,
                "colsample_bytree": 1.0, "reg_lambda": 1.0},
    "linear": {"C": 1.0},
    # CatBoost picks its learning rate from the data when none is given; 0.05 is about what it picks for
    # 1,000 rounds on a few thousand rows (early stopping sets the rounds)
    "catboost": {"depth": 6, "learning_rate": 0.05, "l2_leaf_reg": 3.0, "random_strength": 1.0},
}


@dataclass
class SearchSettings:
    """What to search and for how long. ``budget`` (seconds) and ``n_trials`` both stop the search;
    either may be None but not both. ``budget`` spans all runs of a resumed search."""

    task: str
    metric: str
    families: list[str] = field(default_factory=lambda: ["lightgbm", "xgboost", "linear"])
    budget: float | None = 60.0
    n_trials: int | None = None
    seed: int = 0
    class_weight: str = "balanced"
    ensemble: bool = True
    ensemble_size: int = 5
    stack: bool = True        # try a level-2 model over the best trials' OOF outputs (``train.stack``)
    tune_threshold: bool = True
    n_jobs: int = 1
    # most milliseconds one record may take through the served model; ``latency_fn`` measures a
    # fitted model as (milliseconds, how it is served), the caller knowing how; None: no limit
    max_latency_ms: float | None = None
    latency_fn: Callable[[TabularModel], tuple[float, str]] | None = None
    # trials at once, each in a worker process sharing ``storage`` (``train.parallel``)
    parallel: int = 1
    # compute.address when compute.engine is ray: the parallel workers are Ray tasks there (None: processes)
    ray_address: str | None = None
    # how many k-fold partitions ``folds`` concatenates (``cv_repeats``); reported, the OOF is averaged anyway
    cv_repeats: int = 1


def cv_repeats(rows: int, budget: float | None) -> int:
    """Repeats of k-fold for a table of ``rows`` training rows: one partition's OOF score on a small
    table moves with the split as much as with the model (issue 27), so below ``SMALL_TABLE_ROWS`` rows
    each trial is scored on ``SMALL_TABLE_REPEATS`` partitions (AutoGluon bags for the same reason),
    fewer when ``budget`` seconds leave under ``MIN_BUDGET_PER_REPEAT`` per repeat. Large tables: 1.

    5 rather than 3 (issue 27, benchmarks/RESULTS.md 2026-12-06, the benchmark's 5 splits at 60 s, paired
    searches, load 1.3-4.9): test macro-F1 chile +0.016 (higher on 4 of 5), pima +0.009, fishing +0.003,
    mathlevel +0.003 (each 3 of 5): a less noisy OOF ranking is worth the fewer trials it leaves."""
    if rows >= SMALL_TABLE_ROWS:
        return 1
    if budget is None:
        return SMALL_TABLE_REPEATS
    return int(max(1, min(SMALL_TABLE_REPEATS, budget // MIN_BUDGET_PER_REPEAT)))


@dataclass
class _Data:
    """The search's view of the data: prepared frame, encoded target, folds and their unions."""

    X: pd.DataFrame
    y: np.ndarray
    classes: list[Any] | None
    folds: list[tuple[np.ndarray, np.ndarray]]
    eval_idx: np.ndarray            # sorted union of the valid positions (OOF rows)
    fit_idx: np.ndarray             # sorted union of all fold positions (the refit rows)
    numeric: list[str]
    categorical: list[str]
    schema: Schema
    # a small multiclass table's class weights as a decision (``_prior_decision``): the OOF output is
    # scored, and the served probabilities scaled, with them; the models are fitted unweighted
    decision_scale: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    @property
    def y_eval(self) -> np.ndarray:
        return self.y[self.eval_idx]


def run_search(
    X: pd.DataFrame,
    y: pd.Series,
    *,
    schema: Schema,
    folds: list[tuple[np.ndarray, np.ndarray]],
    settings: SearchSettings,
    storage: str,
    study_name: str,
    work_dir: Path,
    on_trial: Callable[[TrialRecord], None] | None = None,
    progress: Callable[[int, float], None] | None = None,
    warm_start: list[dict[str, Any]] | None = None,
) -> SearchResult:
    """Search, pick the best single model or ensemble on OOF predictions, refit it on all rows.

    ``warm_start`` holds parameter sets to try first: ``{"family": ..., **native params}``.
    """
    _check_settings(settings)
    data = _prepare_data(X, y, schema, folds, settings)
    data.decision_scale = _prior_decision(data, settings)
    if data.decision_scale is not None:  # the weights decide instead of weighting the fits
        settings = dataclasses.replace(settings, class_weight="none")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    with _quiet(), _blas_threads(settings.n_jobs):
        study = open_study(storage, study_name, metric=settings.metric, fingerprint=_fingerprint(settings, data),
                           seed=settings.seed, startup_trials=5, group=True,
                           differs="target, folds, task, metric or families differ; resume with the same "
                                   "arguments, or pass a new study_name")
        resumed = len(finished(study))
        _enqueue_first_trials(study, settings, warm_start)
        started = time.monotonic()
        if settings.parallel > 1:
            # the workers do not time latency (a closure does not pickle): the parent does, in _conclude
            runner = functools.partial(_trial_in_worker, data, dataclasses.replace(settings, latency_fn=None),
                                       work_dir)
            if settings.ray_address is not None:       # compute.engine: ray: the workers are Ray tasks
                from ...training.ray_search import ray_search_loop

                ray_search_loop(study, storage, runner, address=settings.ray_address, workers=settings.parallel,
                                seed=settings.seed, group=True, budget=settings.budget, n_trials=settings.n_trials,
                                on_trial=on_trial, progress=progress)
            else:
                parallel_search_loop(study, storage, runner, workers=settings.parallel, seed=settings.seed,
                                     group=True, budget=settings.budget, n_trials=settings.n_trials,
                                     on_trial=on_trial, progress=progress)
        else:
            search_loop(study, lambda trial, deadline: _run_trial(study, trial, data, settings, work_dir, deadline),
                        budget=settings.budget, n_trials=settings.n_trials, on_trial=on_trial, progress=progress)
        searched = time.monotonic()
        result = _conclude(study, data, settings, work_dir, resumed)
        result.seconds = {"search": round(searched - started, 3),
                          "after_search": round(time.monotonic() - searched, 3)}
        return result


# --------------------------------------------------------------------------- checks and data
def _check_settings(s: SearchSettings) -> None:
    if s.task not in TASKS:
        raise ConfigError(f"task: '{s.task}' is not allowed; allowed: {', '.join(TASKS)}")
    KINDS[s.task].check_metric(s.metric, s.task)
    bad = [f for f in s.families if f not in FAMILIES]
    if not s.families or bad:
        raise ConfigError(f"train.families: {bad or 'empty'} not allowed; choose from {', '.join(FAMILIES)}")
    if "catboost" in s.families:
        try:
            import catboost  # noqa: F401
        except ImportError:
            raise ConfigError("train.families: 'catboost' needs the catboost package; install it with "
                              "pip install 'modelloop[catboost]', or drop catboost from train.families") from None
    if s.budget is None and s.n_trials is None:
        raise ConfigError("train: set a time budget or n_trials (or both); with neither the search never ends")
    if s.budget is not None and not s.budget > 0:
        raise ConfigError(f"train.budget: must be a number of seconds > 0, got {s.budget}")
    if s.n_trials is not None and s.n_trials < 1:
        raise ConfigError(f"train.n_trials: must be >= 1, got {s.n_trials}")
    if s.class_weight not in ("balanced", "none"):
        raise ConfigError(f"train.class_weight: '{s.class_weight}' is not allowed; allowed: balanced, none")
    if s.ensemble_size < 1:
        raise ConfigError(f"train.ensemble_size: must be >= 1, got {s.ensemble_size}")
    cpus = os.cpu_count() or 1
    if s.parallel < 1 or (s.ray_address is None and s.parallel > cpus):  # on Ray: the cluster's free CPUs bound it
        raise ConfigError(f"train.parallel: must be 1..{cpus} (this machine's CPU count), got {s.parallel}")
    if s.max_latency_ms is not None and not s.max_latency_ms > 0:
        raise ConfigError(f"train.max_latency_ms: must be a number of milliseconds > 0, got {s.max_latency_ms}")


def _prepare_data(X: pd.DataFrame, y: pd.Series, schema: Schema,
                  folds: list[tuple[np.ndarray, np.ndarray]], settings: SearchSettings) -> _Data:
    if len(X) != len(y):
        raise DataError(f"X has {len(X)} rows but y has {len(y)}")
    target, classes = encode_labels(y, settings.task)
    if settings.task == "binary" and classes is not None and len(classes) != 2:
        raise DataError(f"task 'binary' needs exactly 2 classes, the target has {len(classes)}: "
                        f"{cap_list(classes, show=repr)}; use task 'multiclass'")
    folds = [(np.asarray(tr, dtype=np.int64), np.asarray(va, dtype=np.int64)) for tr, va in folds]
    if not folds or any(len(tr) == 0 or len(va) == 0 for tr, va in folds):
        raise DataError("folds: need at least one (train, valid) pair, each with rows")
    every = np.concatenate([np.r_[tr, va] for tr, va in folds])
    if every.min() < 0 or every.max() >= len(X):
        raise DataError(f"folds: positions must lie in 0..{len(X) - 1}")
    numeric, categorical = prepared_columns(schema)
    return _Data(prepare_features(X, schema), target, classes, folds,
                 np.unique(np.concatenate([va for _, va in folds])), np.unique(every),
                 numeric, categorical, schema)


def _blas_threads(n_jobs: int) -> contextlib.AbstractContextManager[Any]:
    """NumPy/SciPy's BLAS limited to the search's ``n_jobs`` threads (one core per trial; ``train.parallel``
    runs more trials, each in its own process) while the search fits and chooses. BLAS's own threads
    spin-wait for each other: with two of them on a shared 2-core machine (load 6-17) one lbfgs logistic
    regression on 12,000 rows x 104 prepared columns took 2.5 CPU s instead of 0.17, and the linear
    family's default trial 13.3 CPU s (21 s of a 60 s search) instead of 1.3. Boosters have their own
    ``n_jobs`` and are not affected."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, n_jobs), user_api="blas")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's per-trial logs and its experimental-feature warnings while searching."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message=".*Fixed parameter .* is out of range.*")
            yield
    finally:
        optuna.logging.set_verbosity(level)


# --------------------------------------------------------------------------- the study
# What a trial's value and its stored out-of-fold output mean. Bumped when that changes, so that a stored
# study of the earlier meaning is not resumed and concluded by the new rules (``stage.study_name`` keys on
# it): 2 since 54bff22, whose small multiclass tables fit unweighted and decide with the class weights (a
# study resumed across it mixed weighted trials into a search that then scaled them by the weights again).
TRIAL_SCORING = 2


def _fingerprint(settings: SearchSettings, data: _Data) -> str:
    h = hashlib.sha256()
    h.update(repr((settings.task, settings.metric, sorted(settings.families), data.classes)).encode())
    h.update(np.ascontiguousarray(data.y).tobytes())
    for tr, va in data.folds:
        h.update(tr.tobytes() + b"|" + va.tobytes())
    return h.hexdigest()


def _enqueue_first_trials(study: optuna.Study, settings: SearchSettings, warm_start: list[dict] | None) -> None:
    """Library defaults of each family, then the caller's warm-start sets (never twice per study)."""
    first = [{"family": f, **DEFAULT_PARAMS[f]} for f in settings.families]
    for params in first + list(warm_start or []):
        family = params.get("family")
        if family not in settings.families:
            raise ConfigError(f"warm_start: family '{family}' is not searched; searched: "
                              f"{', '.join(settings.families)}")
        study.enqueue_trial(_to_space(params, settings.task), skip_if_exists=True)


def _to_space(params: dict[str, Any], task: str) -> dict[str, Any]:
    """Native names -> search-space names (``num_leaves`` -> ``lgb_num_leaves``).

    Keys outside the family's space (e.g. a refitted model's ``n_estimators``) are dropped.
    """
    family = params["family"]
    prefix = _PREFIX[family]
    known = set(DEFAULT_PARAMS[family]) if family != "linear" else {"alpha" if task == "regression" else "C"}
    out: dict[str, Any] = {"family": family}
    for key, value in params.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if name in known:
            out[prefix + name] = value
    return out


def _native(params: dict[str, Any]) -> dict[str, Any]:
    family = params.get("family")
    prefix = _PREFIX.get(family or "", "")
    return {k[len(prefix):]: v for k, v in params.items() if k != "family" and k.startswith(prefix)}


def suggest_params(trial: optuna.Trial, families: list[str], task: str) -> tuple[str, dict[str, Any]]:
    """The conditional search space: one branch per family."""
    family = trial.suggest_categorical("family", families)
    if family == "lightgbm":
        trial.suggest_int("lgb_num_leaves", 7, 255, log=True)
        trial.suggest_float("lgb_learning_rate", 0.01, 0.3, log=True)
        trial.suggest_int("lgb_min_child_samples", 3, 100, log=True)
        trial.suggest_float("lgb_subsample", 0.5, 1.0)
        trial.suggest_float("lgb_colsample_bytree", 0.4, 1.0)
        trial.suggest_float("lgb_reg_lambda", 1e-8, 10.0, log=True)
    elif family == "xgboost":
        trial.suggest_int("xgb_max_depth", 2, 10)
        trial.suggest_float("xgb_learning_rate", 0.01, 0.3, log=True)
        trial.suggest_float("xgb_min_child_weight", 0.5, 20.0, log=True)
        trial.suggest_float("xgb_subsample", 0.5, 1.0)
        trial.suggest_float("xgb_colsample_bytree", 0.4, 1.0)
        trial.suggest_float("xgb_reg_lambda", 1e-3, 10.0, log=True)
    elif family == "catboost":
        trial.suggest_int("cb_depth", 3, 10)
        trial.suggest_float("cb_learning_rate", 0.01, 0.3, log=True)
        trial.suggest_float("cb_l2_leaf_reg", 0.5, 30.0, log=True)
        trial.suggest_float("cb_random_strength", 0.1, 10.0, log=True)
    elif task == "regression":
        trial.suggest_float("linear_alpha", 1e-3, 1e3, log=True)
    else:
        trial.suggest_float("linear_C", 1e-3, 1e2, log=True)
    return family, _native(trial.params)


# --------------------------------------------------------------------------- the search loop
def _run_trial(study: optuna.Study, trial: optuna.Trial, data: _Data, settings: SearchSettings, work_dir: Path,
               deadline: float) -> TrialRecord:
    """Evaluate one trial, save its OOF predictions, tell the study; errors become failed trials."""
    t0 = time.monotonic()
    family, params = suggest_params(trial, settings.families, settings.task)
    state, value, error, best_iter = TrialState.COMPLETE, None, None, None
    fitted: list[tuple[Any, int | None]] = []
    try:
        oof, best_iter, fitted = _cross_validate(family, params, data, settings, trial, deadline)
        value, threshold = _score_oof(oof, data, settings)
        if not np.isfinite(value):
            raise DataError(f"the metric '{settings.metric}' is not defined on these folds (NaN)")
        _save_oof(work_dir, trial.number, oof)
        if _bags(settings, data):
            _save_fold_models(work_dir, trial.number, fitted)
        trial.set_user_attr("threshold", threshold)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except Exception as exc:  # a failed fit is recorded, the search goes on
        state, error = TrialState.FAIL, f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("error", error[:2000])
    duration = time.monotonic() - t0
    trial.set_user_attr("duration_s", duration)
    trial.set_user_attr("best_iteration", best_iter)
    record = _record(study.tell(trial, value if state == TrialState.COMPLETE else None, state=state))
    if _bags(settings, data):
        _prune_fold_models(study, work_dir, settings)
    return record


def _trial_in_worker(data: _Data, settings: SearchSettings, work_dir: Path, study: optuna.Study,
                     trial: optuna.Trial, deadline: float) -> TrialRecord:
    """:func:`_run_trial` as a ``train.parallel`` worker calls it (a picklable partial), BLAS limited as in
    the parent (:func:`_blas_threads`)."""
    with _blas_threads(settings.n_jobs):
        return _run_trial(study, trial, data, settings, work_dir, deadline)


def _cross_validate(family: str, params: dict[str, Any], data: _Data, settings: SearchSettings,
                    trial: optuna.Trial | None = None,
                    deadline: float = np.inf) -> tuple[np.ndarray, int | None, list[tuple[Any, int | None]]]:
    """OOF predictions over ``eval_idx``, the mean best iteration and each fold's (fitted pipeline, best
    iteration); reports fold scores to ``trial``.

    With repeated k-fold (a row in several folds' valid parts) a row's OOF output is the mean of its
    repeats' outputs: one pass over a single partition gives the same as before."""
    position = _positions(data)
    oof = _empty_output(len(data.eval_idx), data.n_classes, settings.task)
    total = np.zeros_like(oof)
    seen = np.zeros(len(data.eval_idx))
    fold_scores: list[float] = []
    iterations: list[int] = []
    fitted: list[tuple[Any, int | None]] = []
    for step, (tr, va) in enumerate(data.folds):
        pipe = _build(family, {**params, **_rounds(family, MAX_ROUNDS)}, data, settings)
        share = _fold_deadline(deadline, step, len(data.folds))
        best = fit_estimator(pipe, data.X.iloc[tr], data.y[tr], task=settings.task,
                             class_weight=settings.class_weight,
                             valid=(data.X.iloc[va], data.y[va]),
                             early_stopping_rounds=EARLY_STOPPING_ROUNDS, deadline=share)
        if trial is not None and time.monotonic() > share:  # the fit ran to its share: the deadline cut it
            trial.set_user_attr("stopped_by_budget", True)
        if best is not None:
            iterations.append(best)
        fitted.append((pipe, best))
        out = _predict(pipe, data.X.iloc[va], data.n_classes, settings.task)
        total[position[va]] += out
        seen[position[va]] += 1
        fold_scores.append(score(settings.metric, data.y[va], _decided(out, data)))
        if trial is not None:
            trial.report(float(np.nanmean(fold_scores)), step)
            if trial.should_prune() or (time.monotonic() > deadline and step < len(data.folds) - 1
                                        and completed(trial.study)):
                raise optuna.TrialPruned()  # past the budget with a model already: the search ends
    done = seen > 0
    oof[done] = total[done] / (seen[done] if oof.ndim == 1 else seen[done, None])
    return oof, int(round(np.mean(iterations))) if iterations else None, fitted


def _fold_deadline(deadline: float, step: int, n_folds: int) -> float:
    """Fold ``step``'s share of the time left before ``deadline``: an equal part for it and each fold
    after it, so a trial that cannot finish its folds in time stops every fold's boosting at its share
    and still ends at the deadline with out-of-fold output for every row. Past the deadline each fold
    keeps ``DEADLINE_MIN_ROUNDS`` rounds. A trial that ends well before the deadline is unaffected."""
    if not math.isfinite(deadline):
        return deadline
    now = time.monotonic()
    return now + (deadline - now) / (n_folds - step)


def _positions(data: _Data) -> np.ndarray:
    """Row position -> its index in the OOF arrays (``eval_idx``); -1 for rows never validated."""
    position = np.full(len(data.y), -1)
    position[data.eval_idx] = np.arange(len(data.eval_idx))
    return position


def _rounds(family: str, n: int) -> dict[str, Any]:
    return {"n_estimators": n} if family in ("lightgbm", "xgboost", "catboost") else {}


def _build(family: str, params: dict[str, Any], data: _Data, settings: SearchSettings) -> Any:
    params = dict(params)
    if family == "lightgbm" and params.get("subsample", 1.0) < 1.0:
        params["subsample_freq"] = 1  # LightGBM ignores subsample unless bagging is switched on
    return build_estimator(family, params, task=settings.task, numeric_cols=data.numeric,
                           categorical_cols=data.categorical, seed=settings.seed,
                           class_weight=settings.class_weight, n_jobs=settings.n_jobs)


def _empty_output(n: int, n_classes: int, task: str) -> np.ndarray:
    return np.full(n, np.nan) if task == "regression" else np.full((n, n_classes), np.nan)


def _predict(pipe: Any, X: pd.DataFrame, n_classes: int, task: str) -> np.ndarray:
    """Predictions, or (n, K) probabilities even when a fold's training part lacked some class."""
    if task == "regression":
        return np.asarray(pipe.predict(X), dtype=float)
    proba = np.asarray(pipe.predict_proba(X), dtype=float)
    full = np.zeros((len(X), n_classes))
    full[:, np.asarray(pipe.classes_, dtype=int)] = proba
    return full


def _threshold_applies(settings: SearchSettings) -> bool:
    return settings.task == "binary" and settings.metric in F1_TYPE and settings.tune_threshold


def _score_oof(out: np.ndarray, data: _Data, settings: SearchSettings) -> tuple[float, float | None]:
    """(score, threshold) of OOF output; the threshold is tuned when that applies, else None. A small
    multiclass table's output is scored as decided (``_decided``)."""
    if _threshold_applies(settings):
        threshold, value = tune_threshold(data.y_eval, out[:, 1], settings.metric)
        return value, threshold
    return score(settings.metric, data.y_eval, _decided(out, data)), None


def _prior_decision(data: _Data, settings: SearchSettings) -> np.ndarray | None:
    """The class weights of ``class_weight: balanced`` on a small multiclass table with an F1-type metric
    (the log-loss choice's tables, ``_selection``), applied as a decision instead of to the fits: the
    models are fitted unweighted and every class's probability is multiplied by its tempered weight
    (``model.multiclass_weights``: sqrt of balanced, capped) before the argmax, in the OOF scores and in
    the served model (``ensemble.class_scaled``). None elsewhere (the fits are weighted as before).

    Why: weighted rows change what a tree or a logistic regression fits on a few hundred rows, and its
    probabilities then serve the log-loss choice badly; scaling calibrated probabilities by the same
    weights is the prior correction those weights aim at. Measured with LightGBM defaults on the
    benchmark's 5 splits (benchmarks/RESULTS.md, 2026-12-06): test macro-F1 fishing 0.4852 against 0.4709
    with the weights fitted (0.4806 unweighted), chile 0.4972 against 0.4937 (0.4888), mathlevel 0.2168
    against 0.2156 (0.2207)."""
    if settings.class_weight != "balanced" or not _selection(data, settings).by_loss:
        return None
    from .model import multiclass_weights

    weights = multiclass_weights(data.y[data.fit_idx])  # a class absent from every fold's rows weighs 0
    scale = np.zeros(data.n_classes)
    scale[: len(weights)] = weights
    return scale / scale.max()


def _decided(out: np.ndarray, data: _Data) -> np.ndarray:
    """OOF output as the served model decides it: scaled by ``data.decision_scale`` when it has one."""
    return out if data.decision_scale is None or out.ndim != 2 else apply_class_scale(out, data.decision_scale)


def _save_oof(work_dir: Path, number: int, oof: np.ndarray) -> None:
    """Write-then-rename, so a kill never leaves a half-written file under the final name."""
    final = work_dir / f"trial_{number}.npy"
    tmp = work_dir / f".trial_{number}.{os.getpid()}.tmp.npy"
    with open(tmp, "wb") as fh:
        np.save(fh, oof, allow_pickle=False)
    os.replace(tmp, final)


def _bags(settings: SearchSettings, data: _Data) -> bool:
    """Whether the chosen model is served as its trials' fold models (bagged) rather than refitted on all
    rows: with a binary threshold tuned on the out-of-fold output, on a table of at least
    ``SMALL_TABLE_ROWS`` OOF rows, without ``train.max_latency_ms`` (k models per member). The threshold is
    tuned on what the fold models output; a refit with its rounds scaled to the larger data outputs
    something else. On the fraud example (15,000 rows, 2 seeds of 5-fold) the fold models at the OOF
    threshold scored +0.011 test macro-F1 on average over the refit across LightGBM (lr 0.1 and 0.05),
    XGBoost and the linear model (-0.006 to +0.026 each). Small tables keep the refit: their threshold is
    usually the default and bagging there measured no gain (benchmarks/RESULTS.md, 2026-12-05)."""
    return _threshold_applies(settings) and len(data.eval_idx) >= SMALL_TABLE_ROWS and settings.max_latency_ms is None


def _fold_models_path(work_dir: Path, number: int) -> Path:
    return work_dir / f"trial_{number}.folds.joblib"


def _save_fold_models(work_dir: Path, number: int, fitted: list[tuple[Any, int | None]]) -> None:
    """The trial's fold pipelines, each booster cut to its best round (what it predicted the OOF rows
    with; the ONNX converters take every round a model holds), written then renamed."""
    import joblib

    from .prune import _truncate

    pipes = []
    for pipe, best in fitted:
        model = pipe.steps[-1][1]
        module = type(model).__module__
        if best and (module.startswith("lightgbm") or module.startswith("xgboost")):
            pipe = Pipeline([*pipe.steps[:-1], (pipe.steps[-1][0], _truncate(model, int(best)))])
        pipes.append(pipe)
    final = _fold_models_path(work_dir, number)
    tmp = work_dir / f".trial_{number}.{os.getpid()}.tmp.folds"
    joblib.dump(pipes, tmp)
    os.replace(tmp, final)


def _prune_fold_models(study: optuna.Study, work_dir: Path, settings: SearchSettings) -> None:
    """Fold models are kept for the best ``ensemble_size`` complete trials only (the greedy blend's
    candidates): a finished trial outside them loses its file."""
    records = [_record(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    ranked = _ranked_complete(records, settings)
    for r in ranked[settings.ensemble_size:]:
        _fold_models_path(work_dir, r.number).unlink(missing_ok=True)


def _bagged(members: list[TrialRecord], weights: list[float], threshold: float | None, data: _Data,
            settings: SearchSettings, work_dir: Path) -> TabularModel | None:
    """The chosen members' fold models blended (each member's weight split equally over its folds), or
    None when a member's fold models are not on disk (a resumed search's trial, or one pruned by a
    parallel worker): the caller refits then."""
    import joblib

    paths = [_fold_models_path(work_dir, r.number) for r in members]
    if not all(p.exists() for p in paths):
        return None
    pipes, pipe_weights, owners = [], [], []
    for rec, w, path in zip(members, weights, paths, strict=True):
        # a pickle, read only from this study's own folder in the project (written by _save_fold_models of this
        # search or its resumed runs), the same trust as the registry's models (tracking.log_model); never a
        # file a user or a client hands in
        folds = joblib.load(path)
        pipes += folds
        pipe_weights += [float(w) / len(folds)] * len(folds)
        owners += [rec] * len(folds)
    estimator = blend_estimator(pipes, pipe_weights, task=settings.task, n_classes=data.n_classes)
    description = {"families": [r.family for r in owners], "members": [r.number for r in owners],
                   "weights": pipe_weights, "params": [dict(r.params) for r in owners],
                   "bagged": {"members": [r.number for r in members], "weights": [float(w) for w in weights],
                              "folds": len(data.folds)}}
    return TabularModel.from_fitted(schema=data.schema, task=settings.task, classes=data.classes,
                                    estimator=estimator, threshold=threshold, description=description,
                                    family="ensemble")


# --------------------------------------------------------------------------- choosing and refitting
def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    value = t.value if t.state == TrialState.COMPLETE else None
    if value is None and t.intermediate_values:
        value = float(t.intermediate_values[max(t.intermediate_values)])
    return TrialRecord(t.number, t.params.get("family", "unknown"), _native(t.params), value,
                       STATE_NAMES[t.state], float(t.user_attrs.get("duration_s", 0.0)),
                       t.user_attrs.get("best_iteration"), t.user_attrs.get("error"),
                       bool(t.user_attrs.get("stopped_by_budget", False)))


def _conclude(study: optuna.Study, data: _Data, settings: SearchSettings, work_dir: Path,
              resumed: int) -> SearchResult:
    records = sorted((_record(t) for t in finished(study)), key=lambda r: r.number)
    ranked = _ranked_complete(records, settings)
    if not ranked:
        first = next((r.error for r in records if r.error), "no trial finished within the budget")
        raise ModelloopError(f"no trial completed; first error: {first}. "
                             "Fix the data or raise train.budget / n_trials and run again")
    selection = _selection(data, settings)
    candidates = settings.ensemble_size
    if selection.by_loss:  # rank by the OOF log-loss; the greedy blend looks twice as deep (measured at 10)
        ranked = selection.rank(ranked, data, settings, work_dir)
        candidates *= LOSS_SELECTION_DEPTH
    best = ranked[0]
    best_oof = _load_oof(best, data, settings, work_dir)
    best_score, best_threshold = _score_oof(best_oof, data, settings)
    members, weights, threshold, chosen_score = [best], [1.0], best_threshold, best_score
    ensemble = None
    if settings.ensemble and len(ranked) > 1:
        ensemble, ens_threshold = _select_ensemble(ranked[:candidates], data, settings, work_dir,
                                                   selection.score(best_oof, data, settings), selection)
        if ensemble["kept"]:
            chosen = [r for r in ranked if r.number in ensemble["members"]]
            order = {n: i for i, n in enumerate(ensemble["members"])}
            members = sorted(chosen, key=lambda r: order[r.number])
            weights, threshold, chosen_score = ensemble["weights"], ens_threshold, ensemble["score"]
    stack = None
    if settings.ensemble and settings.stack and len(ranked) > 1 and selection.by_loss:
        ensemble = {**(ensemble or {}), "stack": {"kept": False, "reason": STACK_NOT_BY_LOSS}}
    elif settings.ensemble and settings.stack and len(ranked) > 1:
        stack = _try_stack(ranked, data, settings, work_dir, float(chosen_score))
        if ensemble is not None and stack is not None:
            ensemble = {**ensemble, "stack": stack.info}
    if stack is not None and stack.info["kept"]:
        model, chosen_oof = stack.refit(data, settings), stack.oof
        members, weights, threshold, chosen_score = stack.members, [], stack.threshold, stack.info["score"]
        threshold, chosen_score, cv = _review_small_table(chosen_oof, threshold, float(chosen_score), data, settings)
        model.threshold_ = threshold if settings.task == "binary" else None
        chosen_score = _class_decision(model, chosen_oof, float(chosen_score), data, settings, cv)
        return SearchResult(model, settings.metric, direction(settings.metric), float(chosen_score), best,
                            ensemble, threshold, records, resumed, None, cv=cv)
    model = (_bagged(members, list(weights), threshold, data, settings, work_dir) if _bags(settings, data)
             else None) or _refit(members, weights, threshold, data, settings)
    latency = None
    if settings.max_latency_ms is not None and settings.latency_fn is not None:
        model, (members, weights, threshold, chosen_score), latency = _within_latency(
            model, (members, weights, threshold, chosen_score), ranked, data, settings, work_dir)
        served = [r.number for r in members]
        if ensemble is not None and ensemble["kept"] and len(members) == 1:
            ensemble = {**ensemble, "kept": False, "reason": "over train.max_latency_ms"}
        elif ensemble is not None and ensemble["kept"] and served != ensemble["members"]:
            ensemble = {**ensemble, "reason": f"trimmed to members {served} within train.max_latency_ms"}
    oof = blend([_load_oof(r, data, settings, work_dir) for r in members], list(weights))
    threshold, chosen_score, cv = _review_small_table(oof, threshold, float(chosen_score), data, settings)
    if threshold != model.threshold_:
        model.threshold_ = threshold
    chosen_score = _class_decision(model, oof, float(chosen_score), data, settings, cv)
    return SearchResult(model, settings.metric, direction(settings.metric), float(chosen_score), best,
                        ensemble, threshold, records, resumed, latency, cv=cv)


def _fold_scores(oof: np.ndarray, threshold: float | None, data: _Data, settings: SearchSettings) -> np.ndarray:
    """The chosen OOF output scored on each fold's valid part (every repeat's folds)."""
    position = _positions(data)
    return np.array([score(settings.metric, data.y[va], _decided(oof[position[va]], data), threshold=threshold)
                     for _, va in data.folds])


def _cross_fitted_gains(oof: np.ndarray, data: _Data, settings: SearchSettings) -> np.ndarray:
    """Each fold's score with a threshold tuned on the other OOF rows only: the tuned threshold's
    out-of-fold worth, without the optimism of scoring it on the rows it was tuned on."""
    position = _positions(data)
    out = []
    for _, va in data.folds:
        rest = np.ones(len(data.eval_idx), dtype=bool)
        rest[position[va]] = False
        t, _ = tune_threshold(data.y_eval[rest], oof[rest, 1], settings.metric)
        out.append(score(settings.metric, data.y[va], oof[position[va]], threshold=t))
    return np.array(out)


def _review_small_table(oof: np.ndarray, threshold: float | None, chosen: float, data: _Data,
                        settings: SearchSettings) -> tuple[float | None, float, dict[str, Any]]:
    """(threshold, validation score, ``cv`` report) of the chosen model's OOF output.

    ``spread`` is the standard deviation of the chosen model's score over the folds' valid parts (all
    repeats): how far the validation score moves with the rows it is measured on. On a small table
    (< ``SMALL_TABLE_ROWS`` OOF rows) a tuned threshold is kept only when its OOF gain over the default
    (0.5) exceeds that noise (the std over folds of the per-fold gain): a threshold tuned on a few
    hundred rows otherwise fits their noise (issue 27). Large tables keep the tuned threshold as before."""
    folds = _fold_scores(oof, threshold, data, settings)
    cv: dict[str, Any] = {"repeats": settings.cv_repeats, "folds": len(data.folds),
                          "spread": float(np.nanstd(folds)), "small_table": len(data.eval_idx) < SMALL_TABLE_ROWS}
    if threshold is None or not cv["small_table"]:
        return threshold, chosen, cv
    default_folds = _fold_scores(oof, DEFAULT_THRESHOLD, data, settings)
    default = float(score(settings.metric, data.y_eval, oof, threshold=DEFAULT_THRESHOLD))
    gains = _cross_fitted_gains(oof, data, settings) - default_folds
    per_repeat = max(1, len(data.folds) // max(1, settings.cv_repeats))
    gain, noise = float(np.nanmean(gains)), float(np.nanstd(gains) / np.sqrt(per_repeat))
    kept = bool(gain > noise)
    cv["threshold"] = {
        "tuned": float(threshold), "default": DEFAULT_THRESHOLD, "gain": gain, "noise": noise,
        "used": "tuned" if kept else "default",
        "reason": (f"tuned threshold gains {gain:.4f} out of fold, more than the fold-to-fold noise {noise:.4f}"
                   if kept else f"tuned threshold gains only {gain:.4f} out of fold, within the fold-to-fold "
                                f"noise {noise:.4f} on a small table: kept the default {DEFAULT_THRESHOLD}")}
    if kept:
        return threshold, chosen, cv
    cv["spread"] = float(np.nanstd(default_folds))
    return DEFAULT_THRESHOLD, default, cv


def _class_decision(model: TabularModel, oof: np.ndarray, chosen: float, data: _Data, settings: SearchSettings,
                    cv: dict[str, Any]) -> float:
    """The multiclass decision for an F1-type metric (issue 27): one factor per class on the chosen model's
    OOF probabilities (``threshold.tune_class_scale``), kept, as a small table's threshold is, only when
    its cross-fitted gain (each fold decided with factors tuned on the other OOF rows, minus the fold's
    argmax score) beats the fold-to-fold noise (std of those gains / sqrt(k)). A kept scale wraps
    ``model.estimator_`` (``ensemble.class_scaled``: the served probabilities carry it) and the validation
    score becomes the tuned one; ``cv["class_scale"]`` reports either way. Returns the validation score.

    With ``data.decision_scale`` (a small table's class weights as a decision, ``_prior_decision``) the
    factors are tuned on top of it, and the served model always carries it (times the kept factors)."""
    prior = data.decision_scale
    if settings.task != "multiclass" or not settings.tune_threshold or settings.metric not in ("f1_macro",
                                                                                               "f1_weighted"):
        if prior is not None:
            _serve_scaled(model, prior)
        return chosen
    oof = _decided(oof, data)
    k, metric, y = data.n_classes, settings.metric, data.y_eval
    scale, tuned = tune_class_scale(y, oof, metric)
    position = _positions(data)
    gains = []
    for _, va in data.folds:
        rest = np.ones(len(data.eval_idx), dtype=bool)
        rest[position[va]] = False
        fold_scale, _ = tune_class_scale(y[rest], oof[rest], metric)
        part, truth = oof[position[va]], data.y[va]
        gains.append(f1_of_labels(metric, truth, (part * fold_scale).argmax(axis=1), k)
                     - f1_of_labels(metric, truth, part.argmax(axis=1), k))
    per_repeat = max(1, len(data.folds) // max(1, settings.cv_repeats))
    gain, noise = float(np.mean(gains)), float(np.std(gains) / np.sqrt(per_repeat))
    kept = bool(gain > noise and np.any(scale < 1.0))
    cv["class_scale"] = {
        "scale": [float(v) for v in scale], "tuned": float(tuned), "default": float(chosen), "gain": gain,
        "noise": noise, "used": "tuned" if kept else "argmax",
        "reason": (f"per-class factors gain {gain:.4f} out of fold, more than the fold-to-fold noise {noise:.4f}"
                   if kept else f"per-class factors gain only {gain:.4f} out of fold, within the fold-to-fold "
                                f"noise {noise:.4f}: kept the argmax")}
    if prior is not None:
        cv["class_scale"]["prior"] = [float(v) for v in prior]
    if not kept:
        if prior is not None:
            _serve_scaled(model, prior)
        return chosen
    _serve_scaled(model, scale if prior is None else prior * scale / float((prior * scale).max()))
    return float(tuned)


def _serve_scaled(model: TabularModel, scale: np.ndarray) -> None:
    """``model`` serves its probabilities times ``scale`` (renormalised), so that their argmax decides."""
    model.estimator_ = class_scaled(model.estimator_, scale)
    model.description_ = {**model.description_, "class_scale": [float(v) for v in scale]}


MAX_LATENCY_TRIES = 6     # trials refitted and timed at most when the OOF choice is too slow
MAX_SUBSET_TIMINGS = 3    # sub-ensembles timed at most (built from fitted members: no refit)


def _size(r: TrialRecord) -> float:
    """Tree leaves over all rounds: a model's walk per record, only to order one family's trials."""
    rounds = r.best_iteration or r.params.get("n_estimators") or 100
    if r.family == "lightgbm":
        return float(rounds * r.params.get("num_leaves", 31))
    if r.family == "xgboost":
        return float(rounds * 2 ** r.params.get("max_depth", 6))
    if r.family == "catboost":  # oblivious trees: every level splits all leaves
        return float(rounds * 2 ** r.params.get("depth", 6))
    return 1.0


class _Timings:
    """Each model timed for ``max_latency_ms``, in order, as the train JSON reports it."""

    def __init__(self, measure: Callable[[TabularModel], tuple[float, str]]):
        self.measure = measure
        self.tried: list[dict[str, Any]] = []
        self.timed: list[tuple[float, TabularModel, tuple]] = []

    def __call__(self, model: TabularModel, choice: tuple, kind: str) -> float:
        ms, served_as = self.measure(model)
        members = choice[0]
        self.tried.append({"kind": kind, "members": [r.number for r in members],
                           "families": [r.family for r in members], "score": float(choice[3]),
                           "latency_ms": round(ms, 4), "served_as": served_as})
        self.timed.append((ms, model, choice))
        return ms

    def count(self, kind: str) -> int:
        return sum(t["kind"] == kind for t in self.tried)


def _within_latency(model: TabularModel, choice: tuple, ranked: list[TrialRecord], data: _Data,
                    settings: SearchSettings, work_dir: Path) -> tuple[TabularModel, tuple, dict[str, Any]]:
    """The best model (on OOF) whose served latency is within ``max_latency_ms``, as AutoGluon's
    ``infer_limit`` trims an ensemble rather than falling back to one model at once.

    The OOF choice is timed first. When an ensemble is over the limit, each member is timed alone
    (already fitted: no refit), and every smaller set of members whose latency, estimated from those
    timings, fits is re-weighted by greedy selection on OOF. Then candidates are walked best OOF
    score first: a sub-ensemble is built from the fitted members and timed; a member is already
    timed; another trial is refitted and timed, unless one of its family no larger (``_size``) was
    already too slow. The first under the limit is kept; without one after ``MAX_LATENCY_TRIES``
    refits, the fastest model timed is kept and ``met`` says so."""
    assert settings.latency_fn is not None and settings.max_latency_ms is not None
    limit = settings.max_latency_ms
    timing = _Timings(settings.latency_fn)
    timing(model, choice, "choice")
    chosen = timing.timed[0] if timing.timed[0][0] <= limit else None
    known: dict[int, tuple] = {}  # trial number -> (ms, model, choice) of the trial alone, timed
    candidates: list[tuple[float, Any]] = []  # (sortable OOF score, a trial or a built sub-ensemble)
    if chosen is None:
        if len(choice[0]) > 1:
            candidates += _sub_ensembles(model, choice[0], data, settings, work_dir, timing, known)
        else:
            known[choice[0][0].number] = timing.timed[0]
        sign = -1.0 if direction(settings.metric) == "maximize" else 1.0
        candidates += [(sign * r.value, r) for r in ranked if r.value is not None]
        candidates.sort(key=lambda c: c[0])  # stable: a sub-ensemble before a trial of equal score
    too_slow: dict[str, float] = {}  # family -> smallest single trial timed over the limit
    for ms, _, (members, *_) in known.values():
        if ms > limit:
            too_slow[members[0].family] = min(too_slow.get(members[0].family, np.inf), _size(members[0]))
    skipped = 0
    for _, what in candidates:  # best first: the first within the limit is the one
        if not isinstance(what, TrialRecord):  # a sub-ensemble of fitted members
            if timing.count("members") < MAX_SUBSET_TIMINGS and timing(what[0], what[1], "members") <= limit:
                chosen = timing.timed[-1]
                break
            continue
        if what.number in known:
            if known[what.number][0] <= limit:
                chosen = known[what.number]
                break
            continue
        if timing.count("trial") >= MAX_LATENCY_TRIES:
            continue  # no more refits; a member or sub-ensemble further down may still fit
        if _size(what) >= too_slow.get(what.family, np.inf):
            skipped += 1
            continue
        value, threshold = _score_oof(_load_oof(what, data, settings, work_dir), data, settings)
        pick = ([what], [1.0], threshold, value)
        if timing(_refit(*pick[:3], data, settings), pick, "trial") <= limit:
            chosen = timing.timed[-1]
            break
        too_slow[what.family] = min(too_slow.get(what.family, np.inf), _size(what))
    ms, model, choice = chosen or min(timing.timed, key=lambda t: t[0])
    info = {"limit_ms": limit, "latency_ms": round(ms, 4), "met": ms <= limit, "tried": timing.tried,
            "skipped_larger": skipped}
    return model, choice, info


def _sub_ensembles(model: TabularModel, members: list[TrialRecord], data: _Data, settings: SearchSettings,
                   work_dir: Path, timing: _Timings, known: dict[int, tuple]) -> list[tuple[float, Any]]:
    """Time each member of an ensemble alone (into ``known``: number -> (ms, model, choice)) and return the smaller sets of members
    whose estimated latency fits the limit, as ``(sortable OOF score, (model, choice))``.

    A set's latency is estimated as ``c + sum(member - c)``, where ``c`` is what the members share
    per call (feature preparation, the session run), solved from the members' and the whole
    ensemble's timings."""
    from itertools import combinations

    assert settings.max_latency_ms is not None
    pipes = list(model.estimator_.estimators_)
    params = model.describe().get("params") or [{} for _ in members]
    oofs = [_load_oof(r, data, settings, work_dir) for r in members]
    for rec, pipe, p, oof in zip(members, pipes, params, oofs, strict=True):
        value, threshold = _score_oof(oof, data, settings)
        pick = ([rec], [1.0], threshold, value)
        timing(_wrap(pick[0], [pipe], [p], [1.0], threshold, data, settings), pick, "member")
        known[rec.number] = timing.timed[-1]
    each = [known[r.number][0] for r in members]
    whole = timing.tried[0]["latency_ms"]
    shared = min(max((sum(each) - whole) / (len(members) - 1), 0.0), min(each))
    maximize = direction(settings.metric) == "maximize"
    sign = -1.0 if maximize else 1.0
    out: list[tuple[float, Any]] = []
    seen: set[tuple[int, ...]] = set()
    for k in range(len(members) - 1, 1, -1):
        for idx in combinations(range(len(members)), k):
            if shared + sum(each[i] - shared for i in idx) > settings.max_latency_ms:
                continue
            weights, _ = caruana_weights([oofs[i] for i in idx], lambda out: _score_oof(out, data, settings)[0],
                                         maximize=maximize)
            used = [idx[j] for j, w in enumerate(weights) if w > 0]
            if len(used) < 2 or tuple(used) in seen:
                continue  # one member alone is timed already
            seen.add(tuple(used))
            w = [float(weights[j]) for j, _ in enumerate(idx) if weights[j] > 0]
            value, threshold = _score_oof(blend([oofs[i] for i in used], w), data, settings)
            pick = ([members[i] for i in used], w, threshold, value)
            sub = _wrap(pick[0], [pipes[i] for i in used], [params[i] for i in used], w, threshold, data, settings)
            out.append((sign * value, (sub, pick)))
    return out


def _ranked_complete(records: list[TrialRecord], settings: SearchSettings) -> list[TrialRecord]:
    sign = -1.0 if direction(settings.metric) == "maximize" else 1.0
    keyed = [(sign * r.value, r.number, r) for r in records if r.state == "complete" and r.value is not None]
    return [r for _, _, r in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _load_oof(record: TrialRecord, data: _Data, settings: SearchSettings, work_dir: Path) -> np.ndarray:
    """The trial's saved OOF predictions; recomputed (and saved) if the file is gone or stale."""
    path = work_dir / f"trial_{record.number}.npy"
    expected = _empty_output(len(data.eval_idx), data.n_classes, settings.task).shape
    if path.exists():
        oof = np.load(path, allow_pickle=False)
        if oof.shape == expected:
            return oof
    oof, _, _ = _cross_validate(record.family, record.params, data, settings)
    _save_oof(work_dir, record.number, oof)
    return oof


def _select_ensemble(candidates: list[TrialRecord], data: _Data, settings: SearchSettings,
                     work_dir: Path, best_score: float,
                     selection: _Selection | None = None) -> tuple[dict[str, Any], float | None]:
    """Greedy selection over the top trials on the ``selection`` score (the metric, or the OOF log-loss on a
    small multiclass table); kept only if it beats the best single trial's (``best_score``, on that score).
    ``score`` is the blend's metric either way (with its tuned threshold)."""
    selection = selection or _Selection(False)
    oofs = [_load_oof(r, data, settings, work_dir) for r in candidates]
    maximize = selection.maximize(settings)
    weights, _ = caruana_weights(oofs, lambda out: selection.score(out, data, settings), maximize=maximize)
    used = [i for i, w in enumerate(weights) if w > 0]
    out = blend([oofs[i] for i in used], weights[used])
    value, threshold = _score_oof(out, data, settings)
    chosen = selection.score(out, data, settings)
    better = chosen > best_score if maximize else chosen < best_score
    info = {"members": [candidates[i].number for i in used], "weights": [float(weights[i]) for i in used],
            "score": float(value), "kept": bool(better and len(used) > 1)}
    if selection.by_loss:
        info |= {"selected_by": "log_loss", "log_loss": float(chosen), "to_beat": float(best_score)}
    return info, threshold


LOSS_SELECTION_DEPTH = 2  # with the log-loss choice the greedy blend's candidates are 2 x train.ensemble_size
# What the summary says (a user reads it): why, in their terms. The evidence, for us: compared on its
# out-of-fold log-loss the unweighted level-2 model beat the class-weighted blend on 4 of 5 splits of
# benchmarks/tabular_quality.py's fishing table and scored -0.006 test macro-F1 against it.
STACK_NOT_BY_LOSS = ("not tried: on a small table with several classes the models are chosen by their "
                     "out-of-fold log-loss, where a level-2 model looks better than it then scores on new rows")


@dataclass
class _Selection:
    """How the served trial and the greedy blend are chosen after the search.

    By default on the search's metric. On a small table (fewer than ``SMALL_TABLE_ROWS`` OOF rows) of a
    multiclass search with an F1-type metric, by the OOF log-loss instead (``by_loss``), and the metric
    decides only at the end (``_class_decision``): macro-F1 of a few hundred rows moves in steps of one
    row's decision, so the trial, blend and weights that maximise it out of fold fit those rows' noise
    (fishing, issue 27: OOF 0.54 against 0.39 on the test rows), while a proper smooth score ranks the
    probabilities themselves (AutoGluon likewise ranks its models by a loss when it bags). The trials'
    values, and so the search's own guidance (TPE, pruning), stay the metric's.

    Measured on the benchmark's small multiclass sets (benchmarks/RESULTS.md, 2026-12-06: each search of 5
    seeded splits concluded both ways, load 2-3.5): test macro-F1 +0.013 on fishing (higher on 5 of 5),
    +0.010 on mathlevel (3 of 5), +0.003 on chile (3 of 5) over choosing on macro-F1; a second fishing run
    -0.010 against the macro-F1 blend without its stack: within what two searches move. No stack on this
    path (``STACK_NOT_BY_LOSS``)."""

    by_loss: bool

    def maximize(self, settings: SearchSettings) -> bool:
        return False if self.by_loss else direction(settings.metric) == "maximize"

    def score(self, out: np.ndarray, data: _Data, settings: SearchSettings) -> float:
        """The selection score of OOF output: its log-loss, or the metric (tuned threshold included)."""
        if self.by_loss:
            return score("log_loss", data.y_eval, out)
        return _score_oof(out, data, settings)[0]

    def rank(self, ranked: list[TrialRecord], data: _Data, settings: SearchSettings,
             work_dir: Path) -> list[TrialRecord]:
        """The complete trials by OOF log-loss, lowest first (ties: the better metric value first)."""
        losses = {r.number: score("log_loss", data.y_eval, _load_oof(r, data, settings, work_dir)) for r in ranked}
        order = {r.number: i for i, r in enumerate(ranked)}
        return sorted(ranked, key=lambda r: (_finite(losses[r.number]), order[r.number]))


def _finite(value: float) -> float:
    return value if np.isfinite(value) else np.inf


def _selection(data: _Data, settings: SearchSettings) -> _Selection:
    """Log-loss selection (:class:`_Selection`) on a small multiclass table with an F1-type metric."""
    return _Selection(settings.task == "multiclass" and settings.metric in F1_TYPE
                      and len(data.eval_idx) < SMALL_TABLE_ROWS)


MAX_STACK_MEMBERS = 8  # level-1 models of a stack: the best of each family, then the best overall
STACK_FOLDS = 5        # folds of the level-2 model's own out-of-fold score


@dataclass
class _Stack:
    """A stacking candidate: its level-1 trials, the level-2 model's nested OOF output and the report."""

    members: list[TrialRecord]
    features: np.ndarray     # level-1 OOF outputs side by side (``stack_features``) on the OOF rows
    oof: np.ndarray          # the level-2 model's own out-of-fold output on the same rows
    threshold: float | None
    info: dict[str, Any]

    def refit(self, data: _Data, settings: SearchSettings) -> TabularModel:
        """Members refitted on all rows, the level-2 model fitted on all their OOF outputs."""
        fitted, params = _fit_members(self.members, data, settings)
        level2 = level2_model(settings.task, seed=settings.seed)
        level2.fit(self.features, data.y_eval)
        estimator = stack_estimator(fitted, level2, task=settings.task, n_classes=data.n_classes)
        description = {"families": [r.family for r in self.members], "members": [r.number for r in self.members],
                       "weights": [1.0 / len(self.members)] * len(self.members), "params": params,
                       "stacked": {"level2": type(level2).__name__}}
        return TabularModel.from_fitted(schema=data.schema, task=settings.task, classes=data.classes,
                                        estimator=estimator, threshold=self.threshold, description=description,
                                        family="stacked")


def _stack_members(ranked: list[TrialRecord], settings: SearchSettings) -> list[TrialRecord]:
    """The best trial of every family, then the best trials overall, at most ``MAX_STACK_MEMBERS``."""
    out: list[TrialRecord] = []
    for family in dict.fromkeys(r.family for r in ranked):
        out.append(next(r for r in ranked if r.family == family))
    for r in ranked[: settings.ensemble_size]:
        if r not in out:
            out.append(r)
    keep = {r.number for r in out[:MAX_STACK_MEMBERS]}
    return [r for r in ranked if r.number in keep]


def _try_stack(ranked: list[TrialRecord], data: _Data, settings: SearchSettings, work_dir: Path,
               to_beat: float) -> _Stack | None:
    """Stacking (issue 27): a level-2 model (``ensemble.level2_model``) over the OOF outputs of the
    best trials of every family, scored out of fold itself (``STACK_FOLDS`` folds over the OOF rows,
    so it is not scored on the rows it was fitted on). Kept only when that score beats ``to_beat``, the
    best single model's or the greedy blend's (whose weights were chosen on the same rows: the stack
    has to beat an optimistic figure). Not tried under ``train.max_latency_ms`` (the trimming there
    works on blends), nor with fewer than two members."""
    members = _stack_members(ranked, settings)
    if len(members) < 2:
        return None
    if settings.max_latency_ms is not None:
        return _Stack(members, np.empty(0), np.empty(0), None,
                      {"kept": False, "reason": "not tried under train.max_latency_ms"})
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold

    features = stack_features([_load_oof(r, data, settings, work_dir) for r in members], settings.task)
    y = data.y_eval
    oof = _empty_output(len(y), data.n_classes, settings.task)
    splitter = (KFold(STACK_FOLDS, shuffle=True, random_state=settings.seed) if settings.task == "regression"
                else StratifiedKFold(min(STACK_FOLDS, int(np.bincount(y).min())) or 2, shuffle=True,
                                     random_state=settings.seed))
    level2 = level2_model(settings.task, seed=settings.seed)
    try:
        for tr, va in splitter.split(features, y):
            fitted = clone(level2).fit(features[tr], y[tr])
            if settings.task == "regression":
                oof[va] = fitted.predict(features[va])
            else:
                oof[np.ix_(va, fitted.classes_.astype(int))] = fitted.predict_proba(features[va])
    except ValueError as exc:  # a class too rare to stratify, a fold without some class
        return _Stack(members, features, oof, None, {"kept": False, "reason": f"not scored: {exc}"})
    oof = np.nan_to_num(oof, nan=0.0)
    value, threshold = _score_oof(oof, data, settings)
    maximize = direction(settings.metric) == "maximize"
    better = bool(np.isfinite(value) and (value > to_beat if maximize else value < to_beat))
    info = {"members": [r.number for r in members], "families": [r.family for r in members],
            "level2": type(level2).__name__, "score": float(value), "to_beat": float(to_beat), "kept": better,
            "reason": (f"the level-2 model scores {settings.metric} {shown_number(value)} out of fold, "
                       f"{'better than' if better else 'no better than'} the best single model or blend "
                       f"({shown_number(to_beat)})")}
    return _Stack(members, features, oof, threshold, info)


def _refit(members: list[TrialRecord], weights: list[float], threshold: float | None, data: _Data,
           settings: SearchSettings) -> TabularModel:
    """Refit each member on all fold rows (boosting rounds scaled to the larger data) and wrap them."""
    fitted, used_params = _fit_members(members, data, settings)
    return _wrap(members, fitted, used_params, weights, threshold, data, settings)


def _fit_members(members: list[TrialRecord], data: _Data,
                 settings: SearchSettings) -> tuple[list[Any], list[dict[str, Any]]]:
    """Each member fitted on all fold rows, boosting rounds scaled to the larger data: (pipelines, params)."""
    mean_train = float(np.mean([len(tr) for tr, _ in data.folds]))
    rows = data.fit_idx
    fitted, used_params = [], []
    for rec in members:
        rounds = {}
        if rec.best_iteration:
            rounds = _rounds(rec.family, max(1, int(round(rec.best_iteration * len(rows) / mean_train))))
        params = {**rec.params, **rounds}
        pipe = _build(rec.family, params, data, settings)
        fit_estimator(pipe, data.X.iloc[rows], data.y[rows], task=settings.task,
                      class_weight=settings.class_weight)
        fitted.append(pipe)
        used_params.append(params)
    return fitted, used_params


def _wrap(members: list[TrialRecord], fitted: list[Any], params: list[dict[str, Any]], weights: list[float],
          threshold: float | None, data: _Data, settings: SearchSettings) -> TabularModel:
    """The model of fitted member pipelines: the pipeline itself for one, their blend for several."""
    estimator = fitted[0] if len(fitted) == 1 else blend_estimator(
        fitted, weights, task=settings.task, n_classes=data.n_classes)
    description = {"families": [r.family for r in members], "members": [r.number for r in members],
                   "weights": [float(w) for w in weights], "params": params}
    family = members[0].family if len(members) == 1 else "ensemble"
    return TabularModel.from_fitted(schema=data.schema, task=settings.task, classes=data.classes,
                                    estimator=estimator, threshold=threshold, description=description,
                                    family=family, params=params[0] if len(members) == 1 else None)
