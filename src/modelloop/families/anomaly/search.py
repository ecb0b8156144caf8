"""The anomaly family's search on the shared driver (:mod:`modelloop.training.search`), then the choice.

A trial is one detector with its parameters, fitted on the encoded train rows (labels are never read
to fit). Its value:

* with at least ``anomaly.min_labels`` labelled anomalies in the train split (and some normal rows):
  the average precision of its calibrated scores on the labelled rows;
* without: its agreement with the consensus (the Spearman correlation of its scores with the mean rank
  of every detector at its default settings): an unsupervised signal that keeps a detector's
  parameters from wandering off (Zhao et al.'s consensus-based selection).

Each trial's calibrated training scores are written to the study folder (``trial_N.npy``), so a resumed
search chooses among every trial. Then the best trial of each detector becomes a member. Without labels
the model is their ensemble, each member weighted by its agreement with the consensus times its
stability under subsampling (:func:`stability`: the same ranking from fits on different halves of the
rows), to the power ``SHARPNESS`` (:func:`unsupervised_weights`). With labels, each member is weighted by
its average precision on them above the labels' base rate, shrunk toward equal weights of the members
above it by the number of labelled anomalies (:func:`label_weights`: a handful of labels moves the weights
a little, many move them far; a member no better than random on them has none); that ensemble and the best single member compete on average precision, and the single member is
chosen only if it beats the ensemble by ``SINGLE_MARGIN`` (its figure is the best of several on the same
few labels, so it is optimistic). The choice and why is the train summary's ``selection`` (with the
agreement, stability or average precision, and weight of each member).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from ...training.search import SearchResult, TrialRecord, finished, open_study, ranked, search_loop
from .detectors import DETECTORS, build_detector, calibrate, training_scores

__all__ = ["DEFAULTS", "AnomalySearch", "consensus", "label_weights", "run_anomaly_search", "suggest_params"]


# scikit-learn's defaults (kNN: PyOD's k = 5 is noisier on small tables; 10 here), tried first
DEFAULTS: dict[str, dict[str, Any]] = {
    "iforest": {"iforest_trees": 100, "iforest_samples": 256, "iforest_features": 1.0},
    "knn": {"knn_k": 10, "knn_method": "largest"},
    "lof": {"lof_k": 20},
    "autoencoder": {"ae_hidden": 16, "ae_bottleneck": 2, "ae_lr": 1e-2},
}


def suggest_params(trial: Any, detectors: list[str]) -> dict[str, Any]:
    """The space: a detector, then its own parameters (ECOD and COPOD have none)."""
    name = trial.suggest_categorical("detector", list(detectors))
    params: dict[str, Any] = {"detector": name}
    if name == "iforest":
        params["iforest_trees"] = trial.suggest_int("iforest_trees", 50, 300, log=True)
        params["iforest_samples"] = trial.suggest_int("iforest_samples", 64, 1024, log=True)
        params["iforest_features"] = trial.suggest_float("iforest_features", 0.5, 1.0)
    elif name == "knn":
        params["knn_k"] = trial.suggest_int("knn_k", 3, 40, log=True)
        params["knn_method"] = trial.suggest_categorical("knn_method", ["largest", "mean"])
    elif name == "lof":
        params["lof_k"] = trial.suggest_int("lof_k", 5, 60, log=True)
    elif name == "autoencoder":
        params["ae_hidden"] = trial.suggest_categorical("ae_hidden", [8, 16, 32])
        params["ae_bottleneck"] = trial.suggest_int("ae_bottleneck", 1, 8, log=True)
        params["ae_lr"] = trial.suggest_float("ae_lr", 1e-3, 3e-2, log=True)
    return params


def default_detectors(settings: Any, n_columns: int) -> list[str]:
    """The detectors a search tries: ``anomaly.detectors`` when the config gives it (the autoencoder then
    needs PyTorch: a ConfigError naming the install), else for images (``anomaly.backbone``) kNN and LOF
    (``images.DEFAULT_DETECTORS``), else the five and, for wide data (at least ``WIDE_COLUMNS`` encoded
    columns) with PyTorch installed, the autoencoder."""
    from ...errors import ConfigError
    from .autoencoder import WIDE_COLUMNS, torch_available

    if "detectors" in settings.model_fields_set:
        if "autoencoder" in settings.detectors and not torch_available():
            raise ConfigError("anomaly.detectors: 'autoencoder' needs PyTorch (pip install torch); or leave it out "
                              "of the list")
        return list(settings.detectors)
    if getattr(settings, "backbone", None) is not None:  # images: distance on their features (images.py)
        from .images import DEFAULT_DETECTORS

        return list(DEFAULT_DETECTORS)
    wide = n_columns >= WIDE_COLUMNS and torch_available()
    return [*settings.detectors, *(["autoencoder"] if wide else [])]


@dataclass
class AnomalySearch:
    """What the search needs: the encoded train rows, the labels (1 anomaly, 0 normal, -1 unknown)."""

    X: np.ndarray
    y: np.ndarray
    detectors: list[str]
    seed: int
    min_labels: int
    budget: float | None
    n_trials: int | None

    @property
    def supervised(self) -> bool:
        known = self.y[self.y >= 0]
        return int((known == 1).sum()) >= self.min_labels and int((known == 0).sum()) >= 1


def fit_scores(name: str, params: dict[str, Any], X: np.ndarray, seed: int) -> tuple[Any, np.ndarray]:
    """A fitted detector and its calibrated scores of the training rows themselves."""
    det = build_detector(name, params, seed, len(X)).fit(X)
    raw = training_scores(det, X)
    return det, calibrate(np.sort(raw), raw)


def consensus(X: np.ndarray, detectors: list[str], seed: int) -> np.ndarray:
    """The mean calibrated score of every detector at its default settings (the unsupervised reference)."""
    return np.mean([fit_scores(d, {}, X, seed)[1] for d in detectors], axis=0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    known = y >= 0
    return float(average_precision_score(y[known], scores[known]))


def run_anomaly_search(job: AnomalySearch, *, storage: str, study_name: str, work_dir: Path,
                       on_trial: Callable[[TrialRecord], Any] | None = None,
                       progress: Callable[[int, float], None] | None = None) -> tuple[SearchResult, dict[str, Any]]:
    """Trials on the shared driver, then members and the choice: ``(result, chosen)`` where ``chosen`` has
    ``members`` ([(detector, params)]), ``weights`` and ``selection``."""
    metric = "pr_auc" if job.supervised else "consensus"
    fingerprint = json.dumps([job.X.shape, float(np.round(job.X.sum(), 6)), int((job.y >= 0).sum()),
                              int((job.y == 1).sum()), job.detectors, job.seed])
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress is the caller's to show
    try:
        study = open_study(storage, study_name, metric="pr_auc", fingerprint=fingerprint, seed=job.seed,
                           startup_trials=len(job.detectors), differs="the train rows, labels or "
                           "anomaly.detectors changed; a new dataset version starts a new search")
        return _search(job, study, work_dir, metric, on_trial, progress)
    finally:
        optuna.logging.set_verbosity(level)


def _search(job: AnomalySearch, study: optuna.Study, work_dir: Path, metric: str,
            on_trial: Callable[[TrialRecord], Any] | None,
            progress: Callable[[int, float], None] | None) -> tuple[SearchResult, dict[str, Any]]:
    resumed = len(finished(study))
    work_dir.mkdir(parents=True, exist_ok=True)
    reference = None if job.supervised else consensus(job.X, job.detectors, job.seed)
    if resumed == 0:  # every detector at its defaults first, so each has a member however short the budget
        for d in job.detectors:
            study.enqueue_trial({"detector": d, **DEFAULTS.get(d, {})})

    def run_trial(trial: Any, deadline: float) -> TrialRecord:
        started = time.monotonic()
        params = suggest_params(trial, job.detectors)
        name = params.pop("detector")
        _, scores = fit_scores(name, params, job.X, job.seed)
        value = average_precision(job.y, scores) if reference is None else _spearman(scores, reference)
        np.save(work_dir / f"trial_{trial.number}.npy", scores)
        seconds = time.monotonic() - started
        trial.set_user_attr("duration_s", seconds)
        study.tell(trial, value)
        return TrialRecord(trial.number, name, params, value, "complete", seconds)

    search_loop(study, run_trial, budget=job.budget, n_trials=job.n_trials, on_trial=on_trial, progress=progress)
    records = [TrialRecord(t.number, str(t.params.get("detector")), {k: v for k, v in t.params.items()
                                                                     if k != "detector"},
                           t.value, "complete", float(t.user_attrs.get("duration_s", 0.0)))
               for t in ranked(study)]
    chosen = _choose(job, records, work_dir, metric)
    best = records[0]
    result = SearchResult(model=None, metric=metric, direction="maximize",
                          validation_score=float(chosen["selection"]["value"]), best_single=best,
                          ensemble={"members": [m[0] for m in chosen["members"]], "weights": chosen["weights"]}
                          if len(chosen["members"]) > 1 else None,
                          threshold=None, trials=records, resumed_trials=resumed)
    return result, chosen


SHARPNESS = 4        # unsupervised weights: (agreement x stability) to this power
SUBSAMPLES = 3       # stability: fits on this many seeded halves of the rows
SHRINK_LABELS = 3    # label weights: this many labelled anomalies give the labels' own weights half the say
# (10 before: on the sensors loop, 7-8 labelled anomalies among 35 verdicts, 4 seeds, precision at the alert
# budget on new readings was 0.738 at 10, 0.796 at 3, 0.853 at 0; RESULTS.md 2026-12-05, fifth session)
SINGLE_MARGIN = 0.02  # with labels, a single member replaces the ensemble only above its AP by this much


def stability(name: str, params: dict[str, Any], X: np.ndarray, seed: int) -> float:
    """How much a detector's ranking of the rows depends on which rows it saw: the mean Spearman
    correlation, over pairs of fits on ``SUBSAMPLES`` seeded halves of the rows, of their scores of every
    row (1: the same ranking whatever the half). Too few rows to halve: 1."""
    if len(X) < 40:
        return 1.0
    rng = np.random.default_rng(seed)
    ranks = []
    for k in range(SUBSAMPLES):
        rows = rng.choice(len(X), len(X) // 2, replace=False)
        ranks.append(build_detector(name, params, seed + k + 1, len(rows)).fit(X[rows]).score(X))
    return float(np.mean([_spearman(ranks[i], ranks[j]) for i in range(SUBSAMPLES) for j in range(i + 1, SUBSAMPLES)]))


def unsupervised_weights(agreement: dict[str, float], stable: dict[str, float]) -> dict[str, float]:
    """Each member's share of the ensemble without labels: ``(agreement x stability) ^ SHARPNESS``
    (negative figures as 0), normalised; all zero: equal shares. A detector that disagrees with the others
    or ranks differently on other rows counts for little, without a hard cut: on the benchmark sets this
    keeps a weak member (the autoencoder on small tables) from pulling the ensemble down."""
    raw = {d: (max(agreement[d], 0.0) * max(stable[d], 0.0)) ** SHARPNESS for d in agreement}
    total = sum(raw.values())
    return {d: (v / total if total > 0 else 1.0 / len(raw)) for d, v in raw.items()}


def label_weights(ap: dict[str, float], base_rate: float, positives: int) -> tuple[dict[str, float], float]:
    """Each member's share of the ensemble from labels, and how much the labels decided it: the members'
    lift of average precision over the base rate (what random scores get), normalised, mixed as
    ``lam = positives / (positives + SHRINK_LABELS)`` with equal shares of the members that have a lift.
    With 5 labelled anomalies a detector that found them all still leaves the other useful ones three
    eighths of equal shares: a handful of labels is too few to rank the detectors that find anomalies
    for certain, enough to lean on one. A member at or below the base rate has no share: on these labels
    it finds anomalies no better than random scores (on the sensors loop ECOD and COPOD, at AP 0.13-0.21
    against base rates of 0.20-0.23, had kept 12 % each). No member above the base rate: equal shares, the
    labels decide nothing."""
    lift = {d: max(v - base_rate, 0.0) for d, v in ap.items()}
    total = sum(lift.values())
    if total <= 0:
        return dict.fromkeys(ap, 1.0 / len(ap)), 0.0
    lam = positives / (positives + SHRINK_LABELS)
    equal = 1.0 / sum(1 for v in lift.values() if v > 0)
    return {d: ((1 - lam) * equal if lift[d] > 0 else 0.0) + lam * lift[d] / total for d in ap}, lam


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in figures.items()}


def _choose(job: AnomalySearch, records: list[TrialRecord], work_dir: Path, metric: str) -> dict[str, Any]:
    best: dict[str, TrialRecord] = {}
    for r in records:  # ranked best first: the first of each detector is its best
        best.setdefault(r.family, r)
    members = [best[d] for d in DETECTORS if d in best]
    scores = {r.family: np.load(work_dir / f"trial_{r.number}.npy") for r in members}
    if not job.supervised:
        agreement = {r.family: float(r.value) if r.value is not None else 0.0 for r in members}
        stable = {r.family: stability(r.family, r.params, job.X, job.seed) for r in members}
        weights = unsupervised_weights(agreement, stable)
        return {"members": [(r.family, r.params) for r in members], "weights": [weights[r.family] for r in members],
                "selection": {"method": "ensemble", "chosen": "ensemble",
                              "value": float(np.mean(list(agreement.values()) or [math.nan])),
                              "labels": int((job.y >= 0).sum()),
                              "why": f"fewer than {job.min_labels} labelled anomalies in the train split: the "
                                     "ensemble of each detector's best trial (trials ranked by agreement with the "
                                     "consensus), each weighted by (agreement with the consensus x stability "
                                     f"under subsampling)^{SHARPNESS}",
                              "consensus_agreement": _rounded(agreement), "stability": _rounded(stable),
                              "weights": _rounded(weights)}}
    ap = {r.family: average_precision(job.y, s) for r, s in zip(members, scores.values(), strict=True)}
    known = job.y[job.y >= 0]
    labels, positives = len(known), int((known == 1).sum())
    weights, lam = label_weights(ap, positives / labels, positives)
    mixed = np.column_stack(list(scores.values())) @ np.array([weights[r.family] for r in members])
    ap_ensemble = average_precision(job.y, calibrate(np.sort(mixed), mixed))
    top = max(ap, key=lambda k: ap[k])
    figures = {**_rounded(ap), "ensemble": round(ap_ensemble, 4)}
    shared = {"method": "average_precision", "labels": labels, "labelled_anomalies": positives,
              "average_precision": figures, "weights": _rounded(weights), "label_share": round(lam, 4)}
    weighting = (f"members weighted by average precision above the base rate {positives / labels:.3f}, "
                 f"{lam:.0%} by the labels and {1 - lam:.0%} equal among those above it ({positives} labelled "
                 "anomalies)")
    if ap[top] <= ap_ensemble + SINGLE_MARGIN:
        return {"members": [(r.family, r.params) for r in members], "weights": [weights[r.family] for r in members],
                "selection": {**shared, "chosen": "ensemble", "value": ap_ensemble,
                              "why": f"average precision on {labels} labelled train rows: the ensemble "
                                     f"({ap_ensemble:.3f}; {weighting}) is within {SINGLE_MARGIN} of the best "
                                     f"single detector ({top}, {ap[top]:.3f}) or above it"}}
    return {"members": [(best[top].family, best[top].params)], "weights": [1.0],
            "selection": {**shared, "chosen": top, "value": ap[top], "weights": {top: 1.0},
                          "why": f"average precision on {labels} labelled train rows: {top} ({ap[top]:.3f}) "
                                 f"beats the ensemble ({ap_ensemble:.3f}; {weighting}) by more than "
                                 f"{SINGLE_MARGIN}"}}
