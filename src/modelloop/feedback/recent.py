"""The recent slice of a retrain: which new feedback rows it holds, and whether the gate's class figure
can compare two models there.

The slice is the latest ``retrain.recent_fraction`` of the new feedback, held out of the challenger's
training. A class figure cannot compare models on a slice of one class: a model answering that class to
everything scores as well as a perfect one (f1_macro gives both 0.50 on a binary problem), and a
class-averaged figure (f1_macro, precision_macro, recall_macro, pr_auc, a multiclass f1) counts every
class missing from the slice as 0 for every model. Feedback often arrives in an order of its own (a
labelling team's file sorted by label), so the latest share can hold one class while the feedback holds
them all. The slice is then the latest share *of each class's* feedback: about as many rows, every class
the feedback holds, still each class's newest rows, decided when the split is written so that the
challenger never trains on them. Widening the latest share backwards until another class appears would
take the whole last class out of training and judge on a handful of the other class's rows.

An anomaly head's gate figure, ``precision_at_budget`` (the share of flagged records the analysts
confirmed), is such a figure too: on verdicts of one kind every model that flags any record scores the
same (1.0 on ``confirmed`` alone, 0.0 on ``false_alarm`` alone). Its classes are the verdicts, counted
by the class each stands for (the head's ``class_texts``: ``confirmed`` and the label column's anomaly
value are one class).

Feedback of one class alone cannot give a slice that compares models: the gate then decides on the
frozen holdout (``retrain._decide``) and its reason says why.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..data.snapshot import ROW_ID
from ..evaluation.metrics import CLASSIFICATION_METRICS
from ..families.heads import label_text

__all__ = ["CLASS_AVERAGED", "CLASS_FIGURES", "choose_recent", "classes_needed", "class_counts",
           "one_class_words"]

# Figures averaged over every class the model knows: a class missing from the slice scores 0 for all models.
CLASS_AVERAGED = frozenset({"f1", "f1_macro", "precision_macro", "recall_macro", "pr_auc"})
# Figures that need two classes on the slice to compare models: the registry's class figures and the
# anomaly gate's precision at the alert budget (verdicts of one kind: 1.0 or 0.0 for every flagging model).
CLASS_FIGURES = frozenset(CLASSIFICATION_METRICS) | {"precision_at_budget"}


def class_counts(labels: pd.Series) -> dict[str, int]:
    """Rows of each class, by the class's text (1, 1.0 and '1' are one class), largest first."""
    counts = labels.dropna().map(label_text).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def classes_needed(metric: str, feedback_classes: int) -> int:
    """How many classes the recent slice must hold for ``metric`` to compare models: none for a figure
    that is not a class figure (regression, a head's own gate figure, a ranking), every class of the
    feedback for a class-averaged one, else two (or fewer when the feedback holds fewer)."""
    if metric not in CLASS_FIGURES:
        return 0
    return feedback_classes if metric in CLASS_AVERAGED else min(2, feedback_classes)


def choose_recent(order: pd.DataFrame, fraction: float, label: str | None,
                  metric: str) -> tuple[set[Any], dict[str, Any]]:
    """The ``_row_id`` of the recent slice among the new feedback ``order`` (oldest first; its ``label``
    column as the classes the gate counts: ``retrain`` passes the head's ``class_texts``), and how it was
    chosen: ``{"how": "latest" | "latest_of_each_class", "rows", "fraction", "classes"?,
    "feedback_classes"?, "latest_classes"?}`` (the class keys for a class figure only)."""
    n = max(1, int(round(len(order) * fraction)))
    latest = order.iloc[-n:]
    note: dict[str, Any] = {"how": "latest", "rows": n, "fraction": fraction}
    if label is None or label not in order.columns or metric not in CLASS_FIGURES:
        return set(latest[ROW_ID]), note
    held, feedback = class_counts(latest[label]), class_counts(order[label])
    note.update(classes=held, feedback_classes=len(feedback))
    if len(held) >= classes_needed(metric, len(feedback)):
        return set(latest[ROW_ID]), note
    text = order[label].map(label_text)
    picked = [rows.iloc[-max(1, int(round(len(rows) * fraction))):]
              for _, rows in order[text.notna()].groupby(text[text.notna()], sort=True)]
    chosen = pd.concat(picked)
    note.update(how="latest_of_each_class", rows=len(chosen), classes=class_counts(chosen[label]),
                latest_classes=held, latest_rows=n)
    return set(chosen[ROW_ID]), note


def one_class_words(counts: dict[str, int]) -> str:
    """``only class 'positive'`` / ``no labelled row``: what a slice that cannot compare models holds."""
    if not counts:
        return "no labelled row"
    return f"only class {next(iter(counts))!r}"
