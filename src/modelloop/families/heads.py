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
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError, cap_list, shown_json
from ..evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

if TYPE_CHECKING:  # the data layer asks heads of a task without loading pandas (the profile runs on Polars)
    import pandas as pd

__all__ = ["HEADS", "KINDS", "AnomalyHead", "BaseHead", "ClassificationHead", "RegressionHead", "head_for",
           "class_indices", "head_kind", "label_text", "GenerationHead", "RankingHead"]


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
    # What the stages ask the head instead of naming an output kind (defaults: a head with no metric of
    # the registry, read by the data layer as a numeric target):
    metrics: ClassVar[tuple[str, ...]] = ()       # the ``train.metric`` values it is scored by
    default_metric: ClassVar[str | None] = None   # ``train.metric`` left out
    default_split: ClassVar[str] = "random"       # ``split.strategy`` left out (without ``data.time``)
    stratifies: ClassVar[bool] = False            # ``split.strategy: stratified`` applies (classes to keep)
    target_kind: ClassVar[str | None] = None      # how the data layer reads its target: categorical | numeric
    live_metrics: ClassVar[tuple[str, ...]] = ()  # the figures monitor reports per window of labeled answers

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

    @classmethod
    def check_metric(cls, metric: str, kind: str | None = None) -> None:
        """A ConfigError naming the allowed metrics when ``metric`` is not one of the head's."""
        if metric not in cls.metrics:
            raise ConfigError(f"train.metric: '{metric}' is not a {kind or cls.name} metric; allowed: "
                              f"{', '.join(cls.metrics) or 'none'}")

    def truth(self, y: pd.Series, target: str) -> np.ndarray:
        """True labels of column ``target`` as ``evaluate`` compares them with the scores."""
        return np.asarray(y)

    # whether ``figure`` computes this head's metrics (asked before any scoring, which may be costly)
    has_figures = False

    def figure(self, metric: str, y_true: np.ndarray, scores: np.ndarray) -> float | None:
        """One figure of ``metric`` on these rows, cheaply enough to repeat on a few hundred resamples of
        them (the test figure's bootstrap interval); None: the head has no such figure."""
        return None

    def agreement(self, a: np.ndarray, b: np.ndarray, thresholds: tuple[float | None, float | None]) -> float:
        """The share of records two models (scores ``a`` and ``b``, each at its own threshold) answer alike."""
        return float(np.mean(np.asarray(a) == np.asarray(b)))

    def live_figures(self, labels: Sequence[Any], outputs: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
        """``live_metrics`` of logged answers against the labels that feedback brought (monitor)."""
        return {}

    def report_charts(self, y_true: Any, scores: np.ndarray, evaluation: Mapping[str, Any]) -> list[Any]:
        """The evaluation page's charts (``evaluation.report``'s ``class_charts`` / ``value_charts``)."""
        return []

    def class_texts(self, y: pd.Series) -> pd.Series:
        """Each stored label as the text of the class it counts as (a missing one stays missing): what the
        retrain gate counts when it asks whether a slice holds two classes (``feedback.recent``)."""
        return y.map(_class_text)

    def learnable(self, label: Any) -> bool:
        """Whether a stored feedback label is a training example for a retrain (every label is, unless
        the head says otherwise: a refused generated answer without a correction is not)."""
        return True

    def reference_outputs(self, model: Any, frame: pd.DataFrame, target: str) -> Any:
        """What the model says on reference rows, in ``served_output``'s terms (output drift compares
        them with the served answers): its predictions; a head for which answering them is too dear
        (generation) says what stands for them."""
        return model.predict(frame.drop(columns=[target], errors="ignore"))

    def record_outputs(self, scores: np.ndarray, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The served answers when the records themselves are at hand (the server, ``modelloop predict``):
        a head whose answer quotes the inputs (the anomaly head's reasons) overrides it."""
        return self.outputs(scores)


class ClassificationHead(BaseHead):
    name = "classification"
    kinds = ("binary", "multiclass")
    drift_kind = "categorical"
    onnx_output = "probabilities"
    metrics = CLASSIFICATION_METRICS
    default_metric = "f1_macro"
    default_split = "stratified"
    stratifies = True
    target_kind = "categorical"
    live_metrics = ("accuracy", "f1_macro", "roc_auc", "log_loss")
    has_figures = True

    def __init__(self, kind: str, classes: Sequence[Any] | None = None, threshold: float | None = None):
        if not classes:
            raise ValueError("a classification head needs the model's classes")
        super().__init__(kind, classes, threshold if kind == "binary" else None)
        self._keys = [str(c) for c in self.classes or []]
        self._exact = _exact_index(self.classes or [])
        self._by_text: dict[str, Any] = {}
        for c in self.classes or []:
            self._by_text.setdefault(label_text(c), c)

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
                raise DataError(f"label: must be one of {cap_list(classes, show=shown_json)}, "
                                f"got {shown_json(label)}")
            return label
        if isinstance(label, (dict, list)):
            raise DataError(f"label: must be one of {cap_list(classes)}, got {label!r}")
        found = _exact_class(self._exact, label)
        found = classes[found] if found is not None else self._by_text.get(label_text(label))
        if found is None:
            raise DataError(f"label: must be one of {cap_list(classes)}, got {label!r}")
        return found

    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        from ..evaluation.report import evaluate_classes

        return evaluate_classes(self.kind, y_true, scores, classes=self.classes or [], threshold=self.threshold,
                                exactly=self._exactly)

    def served_output(self, output: Mapping[str, Any]) -> Any:
        return output.get("label")

    def figure(self, metric: str, y_true: np.ndarray, scores: np.ndarray) -> float | None:
        from ..evaluation.metrics import score

        return score(metric, y_true, scores, threshold=self.threshold) if metric in self.metrics else None

    @property
    def _exactly(self) -> int | None:
        return 2 if self.kind == "binary" else None

    def truth(self, y: pd.Series, target: str) -> np.ndarray:
        """Class indices, each label matched to the model's classes by its text (1, 1.0 and '1' agree)."""
        return class_indices(self.classes or [], y, target)

    def agreement(self, a: np.ndarray, b: np.ndarray, thresholds: tuple[float | None, float | None]) -> float:
        from ..evaluation.metrics import labels_from_proba

        return float(np.mean(labels_from_proba(a, thresholds[0]) == labels_from_proba(b, thresholds[1])))

    def live_figures(self, labels: Sequence[Any], outputs: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
        from ..evaluation.metrics import classification_metrics

        index = {str(c): i for i, c in enumerate(self.classes or [])}
        y = np.array([index.get(str(v), -1) for v in labels])
        keep = y >= 0
        proba = _proba_matrix(outputs, self._keys)
        if proba is None or not keep.any():
            return {}
        m = classification_metrics(y[keep], proba[keep], threshold=self.threshold)
        return {k: m[k] for k in self.live_metrics if k in m}

    def report_charts(self, y_true: Any, scores: np.ndarray, evaluation: Mapping[str, Any]) -> list[Any]:
        from ..evaluation.report import class_charts

        return class_charts(y_true, scores, evaluation, classes=self.classes or [], kind=self.kind,
                            threshold=self.threshold, exactly=self._exactly, calibration=self.kind == "binary")


class RegressionHead(BaseHead):
    name = "regression"
    kinds = ("regression",)
    drift_kind = "numeric"
    onnx_output = "variable"
    metrics = REGRESSION_METRICS
    default_metric = "rmse"
    target_kind = "numeric"
    live_metrics = ("mae", "rmse", "r2")
    has_figures = True

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
        shown = shown_json(label) if strict else repr(label)
        if isinstance(label, (bool, np.bool_)) or (strict and not isinstance(label, (int, float))):
            raise DataError(f"label: must be a finite number for a regression model, got {shown}")
        try:
            value = float(label.strip() if isinstance(label, str) else label)
        except (TypeError, ValueError):
            raise DataError(f"label: must be a finite number for a regression model, got {shown}") from None
        if not math.isfinite(value):
            raise DataError(f"label: must be a finite number for a regression model, got {shown}")
        return value

    def figure(self, metric: str, y_true: np.ndarray, scores: np.ndarray) -> float | None:
        from ..evaluation.metrics import score

        return score(metric, y_true, scores) if metric in self.metrics else None

    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        from ..evaluation.report import evaluate_values

        return evaluate_values(self.kind, y_true, scores)

    def served_output(self, output: Mapping[str, Any]) -> Any:
        value = output.get("value", output.get("label"))
        return float(value) if value is not None else None

    def truth(self, y: pd.Series, target: str) -> np.ndarray:
        import pandas as pd

        values = pd.to_numeric(y, errors="coerce")
        if values.isna().any():
            raise DataError(f"target '{target}' must hold numbers for a regression model, got "
                            f"{cap_list(y[values.isna()].unique(), show=repr)}")
        return values.to_numpy(dtype=float)

    def agreement(self, a: np.ndarray, b: np.ndarray, thresholds: tuple[float | None, float | None]) -> float:
        return float(np.mean(np.isclose(a, b, rtol=1e-3, atol=1e-3)))

    def live_figures(self, labels: Sequence[Any], outputs: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
        from ..evaluation.metrics import regression_metrics

        y = np.array([float(v) for v in labels])
        pred = np.array([float((o or {}).get("label", np.nan)) for o in outputs])
        return {k: v for k, v in regression_metrics(y, pred).items() if k in self.live_metrics}

    def report_charts(self, y_true: Any, scores: np.ndarray, evaluation: Mapping[str, Any]) -> list[Any]:
        from ..evaluation.report import value_charts

        return value_charts(y_true, scores)


class GenerationHead(BaseHead):
    """Generated text. Scores are an ``(n,)`` object array of answers; the output drift compared is the
    answer's length in characters; feedback carries the corrected answer (text)."""

    name = "generation"
    kinds = ("generation",)
    drift_kind = "numeric"
    onnx_output = "logits"
    metrics = ("chrf", "rouge_l", "exact_match", "label_accuracy", "perplexity")
    default_metric = "chrf"
    # the retrain gate: the task score on the recent slice, the perplexity on the frozen holdout (a share
    # of the champion's: retrain.max_holdout_drop 0.1 allows 10 % more)
    gate_metrics = ("chrf", "perplexity")

    def learnable(self, label: Any) -> bool:
        return isinstance(label, str) and bool(label.strip())

    def truth(self, y: pd.Series, target: str) -> np.ndarray:
        """The reference answers: the text, or a chat's last assistant turn (a chat project's target is its
        messages column, which holds the answer as that turn)."""
        return np.asarray([_answer_text(v) for v in y], dtype=object)

    def native_scores(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), dtype=object)

    def shape_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        return np.asarray(scores, dtype=object).reshape(n)

    def outputs(self, scores: np.ndarray) -> list[dict[str, Any]]:
        return [{"label": str(t), "text": str(t)} for t in np.asarray(scores, dtype=object).ravel()]

    def columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        return {"completion": np.asarray([str(t) for t in np.asarray(scores, dtype=object).ravel()], dtype=object)}

    def check_label(self, label: Any, *, strict: bool = False) -> Any:
        """The corrected answer: non-empty text."""
        _not_missing(label)
        if not isinstance(label, str) or not label.strip():
            raise DataError(f"label: must be the corrected answer as non-empty text, got "
                            f"{shown_json(label) if strict else repr(label)}")
        return label

    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        from .generative.metrics import text_metrics

        refs = [str(v) for v in y_true]
        return {"metrics": text_metrics(refs, [str(s) for s in np.asarray(scores, dtype=object).ravel()]),
                "rows": len(refs)}

    def reference_outputs(self, model: Any, frame: pd.DataFrame, target: str) -> Any:
        """The lengths of the answers the model learned (answering thousands of reference prompts to
        measure the lengths of its own would take hours)."""
        return [float(len(_answer_text(v))) for v in frame[target]] if target in frame.columns else []

    def served_output(self, output: Mapping[str, Any]) -> Any:
        text = output.get("text", output.get("label"))
        return float(len(text)) if isinstance(text, str) else None


def _answer_text(value: Any) -> str:
    """A generation target's answer: the text itself, or the content of a chat's last assistant turn (a
    list of ``{role, content}``, an array of them as Parquet reads it back, or its JSON text)."""
    chat = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(chat, str) and chat.lstrip().startswith("[{"):
        try:
            chat = json.loads(chat)
        except ValueError:
            return chat if isinstance(value, str) else str(value)
    if isinstance(chat, (list, tuple)):
        turns = [m for m in chat if isinstance(m, Mapping)]
        if turns and turns[-1].get("role") == "assistant":
            return str(turns[-1].get("content", ""))
        return ""
    return str(value)


def _not_missing(label: Any) -> None:
    if label is None or (isinstance(label, float) and label != label):
        raise DataError("label: missing")


def class_indices(classes: Sequence[Any], y: pd.Series, target: str) -> np.ndarray:
    """Labels of column ``target`` as indices into ``classes``: a label that is one of them as it is, else matched
    by its text (``label_text``: 1, 1.0 and '1' agree); a DataError names a label the model never saw.

    Exactly first: classes that differ only in surrounding spaces ('yes' and 'yes ', from a spreadsheet; the
    profile names them and the clean rule that merges them) share one text, and matching by text alone sent
    every 'yes' to the class 'yes ': a model right on 77 % of its rows scored 8 % accuracy on its test split."""
    index: dict[str, int] = {}
    for i, c in enumerate(classes):
        index.setdefault(label_text(c), i)
    exact = _exact_index(classes)

    def position(v: Any) -> int:
        found = _exact_class(exact, v)
        return found if found is not None else index.get(label_text(v), -1)

    mapped = y.map(position)
    unknown = y[mapped.to_numpy() < 0]
    if len(unknown):
        raise DataError(f"target '{target}' holds labels the model never saw, e.g. {unknown.iloc[0]!r}; "
                        f"known labels: {cap_list(index)}")
    return mapped.to_numpy(dtype=int)


def _exact_index(classes: Sequence[Any]) -> dict[Any, int]:
    """Each class's position, by its value as it is (as a dict compares: 1 and 1.0 agree, '1' does not)."""
    index: dict[Any, int] = {}
    for i, c in enumerate(classes):
        try:
            index.setdefault(c, i)
        except TypeError:  # an unhashable class: matched by its text only
            pass
    return index


def _exact_class(index: dict[Any, int], label: Any) -> int | None:
    try:
        return index.get(label)
    except TypeError:  # an unhashable label
        return None


def _proba_matrix(outputs: Sequence[Mapping[str, Any] | None], keys: Sequence[str]) -> np.ndarray | None:
    """The ``(n, K)`` probabilities of logged answers in ``keys`` order; None when one has none."""
    rows = []
    for o in outputs:
        p = (o or {}).get("probabilities")
        if not isinstance(p, dict):
            return None
        rows.append([float(p.get(k, 0.0)) for k in keys])
    return np.asarray(rows) if rows else None


class AnomalyHead(BaseHead):
    """Anomaly scores. Scores are ``(n, 1 + C)``: column 0 the calibrated score in [0, 1] (the share of
    training rows scoring at or below the record), then each of the model's ``features`` share of the
    record's deviation. ``threshold`` is the score above which a record is flagged (``1 - contamination``).
    ``classes`` are the label column's ``[normal, anomaly]`` values; feedback is an analyst's verdict,
    ``confirmed`` (the anomaly value) or ``false_alarm`` (the normal one)."""

    name = "anomaly"
    kinds = ("anomaly",)
    drift_kind = "numeric"      # the score distribution
    onnx_output = "scores"
    metrics = ("pr_auc", "roc_auc")    # of the scores on labelled rows; the search has its own (search.py)
    default_metric = "pr_auc"
    default_split = "stratified"       # on the partial labels (unlabelled rows are a stratum); random without
    stratifies = True
    target_kind = "categorical"
    gate_metrics = ("precision_at_budget", "roc_auc")  # retrain: recent verdicts, frozen labelled holdout
    # monitor: of the answers analysts gave a verdict on, the flagged ones confirmed, and the confirmed ones
    # flagged (not pr_auc: verdicts come mostly on alerts, so it would read the analysts' choice of records)
    live_metrics = ("precision_at_budget", "recall")
    VERDICTS = ("confirmed", "false_alarm")

    def __init__(self, kind: str, classes: Sequence[Any] | None = None, threshold: float | None = None,
                 features: Sequence[str] = (), reasons: int = 3):
        super().__init__(kind, list(classes) if classes else ["false_alarm", "confirmed"],
                         0.99 if threshold is None else threshold)
        self.features, self.reasons = list(features), int(reasons)

    @classmethod
    def from_info(cls, kind: str, info: Mapping[str, Any]) -> AnomalyHead:
        described = info.get("description") or {}
        return cls(kind, info.get("classes"), info.get("threshold"), described.get("features") or (),
                   (described.get("selection") or {}).get("reasons", 3))

    def native_scores(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame), dtype=np.float64)

    def shape_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        return scores.reshape(n, -1)

    @property
    def expected_share(self) -> float:
        """The share of records the threshold flags on the training rows (``/metrics``' expected band)."""
        return round(1.0 - float(self.threshold or 0.0), 6)

    def flagged(self, scores: np.ndarray) -> np.ndarray:
        return _score_column(scores) > float(self.threshold or 0.0)

    def _reasons(self, row: np.ndarray, record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        order = np.argsort(-row[1:], kind="stable")[: self.reasons]
        return [{"feature": self.features[j], "value": None if record is None else record.get(self.features[j]),
                 "contribution": round(float(row[1 + j]), 4)}
                for j in order.tolist() if j < len(self.features) and row[1 + j] > 0]

    def record_outputs(self, scores: np.ndarray, records: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
        flags = self.flagged(scores).tolist()
        return [{"score": round(float(row[0]), 6), "is_anomaly": bool(flag),
                 "reasons": self._reasons(row, None if records is None else records[i]) if flag else []}
                for i, (row, flag) in enumerate(zip(scores, flags, strict=True))]

    def outputs(self, scores: np.ndarray) -> list[dict[str, Any]]:
        return self.record_outputs(scores, None)

    def columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        answers = self.outputs(scores)
        return {"score": _score_column(scores).astype(np.float64), "is_anomaly": self.flagged(scores),
                "reasons": np.array([json.dumps([r["feature"] for r in a["reasons"]], ensure_ascii=False)
                                     for a in answers], dtype=object)}  # 金额 as written, not \u91d1\u989d

    def truth(self, y: pd.Series, target: str) -> np.ndarray:
        """1 for the label column's anomaly value, 0 for its normal one (a DataError for any other)."""
        classes = [label_text(c) for c in self.classes or []]
        text = y.map(label_text).replace({"confirmed": classes[1], "false_alarm": classes[0]})  # the API's verdicts
        unknown = y[~text.isin(classes)]
        if len(unknown):
            raise DataError(f"target '{target}' holds labels the model never saw, e.g. {unknown.iloc[0]!r}; "
                            f"known labels: {cap_list(self.classes or [])}")
        return (text == classes[1]).to_numpy(dtype=np.int64)

    def live_figures(self, labels: Sequence[Any], outputs: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
        """Precision of the alerts (the flagged answers' share confirmed) and recall (the confirmed answers'
        share flagged), each None when no verdict says it; the served answer's ``is_anomaly`` is the flag."""
        import pandas as pd

        y = self.truth(pd.Series(list(labels), dtype=object), "label")
        flagged = np.array([bool((o or {}).get("is_anomaly")) for o in outputs])
        hits = int((flagged & (y == 1)).sum())
        return {"precision_at_budget": hits / int(flagged.sum()) if flagged.any() else None,
                "recall": hits / int((y == 1).sum()) if (y == 1).any() else None}

    def class_texts(self, y: pd.Series) -> pd.Series:
        """A verdict counts as the label column's value it stands for (``confirmed`` -> the anomaly value):
        the API keeps the client's verdict, a file's import the value, and both are one class."""
        classes = [label_text(c) for c in self.classes or ["false_alarm", "confirmed"]]
        return super().class_texts(y).replace({"confirmed": classes[1], "false_alarm": classes[0]})

    def check_label(self, label: Any, *, strict: bool = False) -> Any:
        """An analyst's verdict: ``confirmed`` -> the anomaly value, ``false_alarm`` -> the normal one."""
        _not_missing(label)
        text = label.strip() if isinstance(label, str) and not strict else label
        if not isinstance(text, str) or text not in self.VERDICTS:
            shown = shown_json(label) if strict else repr(label)
            raise DataError(f"label: must be a verdict, confirmed or false_alarm, got {shown}")
        classes = self.classes or ["false_alarm", "confirmed"]
        return classes[1] if text == "confirmed" else classes[0]

    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        """ROC-AUC, PR-AUC (average precision), precision and recall at the threshold (the alert budget)
        on labelled rows (``y_true``: 1 anomaly, 0 normal)."""
        from sklearn.metrics import average_precision_score, roc_auc_score

        y = np.asarray(y_true).astype(int)
        s = _score_column(scores)
        flagged = s > float(self.threshold or 0.0)
        both = len(np.unique(y)) == 2
        hits = int((flagged & (y == 1)).sum())
        metrics = {"roc_auc": float(roc_auc_score(y, s)) if both else None,
                   "pr_auc": float(average_precision_score(y, s)) if both else None,
                   "precision_at_budget": hits / int(flagged.sum()) if flagged.any() else None,
                   "recall": hits / int((y == 1).sum()) if (y == 1).any() else None,
                   "flagged_share": float(flagged.mean()) if len(y) else None}
        return {"metrics": metrics, "rows": int(len(y)), "labelled": int(len(y)), "anomalies": int((y == 1).sum())}

    def served_output(self, output: Mapping[str, Any]) -> Any:
        value = output.get("score")
        return float(value) if value is not None else None


class RankingHead(BaseHead):
    """A recommender's scores of ``(user, item)`` records: ``(n,)`` predicted ratings (explicit feedback)
    or ranking scores (implicit). Its figures (ranking metrics at ``k`` with training items excluded,
    RMSE/MAE) come from the model's held-out interactions (``evaluate_interactions``), not from a label
    column; feedback on a prediction is a rating (a finite number)."""

    name = "ranking"
    kinds = ("ranking",)
    drift_kind = "numeric"      # the served scores
    onnx_output = "scores"
    metrics = ("ndcg", "recall", "precision", "map", "hit_rate", "rmse", "mae")
    default_metric = "ndcg"
    default_split = "user"      # a share of each user's interactions (data.time: the latest ones)
    live_metrics = ()

    def __init__(self, kind: str, classes: Sequence[Any] | None = None, threshold: float | None = None,
                 explicit: bool = False):
        super().__init__(kind, None, None)
        self.explicit = bool(explicit)

    @classmethod
    def from_info(cls, kind: str, info: Mapping[str, Any]) -> RankingHead:
        return cls(kind, explicit=bool((info.get("description") or {}).get("explicit")))

    def native_scores(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), dtype=np.float64)

    def shape_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64).reshape(n)

    def outputs(self, scores: np.ndarray) -> list[dict[str, Any]]:
        key = "rating" if self.explicit else "score"
        return [{key: v, "value": v} for v in np.asarray(scores, dtype=np.float64).reshape(-1).tolist()]

    def columns(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        return {"rating" if self.explicit else "score": np.asarray(scores, dtype=np.float64).reshape(-1)}

    def check_label(self, label: Any, *, strict: bool = False) -> Any:
        """A rating of the predicted pair: a finite number, never a boolean."""
        _not_missing(label)
        value = label if strict or not isinstance(label, str) else label.strip()
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"label: must be a rating (a number), got {shown_json(label)}") from None
        if not math.isfinite(number):
            raise DataError(f"label: must be a finite rating, got {label!r}")
        return number

    def evaluate(self, y_true: Any, scores: np.ndarray) -> dict[str, Any]:
        """RMSE and MAE of predicted ratings against true ones (the ranking figures are the model's)."""
        predicted, truth = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(y_true, dtype=np.float64)
        if predicted.shape != truth.shape:
            raise DataError(f"a ranking evaluation needs one predicted rating per true rating, got {predicted.size} "
                            f"predictions for {truth.size} ratings")
        err = predicted - truth
        metrics = {"rmse": float(np.sqrt(np.mean(err ** 2))) if len(err) else None,
                   "mae": float(np.mean(np.abs(err))) if len(err) else None}
        return {"metrics": metrics, "rows": int(len(err))}

    def served_output(self, output: Mapping[str, Any]) -> Any:
        value = output.get("value")
        return float(value) if value is not None else None


def _score_column(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    return scores[:, 0] if scores.ndim == 2 else scores


HEADS: dict[str, type[BaseHead]] = {"classification": ClassificationHead, "regression": RegressionHead,
                                    "anomaly": AnomalyHead}
HEADS["generation"] = GenerationHead
HEADS["ranking"] = RankingHead
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
    if hasattr(head, "from_info"):  # a head that reads more of what its version recorded
        return head.from_info(kind, info)
    return head(kind, info.get("classes") if head is ClassificationHead else None, info.get("threshold"))


def _class_text(value: Any) -> str | None:
    """``class_texts`` of one stored label: missing (None, NaN) stays missing; a label that is not one
    value (a rated conversation's messages, a generation's correction with its rating) is its text, never
    compared with itself (``array != array`` has no truth value: retrain of a chat project failed)."""
    if isinstance(value, (list, tuple, dict, set)) or np.ndim(value) > 0:
        return str(value)
    return None if value is None or value != value else label_text(value)  # NaN != NaN: missing
