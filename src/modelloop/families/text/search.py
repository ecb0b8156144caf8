"""The search over text-model configurations: Optuna, as the tabular search (storage URL, study
name, ``load_if_exists`` resume, the configured values as the first trial), within the run's
budget over all runs of a resumed search; each trial is one :func:`~.text_fit.run_params`."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ...errors import ModelloopError
from ...evaluation.metrics import direction
from .backbone import require_torch
from .config import TextModelConfig
from .fit import _better, FitJob, _params_key, run_params
from ...training.search import STATE_NAMES, SearchResult, TrialRecord, finished, open_study, ranked, search_loop

if TYPE_CHECKING:
    pass

__all__ = ["HEAD_TRIALS", "default_params", "run_text_search", "suggest_params"]

HEAD_TRIALS = 30  # trial cap of a head search when train.trials is not set


def default_params(settings: TextModelConfig) -> dict[str, Any]:
    """The configured values, in search-space names: the first trial of every search."""
    if settings.method == "head":
        return {"head_c": settings.head_c}
    params: dict[str, Any] = {"learning_rate": settings.resolved_learning_rate(), "epochs": settings.epochs,
                              "batch_size": settings.batch_size}
    if settings.method == "lora":
        params.update(lora_r=settings.lora_r, lora_alpha=settings.lora_alpha)
    return params


def suggest_params(trial: optuna.Trial, settings: TextModelConfig) -> dict[str, Any]:
    """The search space of the method; each range contains the configured value."""
    if settings.method == "head":
        return {"head_c": trial.suggest_float("head_c", min(1e-3, settings.head_c),
                                              max(1e2, settings.head_c), log=True)}
    lr = settings.resolved_learning_rate()
    low, high = (1e-4, 3e-3) if settings.method == "lora" else (1e-5, 1e-4)
    params = {
        "learning_rate": trial.suggest_float("learning_rate", min(low, lr), max(high, lr), log=True),
        "epochs": trial.suggest_int("epochs", 1, max(2, 2 * settings.epochs)),
        "batch_size": trial.suggest_categorical("batch_size", sorted({8, 16, 32, settings.batch_size})),
    }
    if settings.method == "lora":
        params["lora_r"] = trial.suggest_categorical("lora_r", sorted({4, 8, 16, settings.lora_r}))
        params["lora_alpha"] = trial.suggest_categorical("lora_alpha", sorted({8, 16, 32, settings.lora_alpha}))
    return params


def _fingerprint(job: FitJob) -> str:
    h = hashlib.sha256(repr((job.method, job.metric, job.classes, len(job.added))).encode())
    for part in (job.y_fit, job.y_val):
        h.update(np.ascontiguousarray(part).tobytes() + b"|")
    h.update(repr([len(x) for x in job.val_ids]).encode())
    return h.hexdigest()


def _record_of(t: optuna.trial.FrozenTrial, method: str) -> TrialRecord:
    value = t.value if t.state == TrialState.COMPLETE else None
    return TrialRecord(t.number, method, dict(t.params), value, STATE_NAMES[t.state],
                       float(t.user_attrs.get("duration_s", 0.0)), t.user_attrs.get("best_epoch"),
                       t.user_attrs.get("error"))


def _trial_file(work_dir: Path, number: int) -> Path:
    return work_dir / f"trial_{number}.pt"


def _save_payload(path: Path, payload: dict[str, Any]) -> None:
    torch = require_torch()
    tensors = {k: (torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v) for k, v in payload.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(tensors, tmp)
    os.replace(tmp, path)


def _load_payload(path: Path, method: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    torch = require_torch()
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in blob.items()} if method == "head" else blob


@dataclass
class _SearchSettings:
    budget: float | None
    n_trials: int | None
    search: bool
    warm_start: list[dict[str, Any]] = field(default_factory=list)


def _warm_params(warm_start: list[dict[str, Any]] | None, settings: TextModelConfig) -> list[dict[str, Any]]:
    """Warm-start sets of this method, reduced to the search-space names."""
    names = set(default_params(settings))
    return [{k: v for k, v in w.items() if k in names} for w in warm_start or []
            if w.get("family", settings.method) == settings.method and names <= set(w)]


def _run_trial(study: optuna.Study, trial: optuna.Trial, job: FitJob, work_dir: Path,
               deadline: float) -> tuple[TrialRecord, dict]:
    t0 = time.monotonic()
    params = suggest_params(trial, job.settings)
    checkpoint = work_dir / f"ckpt-{_params_key(job, params)}.pt"
    state, value, info = TrialState.COMPLETE, None, {}
    try:
        info = run_params(job, params, checkpoint=checkpoint, deadline=deadline, trial=trial)
        value = float(info["value"])
        _keep_if_best(study, job, work_dir, trial.number, value, info["payload"])
        checkpoint.unlink(missing_ok=True)
        for k in ("epochs_run", "best_epoch", "precision", "resumed_from_epoch"):
            trial.set_user_attr(k, info[k])
        trial.set_user_attr("history", info["history"])
    except KeyboardInterrupt:
        # the checkpoint stays: the driver queues these parameters again, and the next run resumes it
        raise
    except optuna.TrialPruned:
        state = TrialState.PRUNED
        checkpoint.unlink(missing_ok=True)
    except ModelloopError:
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # a failed fit is recorded, the search goes on
        state = TrialState.FAIL
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
    trial.set_user_attr("duration_s", time.monotonic() - t0)
    frozen = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    return _record_of(frozen, job.method), {"history": info.get("history", []),
                                            "precision": info.get("precision")}


def _keep_if_best(study: optuna.Study, job: FitJob, work_dir: Path, number: int, value: float,
                  payload: dict[str, Any]) -> None:
    """Keep the weights of the best trial so far on disk (only that one: full models are large)."""
    ranked_trials = ranked(study)
    best = ranked_trials[0] if ranked_trials else None
    if best is not None and not _better(value, best.value, job.metric):
        return
    _save_payload(_trial_file(work_dir, number), payload)
    for t in ranked_trials:
        _trial_file(work_dir, t.number).unlink(missing_ok=True)


def run_text_search(job: FitJob, *, storage: str, study_name: str, work_dir: Path, settings: _SearchSettings,
                    on_trial: Callable[[TrialRecord, dict], None] | None = None,
                    progress: Callable[[int, float], None] | None = None) -> tuple[dict, SearchResult]:
    """Trials of ``job`` in an Optuna study (resumed when it exists); returns the best trial's
    (params, run_params result) and a SearchResult-shaped summary (``model`` filled in by the caller)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(storage, study_name, metric=job.metric, fingerprint=_fingerprint(job), seed=job.seed,
                           startup_trials=3, differs="resume with the same data and config, or change "
                                                     "model/train settings to start a new study")
        resumed = len(finished(study))
        _search_loop(study, job, work_dir, settings, on_trial, progress)
        return _conclude(study, job, work_dir, resumed)
    finally:
        optuna.logging.set_verbosity(level)


def _search_loop(study: optuna.Study, job: FitJob, work_dir: Path, settings: _SearchSettings,
                 on_trial: Callable | None, progress: Callable | None) -> None:
    defaults = default_params(job.settings)
    if not settings.search:  # the configured values, once
        if any(t.params == defaults for t in ranked(study)):
            return
        if not _queued(study, defaults):  # (a killed run's trial is queued again by open_study)
            study.enqueue_trial(defaults)
        budget: float | None = None
        n_trials: int | None = len(finished(study)) + 1
    else:
        for params in [defaults, *settings.warm_start]:
            study.enqueue_trial(params, skip_if_exists=True)
        budget, n_trials = settings.budget, settings.n_trials
    search_loop(study, lambda trial, deadline: _run_trial(study, trial, job, work_dir, deadline),
                budget=budget, n_trials=n_trials, progress=progress,
                on_trial=(lambda result: on_trial(*result)) if on_trial is not None else None)


def _queued(study: optuna.Study, params: dict[str, Any]) -> bool:
    return any(t.system_attrs.get("fixed_params") == params
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _conclude(study: optuna.Study, job: FitJob, work_dir: Path, resumed: int) -> tuple[dict, SearchResult]:
    records = sorted((_record_of(t, job.method) for t in finished(study)), key=lambda r: r.number)
    ranked_trials = ranked(study)
    if not ranked_trials:
        first = next((r.error for r in records if r.error), "no trial finished within the budget")
        raise ModelloopError(f"no text-model trial completed; first error: {first}. Fix the data or raise "
                             "train.budget / train.trials and run again")
    best = ranked_trials[0]
    params = suggest_params(optuna.trial.FixedTrial(best.params), job.settings)  # type: ignore[arg-type]
    payload = _load_payload(_trial_file(work_dir, best.number), job.method)
    if job.method == "head" or payload is None:  # head refits in milliseconds; lost weights: train again
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
