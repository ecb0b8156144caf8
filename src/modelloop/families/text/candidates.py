"""What one text search chooses between: the configured encoder (MiniLM or a local model, by head,
LoRA or full fine-tuning), a frozen multilingual encoder with the head, and TF-IDF + logistic
regression. Each candidate brings its search space, how one trial is fitted and scored (a fine-tune
on the validation rows; TF-IDF, a frozen encoder's head and a PyTorch encoder's head — its embeddings
are fixed too — by cross-validation over the fit and validation rows, :mod:`.crossval`), and how the
chosen trial becomes the registered model; :mod:`.search` runs them all in one Optuna study on the
shared driver, and the best score wins (a fine-tune against a cross-validated candidate: on the
validation rows both were scored on, :func:`.search.fair_best`).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import optuna
from optuna.trial import TrialState

from ...evaluation.metrics import direction, score
from .classical import TFIDF, TfidfTextModel, fit_linear, fit_tfidf, full_proba, suggest_tfidf, tfidf_defaults
from .config import TextModelConfig
from .crossval import NgramCounts, cv_groups, cv_split
from .fit import FitJob, _fit_head, _params_key, build_model, run_params
from .frozen import FROZEN_KIND, FrozenTextModel
from .pipeline import softmax

if TYPE_CHECKING:
    import pandas as pd

    from ...data.split import FoldGroups

__all__ = ["Candidate", "EncoderCandidate", "EncoderHeadCandidate", "FrozenCandidate", "TfidfCandidate",
           "encoder_candidate"]


class Candidate(Protocol):
    name: str            # the study's ``candidate`` value
    family: str          # what the trial records and the summary's ``best_family`` says
    keeps_weights: bool  # a trial's weights are kept on disk (fine-tuning); else the winner is refitted

    def defaults(self) -> dict[str, Any]: ...

    def suggest(self, trial: Any) -> dict[str, Any]: ...

    def run(self, params: dict[str, Any], *, checkpoint: Path | None = None, deadline: float = math.inf,
            trial: Any = None) -> dict[str, Any]: ...

    def checkpoint_name(self, params: dict[str, Any]) -> str: ...

    def build(self, params: dict[str, Any], result: dict[str, Any], *, text_column: str, target: str | None,
              description: dict[str, Any]) -> Any: ...


def _result(value: float, payload: Any = None) -> dict[str, Any]:
    return {"value": value, "payload": payload, "epochs_run": 0, "best_epoch": 0, "history": [],
            "precision": "fp32", "resumed_from_epoch": 0}


def _head_c(trial: Any, settings: TextModelConfig) -> dict[str, Any]:
    return {"head_c": trial.suggest_float("head_c", min(1e-3, settings.head_c), max(1e2, settings.head_c), log=True)}


@dataclass
class EncoderCandidate:
    """The configured PyTorch encoder (``fit.FitJob``): head, LoRA or full fine-tuning."""

    job: FitJob
    name: str = "encoder"
    backbone: str = ""  # model.backbone's name of this encoder (one of several the search compares)

    @property
    def family(self) -> str:
        return self.job.method

    @property
    def keeps_weights(self) -> bool:
        return self.job.method != "head"

    def defaults(self) -> dict[str, Any]:
        from .search import default_params

        return default_params(self.job.settings)

    def suggest(self, trial: Any) -> dict[str, Any]:
        from .search import suggest_params

        return suggest_params(trial, self.job.settings)

    def run(self, params: dict[str, Any], *, checkpoint: Path | None = None, deadline: float = math.inf,
            trial: Any = None) -> dict[str, Any]:
        return run_params(self.job, params, checkpoint=checkpoint, deadline=deadline, trial=trial)

    def checkpoint_name(self, params: dict[str, Any]) -> str:
        key = _params_key(self.job, params)
        return f"ckpt-{key}.pt" if self.name == "encoder" else f"ckpt-{self.name.split(':', 1)[-1][-24:]}-{key}.pt"

    def build(self, params: dict[str, Any], result: dict[str, Any], *, text_column: str, target: str | None,
              description: dict[str, Any]) -> Any:
        from .model import TextModel

        model = build_model(self.job, params, result, model_class=TextModel, text_column=text_column,
                            target=target, description=description)
        model.windows_ = True  # long texts read whole, as the stage trained it (TextModel.scores_windows)
        return model


@dataclass
class _Labelled:
    """The parts every non-PyTorch candidate shares: labels, classes, the objective, and its trials'
    cross-validated scores (:mod:`.crossval`). Rows are numbered fit rows first (the last ``augmented``
    of them augmented copies), then the validation rows."""

    settings: TextModelConfig
    y_fit: np.ndarray
    y_val: np.ndarray
    classes: list[Any]
    metric: str
    class_weight: str
    seed: int
    augmented: int = 0  # the last rows of y_fit are augmented copies of fit rows: never held out
    groups: pd.Series | None = None  # data.group of the fit rows (not the copies), then the validation rows
    best_cv_: tuple[str, float, dict[str, Any]] | None = field(default=None, init=False, repr=False)

    keeps_weights = False

    def checkpoint_name(self, params: dict[str, Any]) -> str:
        return ""

    @property
    def y_all(self) -> np.ndarray:
        return np.r_[self.y_fit, self.y_val].astype(np.int64)

    def cv_folds(self) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The folds of the fit and validation rows (augmented copies left out), the same for every
        candidate of the search; None when a class has fewer than 2 such rows. With :attr:`groups`
        (``data.group``) each group's rows are in one fold."""
        return cv_split(self.y_all, self._cv_rows(), self.seed, groups=self.groups)

    def cv_groups(self) -> FoldGroups | None:
        """The groups :meth:`cv_folds` keeps whole (:func:`.crossval.cv_groups`: its warning when they are
        fewer than the folds); None without :attr:`groups` or folds."""
        return cv_groups(self.y_all, self._cv_rows(), groups=self.groups)

    def _cv_rows(self) -> np.ndarray:
        """The rows the folds share out: the fit rows but their augmented copies, then the validation rows."""
        n_fit = len(self.y_fit)
        return np.r_[np.arange(n_fit - self.augmented), n_fit + np.arange(len(self.y_val))]

    def fold_proba(self, params: dict[str, Any], train: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``[len(rows), K]`` probabilities of rows ``rows`` by a model fitted on rows ``train``."""
        raise NotImplementedError

    def val_rows(self) -> np.ndarray:
        """The validation rows' positions in :attr:`y_all` (after every fit row)."""
        return len(self.y_fit) + np.arange(len(self.y_val))

    def cross_validate(self, params: dict[str, Any], *, deadline: float = math.inf,
                       may_stop: Callable[[], bool] = lambda: True) -> dict[str, Any] | None:
        """``{"folds", "folds_run", "mean", "spread", "scores", "rows", "oof", "val_score"}``: the metric on
        each fold (fitted on the others), their mean and standard deviation, the out-of-fold probabilities
        of every row (``oof`` [rows, K]: zero on rows never held out; None when the folds were cut short)
        and the metric of those on the validation rows alone (``val_score``, None when cut short): the
        rows a fine-tune is scored on, where :func:`.search.fair_best` compares the two kinds.
        Past ``deadline`` after a fold: the trial is pruned when ``may_stop()`` (another trial has a
        score), else it ends with the folds it ran (a search ends with a model). None when no folds."""
        folds = self.cv_folds()
        if folds is None:
            return None
        y, oof = self.y_all, np.zeros((len(self.y_all), len(self.classes)))
        scores: list[float] = []
        for train, rows in folds:
            if scores and time.monotonic() > deadline:
                if may_stop():
                    raise optuna.TrialPruned(f"train.budget ran out after {len(scores)} of {len(folds)} folds")
                break
            oof[rows] = self.fold_proba(params, train, rows)
            scores.append(float(score(self.metric, y[rows], oof[rows])))
        complete = len(scores) == len(folds)
        val = self.val_rows()
        val_score = float(score(self.metric, y[val], oof[val])) if complete and len(val) else None
        return {"folds": len(folds), "folds_run": len(scores), "mean": float(np.mean(scores)),
                "spread": float(np.std(scores)), "scores": [round(v, 4) for v in scores],
                "rows": int(sum(len(r) for _, r in folds)), "oof": oof if complete else None,
                "val_score": val_score}

    def run(self, params: dict[str, Any], *, checkpoint: Path | None = None, deadline: float = math.inf,
            trial: Any = None) -> dict[str, Any]:
        """The trial's score: its cross-validated mean (``cv`` says more), or, with too few rows of a
        class for folds, its score on the validation rows of a model fitted on the fit rows."""
        cv = self.cross_validate(params, deadline=deadline, may_stop=lambda: _scored(trial))
        if cv is None:
            n_fit = len(self.y_fit)
            val = n_fit + np.arange(len(self.y_val))
            return _result(score(self.metric, self.y_val, self.fold_proba(params, np.arange(n_fit), val)))
        key = _params_key_of(params)
        sign = 1.0 if direction(self.metric) == "maximize" else -1.0
        if cv["oof"] is not None and (self.best_cv_ is None or sign * cv["mean"] > sign * self.best_cv_[1]):
            self.best_cv_ = (key, cv["mean"], cv)  # the blend weighs this candidate's best trial on it
        return {**_result(cv["mean"]), "cv": {k: v for k, v in cv.items() if k != "oof"}}

    def scored(self, value: float, cv: dict[str, Any]) -> dict[str, Any]:
        """The result of a trial the search already scored (``build`` refits it: nothing to run again)."""
        return {**_result(value), "cv": cv}

    def cached_cv(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The cross-validation of these parameters when they are this candidate's best trial of this
        process (a resumed search's earlier trials were not run here)."""
        best = self.best_cv_
        return best[2] if best is not None and best[0] == _params_key_of(params) else None

    def _info(self, params: dict[str, Any], result: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
        """The registered model's description: its parameters, the score that chose it (and its folds)."""
        cv = {"cv": result["cv"]} if result.get("cv") else {}
        return {"params": params, "validation_score": result["value"], "fit_rows": len(self.y_fit), **cv,
                **description}

    def _common(self, text_column: str) -> dict[str, Any]:
        return {"config": self.settings.model_dump(mode="json"), "seed": self.seed,
                "class_weight": self.class_weight, "metric": self.metric, "text_column": text_column}


def _scored(trial: Any) -> bool:
    """Whether a trial of ``trial``'s study has completed (a search that has one may prune the rest)."""
    return trial is not None and bool(trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _params_key_of(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


@dataclass
class FrozenCandidate(_Labelled):
    """A frozen multilingual encoder's pooled embeddings of the fit and validation rows + the head."""

    backbone: str = ""
    engine: str = ""
    features: dict[str, np.ndarray] | None = None
    family = FROZEN_KIND

    @property
    def name(self) -> str:
        return self.backbone

    def defaults(self) -> dict[str, Any]:
        return {"head_c": self.settings.head_c}

    def suggest(self, trial: Any) -> dict[str, Any]:
        return _head_c(trial, self.settings)

    def _head(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _fit_head(X, y, len(self.classes), c=float(params["head_c"]), class_weight=self.class_weight,
                         seed=self.seed)

    def _all(self) -> np.ndarray:
        feats = self.features or {}
        return np.vstack([feats["fit"], feats["val"]])

    def fold_proba(self, params: dict[str, Any], train: np.ndarray, rows: np.ndarray) -> np.ndarray:
        X = self._all()
        W, b = self._head(params, X[train], self.y_all[train])
        return softmax(X[rows] @ W.T + b)

    def build(self, params: dict[str, Any], result: dict[str, Any], *, text_column: str, target: str | None,
              description: dict[str, Any]) -> Any:
        W, b = self._head(params, self._all(), self.y_all)
        info = self._info(params, result, description)
        return FrozenTextModel.from_head(backbone=self.backbone, engine=self.engine, W=W, b=b, classes=self.classes,
                                         target=target, description=info, **self._common(text_column))


@dataclass
class EncoderHeadCandidate(_Labelled):
    """The configured PyTorch encoder with ``method: head``: the head on its frozen embeddings (each
    text's windows' mean, :func:`.fit._head_features`), cross-validated as a frozen encoder's head is
    (a fold is one logistic regression), where :class:`EncoderCandidate` scored it on the validation
    rows alone. Registered as the :class:`~.model.TextModel` the encoder candidate builds (its head
    refitted on fit + validation rows); not a blend member (the blend serves its members without PyTorch)."""

    job: FitJob | None = None
    name: str = "encoder"
    backbone: str = ""
    family = "head"
    blendable = False

    def _job(self) -> FitJob:
        assert self.job is not None
        return self.job

    def defaults(self) -> dict[str, Any]:
        from .search import default_params

        return default_params(self._job().settings)

    def suggest(self, trial: Any) -> dict[str, Any]:
        from .search import suggest_params

        return suggest_params(trial, self._job().settings)

    def fold_proba(self, params: dict[str, Any], train: np.ndarray, rows: np.ndarray) -> np.ndarray:
        from .fit import _head_features

        feats = _head_features(self._job())
        X = np.vstack([feats["fit"], feats["val"]])
        W, b = _fit_head(X[train], self.y_all[train], len(self.classes), c=float(params["head_c"]),
                         class_weight=self.class_weight, seed=self.seed)
        return softmax(X[rows] @ W.T + b)

    def build(self, params: dict[str, Any], result: dict[str, Any], *, text_column: str, target: str | None,
              description: dict[str, Any]) -> Any:
        from .model import TextModel

        cv = {"cv": result["cv"]} if result.get("cv") else {}
        model = build_model(self._job(), params, result, model_class=TextModel, text_column=text_column,
                            target=target, description={**cv, **description})
        model.windows_ = True  # long texts read whole, as the stage trained it (TextModel.scores_windows)
        return model


def encoder_candidate(job: FitJob, common: dict[str, Any], *, name: str, backbone: str) -> Any:
    """The candidate of a PyTorch encoder: cross-validated when it trains only a head on its frozen
    embeddings (:class:`EncoderHeadCandidate`), else scored on the validation rows (a fine-tune)."""
    if job.method == "head":
        return EncoderHeadCandidate(**common, settings=job.settings, job=job, name=name, backbone=backbone)
    return EncoderCandidate(job, name=name, backbone=backbone)


@dataclass
class TfidfCandidate(_Labelled):
    """TF-IDF on word and character n-grams + logistic regression (:mod:`.classical`)."""

    fit_texts: list[str] | None = None
    val_texts: list[str] | None = None
    counts_: NgramCounts | None = field(default=None, init=False, repr=False)
    name = TFIDF
    family = TFIDF
    added_params = ("nb", "seg_max")  # joined the space after models were registered: a warm set may lack them

    def defaults(self) -> dict[str, Any]:
        return tfidf_defaults()

    def suggest(self, trial: Any) -> dict[str, Any]:
        return suggest_tfidf(trial)

    def _texts(self) -> list[str]:
        return list(self.fit_texts or []) + list(self.val_texts or [])

    def fold_proba(self, params: dict[str, Any], train: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.counts_ is None:
            self.counts_ = NgramCounts(self._texts())
        X, (X_rows,) = self.counts_.features(params, train, [rows])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lr = fit_linear(X, self.y_all[train], params, class_weight=self.class_weight, seed=self.seed)
        return full_proba(lr, np.asarray(lr.classes_, dtype=np.int64), len(self.classes), lr.predict_proba(X_rows))

    def build(self, params: dict[str, Any], result: dict[str, Any], *, text_column: str, target: str | None,
              description: dict[str, Any]) -> Any:
        pipe = fit_tfidf(self._texts(), self.y_all, params, class_weight=self.class_weight, seed=self.seed)
        info = self._info(params, result, description)
        return TfidfTextModel.from_pipeline(pipe, classes=self.classes, target=target, description=info,
                                            **self._common(text_column))
