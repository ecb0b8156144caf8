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

With ``data.group`` the slice takes whole groups, those whose latest feedback is the most recent first,
until it holds the rows asked for (of each class, where the latest share cannot compare models): a
customer's older feedback rows in the challenger's training would teach it the customer its newer rows
then judge it on, and flatter it against the champion, which never saw them.

The rows of earlier slices (the champion's dataset's ``recent`` side) go back to training: neither model
learnt them, the gate judges on the new slice, and feedback a team labelled is then learnt by the next
model instead of judging every later one. Those of a group the new slice takes stay with it (a group's
rows on one side: the challenger would learn the customer it is judged on); the champion never trained on
them either.

Feedback of one class alone cannot give a slice that compares models: the gate then decides on the
frozen holdout (``retrain._decide``) and its reason says why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


def choose_recent(order: pd.DataFrame, fraction: float, label: str | None, metric: str, *,
                  group: str | None = None, earlier: pd.DataFrame | None = None) -> tuple[set[Any], dict[str, Any]]:
    """The ``_row_id`` of the recent slice among the new feedback ``order`` (oldest first; its ``label``
    column as the classes the gate counts: ``retrain`` passes the head's ``class_texts``), with the rows
    of ``earlier`` (earlier slices' rows) that stay in it, and how it was chosen: ``{"how": "latest" |
    "latest_of_each_class", "rows", "fraction", "classes"?, "feedback_classes"?, "latest_classes"?,
    "groups"?, "earlier_slices"?}`` (the class keys for a class figure only; ``rows``: the new rows).

    With ``group`` (``data.group``'s column) the slice takes whole groups (``_WholeGroups``), and ``groups``
    says how many. Every row of ``earlier`` returns to training but those of a group the slice takes
    (``earlier_slices``: ``{rows, kept}``; ``groups.held_by_earlier_slice``: the groups they are of)."""
    n = max(1, int(round(len(order) * fraction)))
    whole = _WholeGroups(order, group) if group is not None and group in order.columns else None
    latest = order[whole.take(np.ones(len(order), dtype=bool), n)] if whole is not None else order.iloc[-n:]
    note: dict[str, Any] = {"how": "latest", "rows": len(latest), "fraction": fraction}
    if label is None or label not in order.columns or metric not in CLASS_FIGURES:
        return _with_earlier(set(latest[ROW_ID]), note, order, whole, earlier)
    held_classes, feedback = class_counts(latest[label]), class_counts(order[label])
    note.update(classes=held_classes, feedback_classes=len(feedback))
    if len(held_classes) >= classes_needed(metric, len(feedback)):
        return _with_earlier(set(latest[ROW_ID]), note, order, whole, earlier)
    text = order[label].map(label_text)
    if whole is not None:  # each class's latest share, in whole groups
        whole.reset()
        for cls in sorted(text.dropna().unique()):
            of_class = (text == cls).to_numpy()
            whole.take(of_class, max(1, int(round(of_class.sum() * fraction))))
        chosen = order[whole.chosen[whole.codes]]
    else:
        chosen = pd.concat([rows.iloc[-max(1, int(round(len(rows) * fraction))):]
                            for _, rows in order[text.notna()].groupby(text[text.notna()], sort=True)])
    note.update(how="latest_of_each_class", rows=len(chosen), classes=class_counts(chosen[label]),
                latest_classes=held_classes, latest_rows=len(latest))
    return _with_earlier(set(chosen[ROW_ID]), note, order, whole, earlier)


def _with_earlier(ids: set[Any], note: dict[str, Any], order: pd.DataFrame, whole: _WholeGroups | None,
                  earlier: pd.DataFrame | None) -> tuple[set[Any], dict[str, Any]]:
    """The slice's ``ids`` with the rows of ``earlier`` of a group it takes (whole groups on one side; the
    others return to training), and ``note`` with ``earlier_slices`` and ``groups``."""
    kept = earlier.iloc[:0] if earlier is not None else None
    if earlier is not None and whole is not None and whole.column in earlier.columns:
        taken = order.loc[order[ROW_ID].isin(ids), whole.column]
        kept = earlier[earlier[whole.column].isin(taken)]
    if whole is not None:
        note = {**note, "groups": whole.note(0 if kept is None else kept[whole.column].nunique(dropna=False))}
    if earlier is None or kept is None:
        return ids, note
    return ids | set(kept[ROW_ID]), {**note, "earlier_slices": {"rows": len(earlier), "kept": len(kept)}}


class _WholeGroups:
    """The recent slice drawn in whole ``data.group`` groups, so that no group has new feedback rows both
    in it and in the challenger's training rows (a customer's older rows taught the challenger the
    customer its newer rows then judge it on). The groups whose latest feedback is the most recent go
    first, whole, until the slice holds the rows asked for (the last one may take it past them)."""

    def __init__(self, order: pd.DataFrame, group: str) -> None:
        self.column = group
        self.codes = pd.factorize(order[group], use_na_sentinel=False)[0]
        self.count = int(self.codes.max()) + 1 if len(self.codes) else 0
        self.reset()

    def reset(self) -> None:
        self.chosen = np.zeros(self.count, dtype=bool)

    def take(self, rows: np.ndarray, need: int) -> np.ndarray:
        """Adds groups of ``rows`` (a mask over the feedback), latest first, until the chosen groups hold
        ``need`` of ``rows``; the mask of every chosen group's rows."""
        pos = np.flatnonzero(rows)
        last = np.full(self.count, -1, dtype=np.int64)
        np.maximum.at(last, self.codes[pos], pos)
        ranked = np.argsort(-last, kind="stable")
        ranked = ranked[(last[ranked] >= 0) & ~self.chosen[ranked]]
        size = np.bincount(self.codes[pos], minlength=self.count)
        have = int(size[self.chosen].sum())
        if have < need and len(ranked):
            upto = int(np.searchsorted(have + np.cumsum(size[ranked]), need)) + 1
            self.chosen[ranked[:upto]] = True
        return self.chosen[self.codes]

    def note(self, held: int) -> dict[str, Any]:
        """``{column, groups, feedback_groups, held_by_earlier_slice}``: the groups chosen, those of the new
        feedback, and ``held``: those of them an earlier slice holds rows of (which stay in the slice)."""
        return {"column": self.column, "groups": int(self.chosen.sum()), "feedback_groups": self.count,
                "held_by_earlier_slice": held}


def one_class_words(counts: dict[str, int]) -> str:
    """``only class 'positive'`` / ``no labelled row``: what a slice that cannot compare models holds."""
    if not counts:
        return "no labelled row"
    return f"only class {next(iter(counts))!r}"
