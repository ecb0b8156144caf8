"""The search over text-model configurations: Optuna, as the tabular search (storage URL, study
name, ``load_if_exists`` resume, the configured values as the first trial), within the run's
budget over all runs of a resumed search; each trial is one :func:`~.text_fit.run_params`."""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ...errors import ModelloopError
from ...evaluation.metrics import direction
from ...training.checkpoint import load_tensors, save_tensors
from .backbone import require_torch
from .config import TextModelConfig
from .fit import _better, FitJob
from ...training.search import STATE_NAMES, SearchResult, TrialRecord, finished, open_study, ranked, search_loop

if TYPE_CHECKING:
    from .candidates import Candidate

__all__ = ["CANDIDATE", "HEAD_TRIALS", "STALE_TRIALS", "default_params", "fair_best", "run_text_search", "space",
           "suggest_params", "warm_sets"]

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


CANDIDATE = "candidate"  # the study parameter naming the candidate of a trial (when there are several)
STALE_TRIALS = 40        # a budget-bound search with no trial cap stops after this many trials without a better one
_ROUND = 10


def space(trial: Any, cands: dict[str, Candidate]) -> tuple[str, dict[str, Any]]:
    """One trial's candidate and parameters; ``candidate`` is drawn only when there are several."""
    names = list(cands)
    name = trial.suggest_categorical(CANDIDATE, names) if len(names) > 1 else names[0]
    return name, cands[name].suggest(trial)


def _tagged(cands: dict[str, Candidate], name: str, params: dict[str, Any]) -> dict[str, Any]:
    return {CANDIDATE: name, **params} if len(cands) > 1 else dict(params)


def _split_params(cands: dict[str, Candidate], params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = str(params.get(CANDIDATE, next(iter(cands))))
    return name, {k: v for k, v in params.items() if k != CANDIDATE}


def _fingerprint(cands: dict[str, Candidate], job: FitJob | None, metric: str) -> str:
    first = next(iter(cands.values()))
    y_fit, y_val = (job.y_fit, job.y_val) if job is not None else (first.y_fit, first.y_val)  # type: ignore[attr-defined]
    h = hashlib.sha256(repr(([(n, c.family) for n, c in cands.items()], metric)).encode())
    jobs = [c.job for c in cands.values() if isinstance(getattr(c, "job", None), FitJob)]  # type: ignore[attr-defined]
    for each in jobs or ([job] if job is not None else []):
        h.update(repr((each.method, each.classes, len(each.added))).encode())
        h.update(repr([len(x) for x in each.val_ids]).encode())
    for part in (y_fit, y_val):
        h.update(np.ascontiguousarray(part).tobytes() + b"|")
    return h.hexdigest()


def _record_of(t: optuna.trial.FrozenTrial, cands: dict[str, Candidate]) -> TrialRecord:
    value = t.value if t.state == TrialState.COMPLETE else None
    name, _ = _split_params(cands, t.params)
    family = cands[name].family if name in cands else name
    return TrialRecord(t.number, family, dict(t.params), value, STATE_NAMES[t.state],
                       float(t.user_attrs.get("duration_s", 0.0)), t.user_attrs.get("best_epoch"),
                       t.user_attrs.get("error"))


def _trial_file(work_dir: Path, number: int) -> Path:
    return work_dir / f"trial_{number}.pt"


def _save_payload(path: Path, payload: dict[str, Any]) -> None:
    torch = require_torch()
    save_tensors(path, {k: (torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v)
                        for k, v in payload.items()})


@dataclass
class _SearchSettings:
    budget: float | None
    n_trials: int | None
    search: bool
    warm_start: list[dict[str, Any]] = field(default_factory=list)
    until_stale: bool = False  # no trial cap: search within the budget until STALE_TRIALS bring nothing better


def _warm_params(warm_start: list[dict[str, Any]] | None, settings: TextModelConfig) -> list[dict[str, Any]]:
    """Warm-start sets of this method, reduced to the search-space names."""
    names = set(default_params(settings))
    return [{k: v for k, v in w.items() if k in names} for w in warm_start or []
            if w.get("family", settings.method) == settings.method and names <= set(w)]


def warm_sets(warm_start: list[dict[str, Any]] | None, cands: dict[str, Candidate]) -> list[dict[str, Any]]:
    """Warm-start sets (e.g. the champion's ``best_params`` with its ``family``) of a candidate of this
    search, reduced to that candidate's names; sets of another method or backbone are ignored. A set
    lacking only names that joined the candidate's space later (its ``added_params``, e.g. TF-IDF's
    ``nb`` and ``seg_max``: a champion from before them) takes their defaults."""
    out = []
    for w in warm_start or []:
        name = w.get(CANDIDATE) or next((n for n, c in cands.items() if c.family == w.get("family")), None)
        if name not in cands or (w.get("family") not in (None, cands[name].family)):
            continue
        defaults = cands[name].defaults()
        if set(defaults) - set(w) <= set(getattr(cands[name], "added_params", ())):
            out.append(_tagged(cands, name, {k: w.get(k, v) for k, v in defaults.items()}))
    return out


def _run_trial(study: optuna.Study, trial: optuna.Trial, cands: dict[str, Candidate], metric: str,
               work_dir: Path, deadline: float) -> tuple[TrialRecord, dict]:
    t0 = time.monotonic()
    name, params = space(trial, cands)
    cand = cands[name]
    checkpoint = work_dir / cand.checkpoint_name(params) if cand.keeps_weights else None
    state, value, info = TrialState.COMPLETE, None, {}
    try:
        info = cand.run(params, checkpoint=checkpoint, deadline=deadline, trial=trial)
        value = float(info["value"])
        if cand.keeps_weights:
            _keep_if_best(study, metric, work_dir, trial.number, value, info["payload"])
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        for k in ("epochs_run", "best_epoch", "precision", "resumed_from_epoch"):
            trial.set_user_attr(k, info[k])
        if info.get("cv"):  # a cross-validated trial (crossval.py): its folds' scores and spread
            trial.set_user_attr("cv", info["cv"])
        trial.set_user_attr("history", info["history"])
    except KeyboardInterrupt:
        # the checkpoint stays: the driver queues these parameters again, and the next run resumes it
        raise
    except optuna.TrialPruned:
        state = TrialState.PRUNED
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
    except ModelloopError:
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # a failed fit is recorded, the search goes on
        state = TrialState.FAIL
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
    trial.set_user_attr("duration_s", time.monotonic() - t0)
    frozen = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    return _record_of(frozen, cands), {"history": info.get("history", []), "precision": info.get("precision")}


def _keep_if_best(study: optuna.Study, metric: str, work_dir: Path, number: int, value: float,
                  payload: dict[str, Any]) -> None:
    """Keep the weights of the best trial so far on disk (only that one: full models are large)."""
    ranked_trials = ranked(study)
    best = ranked_trials[0] if ranked_trials else None
    if best is not None and not _better(value, best.value, metric):
        return
    _save_payload(_trial_file(work_dir, number), payload)
    for t in ranked_trials:
        _trial_file(work_dir, t.number).unlink(missing_ok=True)


def run_text_search(cands: dict[str, Candidate], *, metric: str, seed: int, storage: str, study_name: str,
                    work_dir: Path, settings: _SearchSettings, job: FitJob | None = None,
                    on_trial: Callable[[TrialRecord, dict], None] | None = None,
                    progress: Callable[[int, float], None] | None = None) -> tuple[dict, SearchResult]:
    """Trials of the candidates in one Optuna study (resumed when it exists); returns the best trial's
    ``{"candidate", "params", "result"}`` and a SearchResult-shaped summary (``model`` filled in by the
    caller). ``job``: the PyTorch encoder's job when it is a candidate (its data enters the fingerprint)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # ``group``: conditional spaces
            study = open_study(storage, study_name, metric=metric, fingerprint=_fingerprint(cands, job, metric),
                               seed=seed, startup_trials=3, group=len(cands) > 1,
                               differs="resume with the same data and config, or change "
                                       "model/train settings to start a new study")
        resumed = len(finished(study))
        stopped = _search_loop(study, cands, metric, work_dir, settings, on_trial, progress)
        chosen, summary = _conclude(study, cands, metric, work_dir, resumed)
        chosen["stopped"] = stopped
        return chosen, summary
    finally:
        optuna.logging.set_verbosity(level)


def _search_loop(study: optuna.Study, cands: dict[str, Candidate], metric: str, work_dir: Path,
                 settings: _SearchSettings, on_trial: Callable | None, progress: Callable | None) -> str:
    """Run the trials; returns why the search stopped (configured | trials | budget | converged)."""
    # TF-IDF's configured trial first: seconds of work, so a search cut short by embedding still has a model
    first = sorted(cands, key=lambda n: cands[n].family != "tfidf")
    defaults = [_tagged(cands, n, cands[n].defaults()) for n in first]
    def run(trial: optuna.Trial, deadline: float) -> Any:
        return _run_trial(study, trial, cands, metric, work_dir, deadline)

    hook = (lambda result: on_trial(*result)) if on_trial is not None else None
    if not settings.search:  # the configured values of each candidate, once
        done = [t.params for t in ranked(study)]
        todo = [d for d in defaults if d not in done]
        for params in todo:
            if not _queued(study, params):  # (a killed run's trial is queued again by open_study)
                study.enqueue_trial(params)
        if todo:
            search_loop(study, run, budget=None, n_trials=len(finished(study)) + len(todo), progress=progress,
                        on_trial=hook)
        return "configured"
    for params in [*defaults, *settings.warm_start]:
        study.enqueue_trial(params, skip_if_exists=True)
    if not settings.until_stale:
        search_loop(study, run, budget=settings.budget, n_trials=settings.n_trials, progress=progress,
                    on_trial=hook)
        return "trials" if settings.n_trials is not None and len(finished(study)) >= settings.n_trials else "budget"
    while True:  # rounds of trials until the budget ends or the best has not moved for STALE_TRIALS trials
        before = len(finished(study))
        search_loop(study, run, budget=settings.budget, n_trials=before + _ROUND, progress=progress,
                    on_trial=hook)  # a fine-tune stops after the epoch that passes the deadline
        if len(finished(study)) < before + _ROUND:
            return "budget"
        best = ranked(study)
        if best and len(finished(study)) - best[0].number > STALE_TRIALS:
            return "converged"


def _queued(study: optuna.Study, params: dict[str, Any]) -> bool:
    return any(t.system_attrs.get("fixed_params") == params
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _conclude(study: optuna.Study, cands: dict[str, Candidate], metric: str, work_dir: Path,
              resumed: int) -> tuple[dict, SearchResult]:
    records = sorted((_record_of(t, cands) for t in finished(study)), key=lambda r: r.number)
    ranked_trials = [t for t in ranked(study) if _split_params(cands, t.params)[0] in cands]
    if not ranked_trials:
        first = next((r.error for r in records if r.error), "no trial finished within the budget")
        raise ModelloopError(f"no text-model trial completed; first error: {first}. Fix the data or raise "
                             "train.budget / train.trials and run again")
    best, compared = fair_best(ranked_trials, metric)
    name, _ = _split_params(cands, best.params)
    cand = cands[name]
    params = {**cand.defaults(), **_split_params(cands, best.params)[1]}  # a trial from before a new parameter: its default
    payload = load_tensors(_trial_file(work_dir, best.number)) if cand.keeps_weights else None
    cv = best.user_attrs.get("cv")
    if cv and hasattr(cand, "scored"):  # TF-IDF or a frozen head: its build refits it, the score is known
        result = cand.scored(float(best.value or 0.0), cv)
    elif payload is None:  # a head refits in seconds; lost weights: train again
        result = cand.run(params)
    else:
        attrs = best.user_attrs
        result = {"value": best.value, "payload": payload, "epochs_run": attrs.get("epochs_run", 0),
                  "best_epoch": attrs.get("best_epoch", 0), "history": attrs.get("history", []),
                  "precision": attrs.get("precision", "fp32"), "resumed_from_epoch": 0}
    best_record = next(r for r in records if r.number == best.number)
    summary = SearchResult(model=None, metric=metric, direction=direction(metric),  # type: ignore[arg-type]
                           validation_score=float(best.value or 0.0), best_single=best_record, ensemble=None,
                           threshold=None, trials=records, resumed_trials=resumed,
                           cv=_spread(cv) if cv else None)
    return {"candidate": name, "params": params, "result": result, "compared": compared}, summary


def fair_best(ranked_trials: list[optuna.trial.FrozenTrial], metric: str
              ) -> tuple[optuna.trial.FrozenTrial, dict[str, Any] | None]:
    """The winning trial of a study holding two kinds of score, and how the kinds were compared.

    A fine-tune's trial (no ``cv`` attribute) is scored on the validation rows; a TF-IDF or head trial
    by its cross-validation's mean over the fit and validation rows. The first is chosen among its
    trials on those few rows (and its epochs stopped on them), the second among its trials on every
    training row, so ranking the two values together weighs a noisy, optimistic figure against a
    steady one. Each kind's best trial is kept as ranked within its kind; the two are then compared on
    the same rows, the validation rows: the cross-validated trial's out-of-fold score there
    (``cv.val_score``: each row predicted by a model that did not see it) against the fine-tune's. A tie
    goes to the cross-validated trial. With one kind only, or no ``val_score`` (folds cut short by the
    budget), the best value wins as before. ``compared``: None, or ``{"rows", "fine_tune", "cross_validated",
    "winner"}`` (the two scores on the validation rows)."""
    first = ranked_trials[0]
    crossed = next((t for t in ranked_trials if t.user_attrs.get("cv")), None)
    tuned = next((t for t in ranked_trials if not t.user_attrs.get("cv")), None)
    if crossed is None or tuned is None or tuned.value is None:
        return first, None
    held = crossed.user_attrs["cv"].get("val_score")
    if held is None:
        return first, None
    winner = tuned if _better(float(tuned.value), float(held), metric) else crossed
    return winner, {"rows": "validation", "fine_tune": round(float(tuned.value), 4),
                    "cross_validated": round(float(held), 4), "winner": winner.number}


def _spread(cv: dict[str, Any]) -> dict[str, Any]:
    """The train summary's ``cv`` of a cross-validated winner, in the tabular search's keys (``folds``,
    ``repeats``, ``spread``: the std of its folds' scores) plus ``scores``, ``rows`` and ``folds_run``."""
    return {"folds": cv["folds"], "repeats": 1, "spread": round(float(cv["spread"]), 4), "scores": cv["scores"],
            "rows": cv["rows"], "folds_run": cv["folds_run"]}
