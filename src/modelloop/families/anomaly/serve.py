"""The anomaly family's served object: the generic Runtime with a scorer that runs the native detector
on the validated records (no ONNX graph: ECOD/COPOD tails and kNN distances read the training rows).
A model with a time window column replays it: the scorer remembers the records it scored after the
training rows (``features.WindowHistory``, one window back) and counts each new record against them."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

from ...serving.runtime import Runtime, native_model, table_columns
from .features import WindowHistory

__all__ = ["anomaly_runtime"]


def anomaly_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None) -> Runtime:
    native = native_model(ws, row)
    columns = list(native.schema.features())
    encoder = native.encoder_
    windowed = getattr(encoder, "window_part_", None) is not None  # versions before the window have none
    history, lock = (WindowHistory(encoder) if windowed else None), threading.Lock()

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        frame = pd.DataFrame.from_records(records, columns=columns)
        if getattr(native, "cleaning_plan_", None):
            from ...data.cleaning import CleaningPlan

            frame = CleaningPlan.from_dict(native.cleaning_plan_).apply_inference(frame)
        if history is None:
            return np.asarray(native.predict_proba(frame), dtype=np.float64), None
        with lock:  # the window counts the records served before: score, then remember, one batch at a time
            scores = np.asarray(native.predict_proba(frame, history), dtype=np.float64)
            history.add(frame)
        return scores, None

    extra = {"anomaly": {"threshold": native.threshold_, "members": native.describe()["members"],
                         "selection": native.selection_.get("chosen"), "budget": native.selection_.get("budget")}}
    return Runtime(row, native=native, plan=plan, table=table_columns(ws, row), scorer=score,
                   reason="anomaly detectors served natively (scikit-learn and numpy)", variant="native",
                   extra=extra)
