"""The partial label column of an anomaly project: which value marks an anomaly, and 1 / 0 / -1 per row.

``data.target`` is optional for ``task: anomaly_detection``. When given it may be filled for a few rows
only; it is never a feature. Its anomaly value is ``anomaly.positive_label``, else a value that says so
(1, true, yes, anomaly, fraud, confirmed, ...), else the rarer of the two values. Analysts' verdicts
(``confirmed`` / ``false_alarm``) are stored as these same two values (a file's import) or as the verdict
itself (the API keeps the client's label): both read as the anomaly / normal value here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError, cap_list
from ..heads import label_text

__all__ = ["POSITIVE_WORDS", "VERDICTS", "label_classes", "label_vector"]

POSITIVE_WORDS = frozenset({"1", "true", "yes", "y", "anomaly", "anomalous", "outlier", "fraud", "confirmed",
                            "attack", "fault", "faulty", "incident", "alert", "bad", "abnormal"})
VERDICTS = ("false_alarm", "confirmed")  # classes of a project without a label column


def label_classes(y: pd.Series | None, target: str | None, positive: Any = None) -> list[Any]:
    """``[normal, anomaly]`` as the label column spells them (``VERDICTS`` when there is none)."""
    if y is None:
        return list(VERDICTS)
    values = [v for v in pd.unique(y.dropna()) if label_text(v) not in VERDICTS]  # verdicts map onto the values
    if not values and y.notna().any():
        return list(VERDICTS)
    if len(values) > 2:
        raise DataError(f"data.target: an anomaly label column holds two values (normal and anomaly), column "
                        f"'{target}' holds {len(values)}: {cap_list(values, show=repr)}")
    texts = {label_text(v): v for v in values}
    if positive is not None:
        if label_text(positive) not in texts and values:
            raise DataError(f"anomaly.positive_label: {positive!r} is not a value of column '{target}' "
                            f"({cap_list(values, show=repr)})")
        pos = texts.get(label_text(positive), positive)
    else:
        named = [v for t, v in texts.items() if t.lower() in POSITIVE_WORDS]
        if len(named) == 1:
            pos = named[0]
        elif len(values) == 2:
            counts = y.value_counts()
            pos = counts.index[-1] if counts.iloc[-1] < counts.iloc[0] else counts.index[0]
        elif not values:
            return list(VERDICTS)
        else:  # one value: a word says whether it is the anomaly
            only = _plain(values[0])
            return ["normal", only] if label_text(only).lower() in POSITIVE_WORDS else [only, "anomaly"]
    rest = [v for v in values if label_text(v) != label_text(pos)]
    normal = rest[0] if rest else ("normal" if label_text(pos) != "normal" else "not normal")
    return [_plain(normal), _plain(pos)]


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, float)) and float(value).is_integer():
        return int(value)
    return value.item() if isinstance(value, np.generic) else value


def label_vector(y: pd.Series | None, classes: list[Any], n: int) -> np.ndarray:
    """1 for the anomaly value, 0 for the normal one, -1 for a row without a label."""
    if y is None:
        return np.full(n, -1, dtype=np.int64)
    pos, neg = label_text(classes[1]), label_text(classes[0])
    text = y.map(lambda v: label_text(v) if pd.notna(v) else None)
    positive = (text == pos) | (text == VERDICTS[1])
    negative = (text == neg) | (text == VERDICTS[0])
    return np.where(positive, 1, np.where(negative, 0, -1)).astype(np.int64)
