"""The search over image-model configurations on the shared Optuna driver (``training/search.py``): the
configured values are the first trial, the study resumes across runs (a killed fine-tuning trial is
queued again and resumes from its epoch checkpoint), the budget spans every run of the study."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ...errors import ModelloopError
from ...evaluation.metrics import direction
from ...training.search import (STATE_NAMES, SearchResult, TrialRecord, finished, open_study, ranked, run_and_tell,
                                 search_loop)
from .config import ImageModelConfig
from .fit import ImageJob, better, params_key, run_params

__all__ = ["HEAD_TRIALS", "SearchSettings", "default_params", "run_image_search", "suggest_params"]

HEAD_TRIALS = 20  # trial cap of a head search when train.trials is not set (one dimension: C)


def default_params(settings: ImageModelConfig) -> dict[str, Any]:
    """The configured values, in search-space names: the first trial of every search."""
    if settings.method == "head":
        return {"head_c": settings.head_c}
    return {"learning_rate": settings.resolved_learning_rate(), "epochs": settings.epochs,
            "batch_size": settings.batch_size, "augment": settings.augment}


def suggest_params(trial: optuna.Trial, settings: ImageModelConfig) -> dict[str, Any]:
    """The search space of the method; each range contains the configured value."""
    if settings.method == "head":
        return {"head_c": trial.suggest_float("head_c", min(1e-3, settings.head_c), max(1e2, settings.head_c),
                                              log=True)}
    lr = settings.resolved_learning_rate()
    low, high = (1e-4, 3e-3) if settings.method == "last_blocks" else (3e-5, 1e-3)
    return {
        "learning_rate": trial.suggest_float("learning_rate", min(low, lr), max(high, lr), log=True),
        "epochs": trial.suggest_int("epochs", 1, max(2, 2 * settings.epochs)),
        "batch_size": trial.suggest_categorical("batch_size", sorted({16, 32, settings.batch_size})),
        "augment": trial.suggest_float("augment", 0.0, max(1.0, settings.augment)),
    }


@dataclass
class SearchSettings:
    budget: float | None
    n_trials: int | None
    search: bool
    warm_start: list[dict[str, Any]] = field(default_factory=list)


def _fingerprint(job: ImageJob) -> str:
    h = hashlib.sha256(repr((job.method, job.metric, [str(c) for c in job.classes], job.settings.backbone,
                             job.settings.image_size)).encode())
    for part in (job.y_fit, job.y_val):
        h.update(np.ascontiguousarray(part).tobytes() + b"|")
    h.update(hashlib.sha256(np.ascontiguousarray(job.x_val[:, ::8, ::8]).tobytes()).digest())
    return h.hexdigest()


def _record_of(t: optuna.trial.FrozenTrial, method: str) -> TrialRecord:
    value = t.value if t.state == TrialState.COMPLETE else None
    return TrialRecord(t.number, method, dict(t.params), value, STATE_NAMES[t.state],
                       float(t.user_attrs.get("duration_s", 0.0)), t.user_attrs.get("best_epoch"),
                       t.user_attrs.get("error"))


def _trial_file(work_dir: Path, number: int) -> Path:
    return work_dir / f"trial_{number}.npz"


def _run_trial(study: optuna.Study, trial: optuna.Trial, job: ImageJob, work_dir: Path,
               deadline: float) -> tuple[TrialRecord, dict]:
    params = suggest_params(trial, job.settings)
    checkpoint = work_dir / f"ckpt-{params_key(job, params)}.pt"

    def fit() -> dict[str, Any]:
        info = run_params(job, params, checkpoint=checkpoint, deadline=deadline, trial=trial)
        _keep_if_best(study, job, work_dir, trial.number, float(info["value"]), info["payload"])
        checkpoint.unlink(missing_ok=True)  # a killed trial keeps it: the next run resumes from it
        for k in ("epochs_run", "best_epoch", "precision", "resumed_from_epoch", "history"):
            trial.set_user_attr(k, info[k])
        return info

    frozen, info = run_and_tell(study, trial, fit, on_pruned=lambda: checkpoint.unlink(missing_ok=True))
    return _record_of(frozen, job.method), {"history": info.get("history", [])}


def _keep_if_best(study: optuna.Study, job: ImageJob, work_dir: Path, number: int, value: float,
                  payload: dict[str, np.ndarray]) -> None:
    """Keep the weights of the best trial so far on disk (only that one)."""
    ranked_trials = ranked(study)
    best = ranked_trials[0] if ranked_trials else None
    if best is not None and not better(value, best.value, job.metric):
        return
    path = _trial_file(work_dir, number)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **{k.replace(".", "__"): v for k, v in payload.items()})  # type: ignore[arg-type]
    os.replace(tmp, path)
    for t in ranked_trials:
        _trial_file(work_dir, t.number).unlink(missing_ok=True)


def _load_payload(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k.replace("__", "."): z[k] for k in z.files}


def run_image_search(job: ImageJob, *, storage: str, study_name: str, work_dir: Path, settings: SearchSettings,
                     on_trial: Callable[[TrialRecord, dict], None] | None = None,
                     progress: Callable[[int, float], None] | None = None) -> tuple[dict, SearchResult]:
    """Trials of ``job`` in an Optuna study (resumed when it exists); the best trial's params and weights,
    and the SearchResult every family's registration reads."""
    work_dir.mkdir(parents=True, exist_ok=True)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(storage, study_name, metric=job.metric, fingerprint=_fingerprint(job), seed=job.seed,
                           startup_trials=3, differs="resume with the same images and config, or change "
                                                     "model/train settings to start a new study")
        resumed = len(finished(study))
        _loop(study, job, work_dir, settings, on_trial, progress)
        return _conclude(study, job, work_dir, resumed)
    finally:
        optuna.logging.set_verbosity(level)


def _loop(study: optuna.Study, job: ImageJob, work_dir: Path, settings: SearchSettings,
          on_trial: Callable | None, progress: Callable | None) -> None:
    defaults = default_params(job.settings)
    if not settings.search:  # the configured values, once
        if any(t.params == defaults for t in ranked(study)):
            return
        if not any(t.system_attrs.get("fixed_params") == defaults
                   for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
            study.enqueue_trial(defaults)
        budget: float | None = None
        n_trials: int | None = len(finished(study)) + 1
    else:
        for params in [defaults, *settings.warm_start]:
            study.enqueue_trial(params, skip_if_exists=True)
        budget, n_trials = settings.budget, settings.n_trials
    search_loop(study, lambda trial, deadline: _run_trial(study, trial, job, work_dir, deadline),
                budget=budget, n_trials=n_trials, progress=progress,  # stops after an epoch
                on_trial=(lambda result: on_trial(*result)) if on_trial is not None else None)


def _conclude(study: optuna.Study, job: ImageJob, work_dir: Path, resumed: int) -> tuple[dict, SearchResult]:
    records = sorted((_record_of(t, job.method) for t in finished(study)), key=lambda r: r.number)
    ranked_trials = ranked(study)
    if not ranked_trials:
        first = next((r.error for r in records if r.error), "no trial finished within the budget")
        raise ModelloopError(f"no image-model trial completed; first error: {first}. Fix the data or raise "
                             "train.budget / train.trials and run again")
    best = ranked_trials[0]
    params = suggest_params(optuna.trial.FixedTrial(best.params), job.settings)  # type: ignore[arg-type]
    payload = _load_payload(_trial_file(work_dir, best.number))
    if job.method == "head" or payload is None:  # a head refits in milliseconds; lost weights: train again
        result = run_params(job, params)
    else:
        attrs = best.user_attrs
        result = {"value": best.value, "payload": payload, "epochs_run": attrs.get("epochs_run", 0),
                  "best_epoch": attrs.get("best_epoch", 0), "history": attrs.get("history", []),
                  "precision": attrs.get("precision", "fp32"), "resumed_from_epoch": 0}
    best_record = next(r for r in records if r.number == best.number)
    summary = SearchResult(model=None, metric=job.metric, direction=direction(job.metric),  # type: ignore[arg-type]
                           validation_score=float(best.value or 0.0), best_single=best_record, ensemble=None,
                           threshold=None, trials=records, resumed_trials=resumed)
    return {"params": params, "result": result}, summary
