"""The Optuna search driver every family shares: the study, its stale trials, the budget and the loop.

A family brings what differs (its search space, how one trial is fitted and scored, its fingerprint
of the data); everything about running trials is written once here:

* :func:`open_study` creates or resumes the study, refuses one started on other data or settings
  (``modelloop_fingerprint``), fails the trials a killed process left RUNNING and queues their
  parameters again, and seeds the sampler past the trials already there (so a resumed search does
  not replay the first run's random start-up suggestions).
* :func:`search_loop` runs trials until ``n_trials`` finished trials or the time ``budget``, which
  spans every run of the study (``modelloop_spent_s``). Every trial, the first included, is given the
  budget's deadline and must stop there with what it reached (a fine-tune after the epoch or step that
  passes it, a boosted model after the round that passes it); while no trial has completed, one trial
  runs even when the budget is already spent, so a search ends with one model. An interrupted trial
  is failed and queued again.
* :func:`finished`, :func:`completed`, :func:`ranked`, :func:`spent`: what counts, in the study's order of merit.
* :func:`run_and_tell` and :func:`early_stopping_epochs`: one trial of a family that trains networks
  (how its outcome is told) and its early-stopped epochs (history, best epoch, checkpoint, pruning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError
from ..evaluation.metrics import direction

__all__ = ["FINGERPRINT_KEY", "SPENT_KEY", "STATE_NAMES", "SearchResult", "TrialRecord", "abandon",
           "completed", "early_stopping_epochs", "finished", "open_study", "ranked", "run_and_tell", "search_loop",
           "spent", "tpe_sampler"]

SPENT_KEY = "modelloop_spent_s"
FINGERPRINT_KEY = "modelloop_fingerprint"
STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
R = TypeVar("R")


@dataclass
class TrialRecord:
    """One finished trial, as the caller logs it (``params`` in the family's native names)."""

    number: int
    family: str
    params: dict[str, Any]
    value: float | None
    state: str                      # "complete" | "pruned" | "failed"
    duration_s: float
    best_iteration: int | None = None
    error: str | None = None
    stopped_by_budget: bool = False  # the deadline cut the trial's fit short (its result is what it reached)


@dataclass
class SearchResult:
    """The chosen model and how it was chosen; scores are OOF scores with the tuned threshold."""

    model: Any                      # the family's model object (filled in by the caller for text)
    metric: str
    direction: str
    validation_score: float
    best_single: TrialRecord
    ensemble: dict[str, Any] | None
    threshold: float | None
    trials: list[TrialRecord]
    resumed_trials: int
    latency: dict[str, Any] | None = None  # with max_latency_ms: what was timed and what was chosen
    # how far to trust validation_score (tabular): k-fold repeats, the score's std over folds
    # ("spread") and, on a small table, whether the tuned threshold beat the noise ("threshold")
    cv: dict[str, Any] | None = None
    # seconds of the search (within train.budget) and of choosing and refitting after it (outside it)
    seconds: dict[str, float] | None = None



def open_study(storage: str, study_name: str, *, metric: str, fingerprint: str, seed: int,
               startup_trials: int, differs: str, group: bool = False) -> optuna.Study:
    """Create or resume ``study_name``; ``differs`` says, in the user's terms, what a fingerprint
    mismatch means and how to start a new study."""
    goal = optuna.study.StudyDirection.MAXIMIZE if direction(metric) == "maximize" \
        else optuna.study.StudyDirection.MINIMIZE
    study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True, direction=goal,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                                                   n_warmup_steps=1))
    known = study.user_attrs.get(FINGERPRINT_KEY)
    if known is None:
        study.set_user_attr(FINGERPRINT_KEY, fingerprint)
    elif known != fingerprint:
        raise ConfigError(f"study '{study_name}' was started with other data or settings ({differs})")
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        abandon(study, stale)
    study.sampler = tpe_sampler(seed + len(study.trials), group=group)
    return study


def tpe_sampler(seed: int, *, group: bool, constant_liar: bool = False) -> optuna.samplers.TPESampler:
    """The search's sampler: multivariate TPE; ``constant_liar`` when peers ask at the same time
    (``train.parallel``), so running trials count as bad guesses rather than being suggested again."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=group, constant_liar=constant_liar)


def abandon(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial that did not end (interrupted, or its process killed): failed, and its parameters
    queued again so the next run tries them first (a fine-tuning trial resumes from its checkpoint)."""
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    params = trial.system_attrs.get("fixed_params") or trial.params
    if params:
        study.enqueue_trial(dict(params))


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count: complete, pruned, or failed by an error (its ``error`` attr; not abandoned).
    Not ``duration_s``: a trial sets it just before its tell, so one killed in between (kill -9, a
    ``train.parallel`` worker whose search died, Ctrl-C) has it, and its abandon made it count."""
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in done or (t.state == TrialState.FAIL and "error" in t.user_attrs)]


def ranked(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete trials, best first (ties: the earlier trial)."""
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=lambda t: (sign * float(t.value or 0.0), t.number))


def spent(study: optuna.Study) -> float:
    """Seconds of search in earlier runs: wall time recorded after each trial, or (for studies from
    elsewhere) the finished trials' durations. Time inside a killed process's last trial is lost."""
    recorded = study.user_attrs.get(SPENT_KEY)
    if recorded is not None:
        return float(recorded)
    return float(sum(t.user_attrs.get("duration_s", 0.0) for t in finished(study)))


def search_loop(study: optuna.Study, run_trial: Callable[[optuna.Trial, float], R], *, budget: float | None,
                n_trials: int | None, on_trial: Callable[[R], Any] | None = None,
                progress: Callable[[int, float], None] | None = None) -> None:
    """Ask, run, record: ``run_trial(trial, deadline)`` fits and scores one trial and tells the study.
    Every trial gets the budget's deadline (``inf`` without a budget) and must stop at it with what it
    reached; while no trial has completed, one trial runs even past a spent budget (a search ends with
    one model: the trial, told its deadline has passed, stops at its first boundary)."""
    spent_before = spent(study)
    start = time.monotonic()
    deadline = start + budget - spent_before if budget is not None else math.inf
    n_done = len(finished(study))
    ran = 0
    while (n_trials is None or n_done < n_trials) and (time.monotonic() < deadline
                                                        or (not ran and not completed(study))):
        trial = study.ask()
        try:
            result = run_trial(trial, deadline)
        except KeyboardInterrupt:
            abandon(study, next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number))
            raise
        n_done, ran = n_done + 1, ran + 1
        seconds = spent_before + time.monotonic() - start
        study.set_user_attr(SPENT_KEY, seconds)
        if on_trial is not None:
            on_trial(result)
        if progress is not None:
            progress(n_done, seconds)
    if ran:  # as of the check that ended the loop: a trial recorded just before the deadline left the next
        # run a sliver of budget, which it spent starting a trial the deadline cut at once
        study.set_user_attr(SPENT_KEY, spent_before + time.monotonic() - start)


def completed(study: optuna.Study) -> bool:
    """Whether some trial of the study has completed (a search past its deadline then has its model)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


# ---------------------------------------------------------------------------------------------- neural trials
def run_and_tell(study: optuna.Study, trial: optuna.Trial, fit: Callable[[], dict[str, Any]],
                 *, on_pruned: Callable[[], Any] | None = None) -> tuple[optuna.trial.FrozenTrial, dict[str, Any]]:
    """One trial of a family that trains networks: ``fit()`` (``{"value", ...}``) run, the outcome told to
    the study. A pruned trial calls ``on_pruned`` (e.g. to drop its checkpoint); a ModelloopError (the
    user's data or config) fails the trial and goes on up; any other error fails the trial with its
    message in ``user_attrs["error"]`` and the search goes on; Ctrl-C goes up untold (the driver queues
    the parameters again: a fine-tuning trial then resumes from its checkpoint)."""
    from ..errors import ModelloopError

    t0 = time.monotonic()
    state, value, info = TrialState.COMPLETE, None, {}
    try:
        info = fit()
        value = float(info["value"])
    except optuna.TrialPruned:
        state = TrialState.PRUNED
        if on_pruned is not None:
            on_pruned()
    except ModelloopError:
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # a failed fit is recorded, the search goes on
        state = TrialState.FAIL
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
    trial.set_user_attr("duration_s", time.monotonic() - t0)
    return study.tell(trial, value if state == TrialState.COMPLETE else None, state=state), info


def early_stopping_epochs(state: dict[str, Any], epochs: int, run_epoch: Callable[[int], tuple[float, dict]], *,
                          metric: str, patience: int, deadline: float, snapshot: Callable[[], Any],
                          save: Callable[[], None], trial: optuna.Trial | None = None) -> None:
    """Epochs ``state["epoch"]..epochs-1`` of a fine-tuning run, early-stopped on the validation score.

    ``run_epoch(epoch) -> (validation score, history fields)``; after each epoch the state (``history``,
    ``best`` = ``snapshot()`` of the best epoch, ``best_score``, ``best_epoch``, ``bad``, ``epoch``) is
    updated and ``save()`` writes the checkpoint, then the Optuna trial (if any) may prune. Stops after
    ``patience`` epochs without a better score or past ``deadline``."""
    maximize = direction(metric) == "maximize"
    for epoch in range(int(state["epoch"]), epochs):
        t0 = time.monotonic()
        value, fields = run_epoch(epoch)
        state["history"].append({"epoch": epoch + 1, **fields, f"valid_{metric}": value,
                                 "seconds": round(time.monotonic() - t0, 3)})
        best = state["best_score"]
        if math.isfinite(value) and (best is None or (value > best if maximize else value < best)):
            state.update(best=snapshot(), best_score=float(value), best_epoch=epoch + 1, bad=0)
        else:
            state["bad"] += 1
        state["epoch"] = epoch + 1
        save()
        if trial is not None:
            trial.report(float(value) if math.isfinite(value) else float("nan"), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if state["bad"] >= patience or time.monotonic() > deadline:
            break
