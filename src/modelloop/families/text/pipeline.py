"""The base of the text models that are not a PyTorch network: TF-IDF + linear model
(:mod:`.classical`) and a frozen multilingual encoder + head (:mod:`.frozen`).

They have :class:`~modelloop.families.text.model.TextModel`'s interface (``predict_proba``,
``scores``, ``classes_``, ``schema``, ``describe``, ``onnx_session`` ...), so the train stage,
evaluation, registration, serving and monitoring treat every text model alike; none of them imports
PyTorch, so a server of such a model never loads it. A subclass says how texts become class
probabilities (:meth:`score_texts`), natively or through an ONNX Runtime ``session``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ...data.schema import Schema
from ...errors import ConfigError, StateError
from ...evaluation.metrics import labels_from_proba
from .backbone import texts_of

__all__ = ["TextOutputs", "TextPipelineModel", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TextOutputs:
    """What every text model answers the same way once it has ``scores`` (probabilities, cut):
    its input column, the replayed cleaning plan, probabilities, class indices and labels."""

    classes_: list[Any]
    threshold_: float | None

    def __init__(self, config: dict[str, Any] | None = None, *, text_column: str = "text", seed: int = 0,
                 class_weight: str = "balanced", metric: str = "f1_macro", root: str | None = None) -> None:
        """scikit-learn's convention: the parameters, stored as given (``config``: ``model:`` keys)."""
        self.config = config
        self.text_column = text_column
        self.seed = seed
        self.class_weight = class_weight
        self.metric = metric
        self.root = root

    def scores(self, X: Any, *, session: Any = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def input_columns(self) -> list[str]:
        """The columns a request must carry: just the text column."""
        return [self.text_column]

    def clean_inputs(self, X: Any) -> Any:
        """Replay the cleaning steps the training data went through (e.g. text normalisation)."""
        plan = getattr(self, "cleaning_plan_", None)
        if not plan or not isinstance(X, pd.DataFrame):
            return X
        from ...data.cleaning import CleaningPlan

        return CleaningPlan.from_dict(plan).apply_inference(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, K) class probabilities in ``classes_`` order."""
        return self.scores(X)[0]

    def predict_index(self, X: Any) -> np.ndarray:
        """Class indices (argmax)."""
        return labels_from_proba(self.predict_proba(X), self.threshold_)

    def predict(self, X: Any) -> np.ndarray:
        """Original labels (the values seen in the target column)."""
        return np.asarray(self.classes_, dtype=object)[self.predict_index(X)]

    def feature_importances(self) -> dict[str, float]:
        """Text models have no per-column importances."""
        return {}


class TextPipelineModel(TextOutputs, BaseEstimator):
    """A text model fitted outside PyTorch. Learned state: ``classes_``, ``task``, ``schema``,
    ``threshold_`` (None: argmax), ``description_`` and the subclass's own."""

    kind: ClassVar[str]          # recorded as ``describe()["method"]`` and the search's candidate name
    max_length_: int | None = None

    def _fitted(self, classes: list[Any], target: str | None, description: dict[str, Any]) -> None:
        self.classes_ = list(classes)
        self.task = "binary" if len(classes) == 2 else "multiclass"
        self.threshold_ = None
        self.target_ = target
        columns = {self.text_column: "text", **({target: "categorical"} if target else {})}
        self.schema = Schema(columns=columns, target=target, text=self.text_column)
        self.description_ = dict(description)

    # ---- the interface shared with TextModel -------------------------------------------------

    def settings(self) -> Any:
        from .config import parse_text_config

        return parse_text_config(self.config or {})

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise StateError(f"this {type(self).__name__} is not fitted yet; train a model first")

    def score_texts(self, texts: list[str], session: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities [n, K], windows read [n], cut [n])`` of raw texts."""
        raise NotImplementedError

    def scores_windows(self, X: Any, *, session: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities, windows read of each text, and which texts were cut."""
        self._check_fitted()
        return self.score_texts(texts_of(self.clean_inputs(X), self.text_column), session)

    def scores(self, X: Any, *, session: Any = None) -> tuple[np.ndarray, np.ndarray]:
        proba, _, cut = self.scores_windows(X, session=session)
        return proba, cut

    def n_parameters(self) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        self._check_fitted()
        from ..tabular.model import jsonable

        info = {"task": self.task, "classes": self.classes_, "threshold": None, "features": self.input_columns,
                "family": self.kind, "method": self.kind, "max_length": self.max_length_,
                "parameters": self.n_parameters()}
        return jsonable({**info, **self.description_})

    # ---- ONNX ------------------------------------------------------------------------------
    def export_onnx(self, path: Path) -> dict[str, Any]:
        """Write this model's graph to ``path`` and check it against the native scores."""
        raise ConfigError(f"a {self.kind} text model has no ONNX graph")

    def onnx_session(self, variant: str = "fp32", *, path: str | Path | None = None,
                     threads: int | None = None) -> Any:
        """An ONNX Runtime session of the graph at ``path`` (int8 does not apply: the graph is kept)."""
        self._check_fitted()
        if path is None:
            raise ConfigError(f"a {self.kind} text model's session needs the graph's path (modelloop optimize)")
        sessions = self.__dict__.setdefault("_sessions", {})
        key = (str(path), threads)
        if key not in sessions:
            sessions[key] = self._open_session(str(path), threads)
        return sessions[key]

    def _open_session(self, path: str, threads: int | None) -> Any:
        from .backbone import ort_session

        return ort_session(path, threads)

    def predict_proba_onnx(self, X: Any, variant: str = "fp32", *, session: Any = None) -> np.ndarray:
        return self.scores(X, session=session or self.onnx_session(variant))[0]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
