"""The recommendation search on the shared driver (:mod:`modelloop.training.search`).

A trial is one recommender with its parameters, fitted on the train split less a seeded validation
share of its interactions and valued on that share by ``train.metric`` (NDCG@k by default; RMSE or MAE
for explicit ratings when chosen), with the training items excluded and ``model.relevant_rating``
applied as in the final evaluation. Every
recommender is tried at its defaults first, so each has a trial however short the budget. The best
trial's recommender is then fitted on the whole train split.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from ...evaluation.metrics import direction
from ...training.search import SearchResult, TrialRecord, finished, open_study, ranked, search_loop
from .data import Interactions
from .metrics import ranking_metrics, rating_metrics, relevant
from .kinds import DEFAULTS, build_recommender

__all__ = ["RecommendSearch", "run_recommend_search", "suggest_params", "validation_rows"]

VALIDATION_SHARE = 0.2


def suggest_params(trial: Any, models: list[str]) -> dict[str, Any]:
    """The space: a recommender, then its own parameters (popularity and content have none)."""
    name = trial.suggest_categorical("recommender", list(models))
    params: dict[str, Any] = {"recommender": name}
    if name in ("itemknn", "userknn"):
        params["neighbors"] = trial.suggest_int("neighbors", 5, 200, log=True)
        params["shrink"] = trial.suggest_float("shrink", 0.0, 100.0)
    elif name == "hybrid":  # the blend's weights; its parts at their defaults
        for part in ("w_knn", "w_factors", "w_content", "w_popularity"):
            params[part] = trial.suggest_float(part, 0.0, 1.0)
    elif name in ("mf", "als", "bpr"):
        params["factors"] = trial.suggest_int("factors", 8, 128, log=True)
        if name == "mf":
            params["reg"] = trial.suggest_float("reg", 0.5, 50.0, log=True)
        elif name == "als":
            params["reg"] = trial.suggest_float("reg", 0.1, 500.0, log=True)
            params["alpha"] = trial.suggest_float("alpha", 1.0, 100.0, log=True)
        else:
            params["lr"] = trial.suggest_float("lr", 0.005, 0.2, log=True)
            params["reg"] = trial.suggest_float("reg", 1e-5, 0.05, log=True)
    return params


def validation_rows(n: int, seed: int) -> np.ndarray:
    """A seeded mask of the train interactions held out to value trials."""
    return np.random.default_rng(seed).random(n) < VALIDATION_SHARE


@dataclass
class RecommendSearch:
    inter: Interactions      # the train split's interactions
    explicit: bool
    models: list[str]
    metric: str
    k: int
    epochs: int
    seed: int
    budget: float | None
    n_trials: int | None
    side: Any = None         # the items' feature matrix (content.item_matrix), for content and hybrid
    relevant_rating: float | None = None  # ratings: a held-out one below it is no hit (None: every one is)

    def fit(self, name: str, params: dict[str, Any], rows: np.ndarray | None = None) -> Any:
        R = self.inter.matrix(rows, explicit=self.explicit)
        return build_recommender(name, params).fit(R, explicit=self.explicit, seed=self.seed, epochs=self.epochs,
                                                   side=self.side)

    def value(self, rec: Any, fit_rows: np.ndarray, held: np.ndarray) -> float:
        """``metric`` of ``rec`` (fitted on ``fit_rows``) on the ``held`` interactions."""
        inter = self.inter
        if self.metric in ("rmse", "mae"):
            return float(rating_metrics(inter.values[held], rec.predict(inter.u[held], inter.i[held]))[self.metric]
                         or 0.0)
        seen = inter.matrix(fit_rows).tocsr()
        if self.explicit and self.relevant_rating is not None:
            held = held[relevant(inter.values[held], self.relevant_rating)]
        users = np.unique(inter.u[held])
        truth = []
        for u in users.tolist():
            items = np.unique(inter.i[held][inter.u[held] == u])
            truth.append(items[~np.isin(items, seen.indices[seen.indptr[u]:seen.indptr[u + 1]])])
        keep = np.array([len(t) > 0 for t in truth], dtype=bool)
        users, truth = users[keep], [t for t, k in zip(truth, keep, strict=True) if k]

        def scores_of(block: np.ndarray) -> np.ndarray:
            s = np.asarray(rec.user_scores(block), dtype=np.float64)
            for row, u in enumerate(block.tolist()):
                s[row, seen.indices[seen.indptr[u]:seen.indptr[u + 1]]] = -np.inf
            return s

        counts = np.asarray((seen > 0).sum(axis=0)).ravel().astype(np.float64)
        figures, _ = ranking_metrics(users, truth, scores_of, k=self.k, counts=counts,
                                     n_train_users=int((np.diff(seen.indptr) > 0).sum()))
        return float(figures.get(self.metric) or 0.0)


def run_recommend_search(job: RecommendSearch, *, storage: str, study_name: str,
                         on_trial: Callable[[TrialRecord], Any] | None = None,
                         progress: Callable[[int, float], None] | None = None) -> SearchResult:
    """Trials on the shared driver; the result's ``best_single`` names the chosen recommender."""
    inter = job.inter
    fingerprint = json.dumps([len(inter.u), len(inter.users), len(inter.items), float(np.round(inter.values.sum(), 6)),
                              job.models, job.metric, job.k, job.epochs, job.seed,
                              *([job.relevant_rating] if job.relevant_rating is not None else [])])
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress is the caller's to show
    try:
        study = open_study(storage, study_name, metric=job.metric, fingerprint=fingerprint, seed=job.seed,
                           startup_trials=len(job.models), differs="the train interactions or the model "
                           "section changed; a new dataset version starts a new search")
        return _search(job, study, on_trial, progress)
    finally:
        optuna.logging.set_verbosity(level)


def _search(job: RecommendSearch, study: optuna.Study, on_trial: Callable[[TrialRecord], Any] | None,
            progress: Callable[[int, float], None] | None) -> SearchResult:
    resumed = len(finished(study))
    if resumed == 0:  # every recommender at its defaults first
        for name in job.models:
            study.enqueue_trial({"recommender": name, **DEFAULTS.get(name, {})})
    held = validation_rows(len(job.inter.u), job.seed)
    fit_rows = np.flatnonzero(~held)

    def run_trial(trial: Any, deadline: float) -> TrialRecord:
        started = time.monotonic()
        params = suggest_params(trial, job.models)
        name = params.pop("recommender")
        value = job.value(job.fit(name, params, fit_rows), fit_rows, np.flatnonzero(held))
        seconds = time.monotonic() - started
        trial.set_user_attr("duration_s", seconds)
        study.tell(trial, value)
        return TrialRecord(trial.number, name, params, value, "complete", seconds)

    search_loop(study, run_trial, budget=job.budget, n_trials=job.n_trials, on_trial=on_trial, progress=progress)
    records = [TrialRecord(t.number, str(t.params.get("recommender")),
                           {k: v for k, v in t.params.items() if k != "recommender"}, t.value, "complete",
                           float(t.user_attrs.get("duration_s", 0.0))) for t in ranked(study)]
    best = records[0]
    return SearchResult(model=None, metric=job.metric, direction=direction(job.metric),
                        validation_score=float(best.value or 0.0), best_single=best, ensemble=None, threshold=None,
                        trials=records, resumed_trials=resumed)
