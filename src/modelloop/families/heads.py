"""Output heads: what a model's scores mean, whatever family produced them.

A family turns inputs into *scores*; the head turns scores into everything the loop says about them:
the served answer of each record, the columns of a batch prediction, the metrics, which labels
feedback may carry, and how the output's drift is measured. Every stage asks the model version's head
instead of branching on a task string, so a new kind of output (ranking, anomaly score, generation)
is one new head, not edits across the stages.

Scores are ``(n, K)`` class probabilities in ``classes`` order for :class:`ClassificationHead` and
``(n,)`` values for :class:`RegressionHead`.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..errors import DataError, cap_list

__all__ = ["HEADS", "KINDS", "BaseHead", "ClassificationHead", "RegressionHead", "head_for", "head_kind",
           "label_text"]


def label_text(value: Any) -> str:
    """A label's text, so that 1, 1.0 and '1' name the same class (CSV files and JSON clients differ)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    elif isinstance(value, np.generic):
        value = value.item()
    return str(value).strip()


class BaseHead(ABC):
    """One kind of output. ``kind`` is what the registered model version records as ``info.task``."""

    name: ClassVar[str]                  # the head's name, recorded as ``info.head``
    kinds: ClassVar[tuple[str, ...]]     # the ``info.task`` values it serves
    drift_kind: ClassVar[str]            # how its outputs are compared for drift: categorical | numeric
    onnx_output: ClassVar[str]           # the graph output holding the scores (the export contract)

    def __init__(self, kind: str, classes: Sequence[Any] | None = None, threshold: float | None = None):
        if kind not in self.kinds:
            raise ValueError(f"{type(self).__name__} serves {', '.join(self.kinds)}, got {kind!r}")
        self.kind = kind
        self.classes: list[Any] | None = list(classes) if classes is not None else None
        self.threshold = threshold

    @abstractmethod
    def native_scores(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        """A native model's scores for a frame of inputs."""

    @abstractmethod
    def shape_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        """Scores of ``n`` records in the head's shape, from a graph's or model's raw output."""

    @abstractmethod
    def outputs(self, scores: np.ndarray) -> list[dict[str, Any]]:
        """The served answer of each record (``POST /v1/predict``'s ``predictions``)."""

    @abstractmethod
    def columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        """The columns a batch prediction adds to its input (``modelloop predict``)."""

    @abstractmethod
    def check_label(self, label: Any, *, strict: bool = False) -> Any:
        """A feedback label as the model knows it, or a DataError (``label: ...``) naming what is allowed.
        ``strict``: a JSON body's label, whose type is the client's (the API); else a file's cell,
        read by its text (``1``, ``1.0`` and ``"1"`` agree)."""

    @abstractmethod
    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        """Metrics (and per-class figures where they exist) of scores against true labels."""

    @abstractmethod
    def served_output(self, output: Mapping[str, Any]) -> Any:
        """The value compared for output drift, read back from one logged answer."""


class ClassificationHead(BaseHead):
    name = "classification"
    kinds = ("binary", "multiclass")
    drift_kind = "categorical"
    onnx_output = "probabilities"

    def __init__(self, kind: str, classes: Sequence[Any] | None = None, threshold: float | None = None):
        if not classes:
            raise ValueError("a classification head needs the model's classes")
        super().__init__(kind, classes, threshold if kind == "binary" else None)
        self._keys = [str(c) for c in self.classes or []]
        self._by_text = {label_text(c): c for c in self.classes or []}

    def native_scores(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame), dtype=np.float64)

    def shape_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        return scores.reshape(n, -1)

    def indices(self, scores: np.ndarray) -> np.ndarray:
        """Class indices: argmax, or for a binary model ``p(class 1) >= threshold`` when one is set."""
        from ..evaluation.metrics import labels_from_proba

        return labels_from_proba(scores, self.threshold)

    def outputs(self, scores: np.ndarray) -> list[dict[str, Any]]:
        labels, keys = self.classes or [], self._keys
        return [{"label": labels[i], "probabilities": dict(zip(keys, p, strict=True))}
                for i, p in zip(self.indices(scores).tolist(), np.round(scores, 6).tolist(), strict=True)]

    def columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        labels = np.asarray(self.classes, dtype=object)
        out: dict[str, np.ndarray] = {"label": labels[self.indices(scores)]}
        for j, key in enumerate(self._keys):
            out[f"proba_{key}"] = np.asarray(scores[:, j], dtype=np.float64)
        return out

    def check_label(self, label: Any, *, strict: bool = False) -> Any:
        _not_missing(label)
        classes = self.classes or []
        if strict:
            if isinstance(label, (dict, list)) or label not in classes:
                raise DataError(f"label: must be one of {cap_list(classes, show=json.dumps)}, "
                                f"got {json.dumps(label)}")
            return label
        found = self._by_text.get(label_text(label))
        if found is None or isinstance(label, (dict, list)):
            raise DataError(f"label: must be one of {cap_list(classes)}, got {label!r}")
        return found

    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        from ..evaluation.report import evaluate_predictions

        return evaluate_predictions(self.kind, y_true, scores, classes=self.classes or [],
                                    threshold=self.threshold)

    def served_output(self, output: Mapping[str, Any]) -> Any:
        return output.get("label")


class RegressionHead(BaseHead):
    name = "regression"
    kinds = ("regression",)
    drift_kind = "numeric"
    onnx_output = "variable"

    def native_scores(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), dtype=np.float64)

    def shape_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        return scores.ravel()

    def outputs(self, scores: np.ndarray) -> list[dict[str, Any]]:
        return [{"label": v, "value": v} for v in np.round(np.asarray(scores, dtype=np.float64), 6).tolist()]

    def columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        return {"prediction": np.asarray(scores, dtype=np.float64).ravel()}

    def check_label(self, label: Any, *, strict: bool = False) -> Any:
        """A finite number, or (not ``strict``) text that reads as one (a CSV cell); never a boolean,
        which a regressor would learn as 0/1 without anyone having meant it."""
        _not_missing(label)
        shown = json.dumps(label) if strict else repr(label)
        if isinstance(label, (bool, np.bool_)) or (strict and not isinstance(label, (int, float))):
            raise DataError(f"label: must be a finite number for a regression model, got {shown}")
        try:
            value = float(label.strip() if isinstance(label, str) else label)
        except (TypeError, ValueError):
            raise DataError(f"label: must be a finite number for a regression model, got {shown}") from None
        if not math.isfinite(value):
            raise DataError(f"label: must be a finite number for a regression model, got {shown}")
        return value

    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        from ..evaluation.report import evaluate_predictions

        return evaluate_predictions("regression", y_true, scores, classes=[])

    def served_output(self, output: Mapping[str, Any]) -> Any:
        value = output.get("value", output.get("label"))
        return float(value) if value is not None else None


def _not_missing(label: Any) -> None:
    if label is None or (isinstance(label, float) and label != label):
        raise DataError("label: missing")


HEADS: dict[str, type[BaseHead]] = {"classification": ClassificationHead, "regression": RegressionHead}
KINDS: dict[str, type[BaseHead]] = {kind: head for head in HEADS.values() for kind in head.kinds}


def head_kind(task: str, y: pd.Series) -> str:
    """The output kind of a config ``task`` on a target: classification is binary or multiclass by
    its number of classes; any other task names its kind (``regression``)."""
    if task == "regression":
        return "regression"
    return "binary" if y.dropna().nunique() == 2 else "multiclass"


def head_for(info: Mapping[str, Any]) -> BaseHead:
    """The head of a registered model version, from what it recorded (``info.task``, ``classes``,
    ``threshold``); versions registered before heads existed record the same keys."""
    kind = str(info.get("task") or "binary")
    head = KINDS.get(kind)
    if head is None:
        raise DataError(f"model output kind {kind!r} has no head; known: {', '.join(KINDS)}")
    return head(kind, info.get("classes") if head is ClassificationHead else None, info.get("threshold"))
