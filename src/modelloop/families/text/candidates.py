"""What one text search chooses between: the configured encoder (MiniLM or a local model, by head,
LoRA or full fine-tuning), a frozen multilingual encoder with the head, and TF-IDF + logistic
regression. Each candidate brings its search space, how one trial is fitted and scored on the
validation rows, and how the chosen trial becomes the registered model; :mod:`.search` runs them all
in one Optuna study on the shared driver, and the best on validation wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...evaluation.metrics import score
from .classical import (TFIDF, TfidfTextModel, fit_tfidf, full_proba, pipeline_inputs, suggest_tfidf, tfidf_defaults,
                        tfidf_inputs)
from .config import TextModelConfig
from .fit import FitJob, _fit_head, _params_key, build_model, run_params
from .frozen import FROZEN_KIND, FrozenTextModel
from .pipeline import softmax

__all__ = ["Candidate", "EncoderCandidate", "FrozenCandidate", "TfidfCandidate"]


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
    """The parts every non-PyTorch candidate shares: labels, classes and the objective."""

    settings: TextModelConfig
    y_fit: np.ndarray
    y_val: np.ndarray
    classes: list[Any]
    metric: str
    class_weight: str
    seed: int

    keeps_weights = False

    def checkpoint_name(self, params: dict[str, Any]) -> str:
        return ""

    def proba(self, params: dict[str, Any], fit_rows: np.ndarray | None = None,
              rows: np.ndarray | None = None) -> np.ndarray:
        """``[n, K]`` probabilities of a model fitted on the fit rows ``fit_rows`` (all when None), for
        the fit rows ``rows`` (the validation rows when None): a trial's score, and the out-of-fold
        predictions the blend (:mod:`.blend`) weighs its members on."""
        raise NotImplementedError

    def run(self, params: dict[str, Any], *, checkpoint: Path | None = None, deadline: float = math.inf,
            trial: Any = None) -> dict[str, Any]:
        return _result(score(self.metric, self.y_val, self.proba(params)))

    def _common(self, text_column: str) -> dict[str, Any]:
        return {"config": self.settings.model_dump(mode="json"), "seed": self.seed,
                "class_weight": self.class_weight, "metric": self.metric, "text_column": text_column}


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

    def proba(self, params: dict[str, Any], fit_rows: np.ndarray | None = None,
              rows: np.ndarray | None = None) -> np.ndarray:
        feats = self.features or {}
        X = feats["fit"]
        W, b = self._head(params, X if fit_rows is None else X[fit_rows],
                          self.y_fit if fit_rows is None else self.y_fit[fit_rows])
        return softmax((feats["val"] if rows is None else X[rows]) @ W.T + b)

    def build(self, params: dict[str, Any], result: dict[str, Any], *, text_column: str, target: str | None,
              description: dict[str, Any]) -> Any:
        feats = self.features or {}
        W, b = self._head(params, np.vstack([feats["fit"], feats["val"]]), np.r_[self.y_fit, self.y_val])
        info = {"params": params, "validation_score": result["value"], "fit_rows": len(self.y_fit), **description}
        return FrozenTextModel.from_head(backbone=self.backbone, engine=self.engine, W=W, b=b, classes=self.classes,
                                         target=target, description=info, **self._common(text_column))


@dataclass
class TfidfCandidate(_Labelled):
    """TF-IDF on word and character n-grams + logistic regression (:mod:`.classical`)."""

    fit_texts: list[str] | None = None
    val_texts: list[str] | None = None
    name = TFIDF
    family = TFIDF
    added_params = ("nb", "seg_max")  # joined the space after models were registered: a warm set may lack them

    def defaults(self) -> dict[str, Any]:
        return tfidf_defaults()

    def suggest(self, trial: Any) -> dict[str, Any]:
        return suggest_tfidf(trial)

    def _fit(self, params: dict[str, Any], texts: list[str], y: np.ndarray) -> Any:
        return fit_tfidf(texts, y, params, class_weight=self.class_weight, seed=self.seed)

    def proba(self, params: dict[str, Any], fit_rows: np.ndarray | None = None,
              rows: np.ndarray | None = None) -> np.ndarray:
        texts = list(self.fit_texts or [])
        pick = lambda idx: [texts[i] for i in idx]  # noqa: E731
        pipe = self._fit(params, texts if fit_rows is None else pick(fit_rows),
                         self.y_fit if fit_rows is None else self.y_fit[fit_rows])
        return full_proba(pipe, np.asarray(pipe[-1].classes_, dtype=np.int64), len(self.classes),
                          pipe.predict_proba(tfidf_inputs(list(self.val_texts or []) if rows is None else pick(rows),
                                                          pipeline_inputs(pipe))))

    def build(self, params: dict[str, Any], result: dict[str, Any], *, text_column: str, target: str | None,
              description: dict[str, Any]) -> Any:
        pipe = self._fit(params, list(self.fit_texts or []) + list(self.val_texts or []),
                         np.r_[self.y_fit, self.y_val])
        info = {"params": params, "validation_score": result["value"], "fit_rows": len(self.y_fit), **description}
        return TfidfTextModel.from_pipeline(pipe, classes=self.classes, target=target, description=info,
                                            **self._common(text_column))
