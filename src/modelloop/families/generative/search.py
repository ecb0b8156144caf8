"""The search over fine-tuning configurations, on the shared Optuna driver (``training/search.py``): the
configured values are the first trial; with ``model.search`` the learning rate, epochs and, for LoRA, the
rank, alpha and target modules are drawn within ``train.budget`` / ``train.trials``. ``train.budget`` bounds
every trial, the first and the configured one (``search: false``) included: a trial stops after the
optimizer step that passes the deadline, mid-epoch too, and is scored on what it reached
(``stopped_by_budget``). Each trial is one
:func:`~.fit.run_params`, scored by its validation loss (lower is better); the best trial's weights are
kept on disk, so the model is built without training it again."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ...errors import ModelloopError
from ...training.checkpoint import load_tensors, save_tensors
from ...training.search import STATE_NAMES, SearchResult, TrialRecord, finished, open_study, ranked, search_loop
from .config import GenerativeModelConfig
from .fit import DEFAULT_TARGETS, GenJob, params_key, params_of, run_params

__all__ = ["SEARCH_METRIC", "run_generative_search", "suggest_params"]

SEARCH_METRIC = "log_loss"  # the validation loss per completion token: minimised
TARGET_CHOICES = ("q_proj,v_proj", "q_proj,k_proj,v_proj,o_proj", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")


def suggest_params(trial: Any, settings: GenerativeModelConfig) -> dict[str, Any]:
    """The search space; each range contains the configured value."""
    lr = settings.resolved_learning_rate()
    low, high = (5e-5, 2e-3) if settings.method == "lora" else (5e-6, 1e-4)
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", min(low, lr), max(high, lr), log=True),
        "epochs": trial.suggest_int("epochs", 1, max(2, 2 * settings.epochs)),
    }
    if settings.method == "lora":
        targets = ",".join(settings.lora_target_modules or DEFAULT_TARGETS)
        params["lora_r"] = trial.suggest_categorical("lora_r", sorted({4, 8, 16, settings.lora_r}))
        params["lora_alpha"] = trial.suggest_categorical("lora_alpha", sorted({8, 16, 32, settings.lora_alpha}))
        params["lora_targets"] = trial.suggest_categorical("lora_targets", sorted({*TARGET_CHOICES, targets}))
    return params


def _fingerprint(job: GenJob) -> str:
    h = hashlib.sha256(repr((job.settings.method, job.fingerprint, job.settings.max_length)).encode())
    for part in (job.fit_ids, job.fit_labels, job.val_ids, job.val_labels):
        h.update(repr(part).encode() + b"|")
    if job.preference is not None:  # the rejected answers too (a study without them hashes as before)
        h.update(repr(job.preference).encode())
    return h.hexdigest()


def _record(t: optuna.trial.FrozenTrial, method: str) -> TrialRecord:
    value = t.value if t.state == TrialState.COMPLETE else None
    return TrialRecord(t.number, method, dict(t.params), value, STATE_NAMES[t.state],
                       float(t.user_attrs.get("duration_s", 0.0)), t.user_attrs.get("best_epoch"),
                       t.user_attrs.get("error"))


def _weights_file(work_dir: Path, number: int) -> Path:
    return work_dir / f"trial_{number}.pt"


def run_generative_search(job: GenJob, *, storage: str, study_name: str, work_dir: Path, budget: float | None,
                          n_trials: int | None, warm_start: list[dict[str, Any]] | None = None,
                          on_epoch: Callable[[dict[str, Any]], None] | None = None,
                          progress: Callable[[int, float], None] | None = None) -> tuple[dict, SearchResult]:
    """Trials in a (resumed) Optuna study; returns the best trial's params and result, and the summary."""
    work_dir.mkdir(parents=True, exist_ok=True)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(storage, study_name, metric=SEARCH_METRIC, fingerprint=_fingerprint(job), seed=job.seed,
                           startup_trials=3, differs="resume with the same data and config, or change model/train "
                                                     "settings to start a new study")
        resumed = len(finished(study))
        defaults = params_of(job.settings)
        if not job.settings.search:
            if not any(t.params == defaults for t in ranked(study)):
                if not any(t.system_attrs.get("fixed_params") == defaults
                           for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
                    study.enqueue_trial(defaults)
                _loop(study, job, work_dir, budget, len(finished(study)) + 1, on_epoch, progress)
        else:
            for params in [defaults, *(warm_start or [])]:
                if set(params) >= set(defaults):
                    study.enqueue_trial({k: params[k] for k in defaults}, skip_if_exists=True)
            _loop(study, job, work_dir, budget, n_trials, on_epoch, progress)
        return _conclude(study, job, work_dir, resumed)
    finally:
        optuna.logging.set_verbosity(level)


def _loop(study: optuna.Study, job: GenJob, work_dir: Path, budget: float | None, n_trials: int | None,
          on_epoch: Callable | None, progress: Callable | None) -> None:
    def run_trial(trial: optuna.Trial, deadline: float) -> TrialRecord:
        t0 = time.monotonic()
        params = suggest_params(trial, job.settings)
        checkpoint = work_dir / f"ckpt-{params_key(job, params)}.pt"
        state, value = TrialState.COMPLETE, None
        try:
            info = run_params(job, params, checkpoint=checkpoint, deadline=deadline, on_epoch=on_epoch)
            value = float(info["value"])
            _keep_if_best(study, work_dir, trial.number, value, info)
            checkpoint.unlink(missing_ok=True)
            for k in ("epochs_run", "best_epoch", "resumed_from_epoch", "tokens_per_s", "train_tokens",
                      "train_seconds", "history", "stopped_by_budget", "steps_configured", "steps_planned", "steps_run",
                      "last_step_lr", "load_seconds"):
                trial.set_user_attr(k, info[k])
        except ModelloopError:
            study.tell(trial, state=TrialState.FAIL)
            raise
        except KeyboardInterrupt:
            raise  # the checkpoint stays: the driver queues these parameters again, the next run resumes
        except Exception as exc:  # a failed fit is recorded, the search goes on
            state = TrialState.FAIL
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
        trial.set_user_attr("duration_s", time.monotonic() - t0)
        return _record(study.tell(trial, value if state == TrialState.COMPLETE else None, state=state),
                       job.settings.method)

    # every trial, the first included, stops at the budget's deadline (after one optimizer step at least)
    search_loop(study, run_trial, budget=budget, n_trials=n_trials, progress=progress)


def _keep_if_best(study: optuna.Study, work_dir: Path, number: int, value: float, info: dict[str, Any]) -> None:
    best = ranked(study)
    if best and best[0].value is not None and value >= float(best[0].value):
        return
    save_tensors(_weights_file(work_dir, number), info["weights"])
    for t in best:
        _weights_file(work_dir, t.number).unlink(missing_ok=True)


def _conclude(study: optuna.Study, job: GenJob, work_dir: Path, resumed: int) -> tuple[dict, SearchResult]:
    records = sorted((_record(t, job.settings.method) for t in finished(study)), key=lambda r: r.number)
    best_trials = ranked(study)
    if not best_trials:
        first = next((r.error for r in records if r.error), "no trial finished within the budget")
        raise ModelloopError(f"no fine-tuning trial completed; first error: {first}. Fix the data or raise "
                             "train.budget / train.trials and run again")
    best = best_trials[0]
    params = suggest_params(optuna.trial.FixedTrial(best.params), job.settings)
    weights = load_tensors(_weights_file(work_dir, best.number))
    if weights is not None:
        attrs = best.user_attrs
        result = {"value": best.value, "weights": weights,
                  **{k: attrs.get(k) for k in ("epochs_run", "best_epoch", "history", "tokens_per_s",
                                               "train_tokens", "train_seconds", "steps_configured", "steps_planned",
                                               "steps_run", "last_step_lr", "load_seconds")},
                  "resumed_from_epoch": 0,
                  "stopped_by_budget": bool(attrs.get("stopped_by_budget"))}
    else:  # the weights file was lost or torn: train the best configuration again
        result = run_params(job, params)
    record = next(r for r in records if r.number == best.number)
    summary = SearchResult(model=None, metric=SEARCH_METRIC, direction="minimize",
                           validation_score=float(best.value or 0.0), best_single=record, ensemble=None,
                           threshold=None, trials=records, resumed_trials=resumed)
    return {"params": params, "result": result}, summary
