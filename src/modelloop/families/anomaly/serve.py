"""The anomaly family's served object: the generic Runtime with a scorer that runs the native detector
on the validated records (no ONNX graph: ECOD/COPOD tails and kNN distances read the training rows)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...serving.runtime import Runtime, native_model, table_columns

__all__ = ["anomaly_runtime"]


def anomaly_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None) -> Runtime:
    native = native_model(ws, row)
    columns = list(native.schema.features())

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        frame = pd.DataFrame.from_records(records, columns=columns)
        if getattr(native, "cleaning_plan_", None):
            from ...data.cleaning import CleaningPlan

            frame = CleaningPlan.from_dict(native.cleaning_plan_).apply_inference(frame)
        return np.asarray(native.predict_proba(frame), dtype=np.float64), None

    extra = {"anomaly": {"threshold": native.threshold_, "members": native.describe()["members"],
                         "selection": native.selection_.get("chosen"), "budget": native.selection_.get("budget")}}
    return Runtime(row, native=native, plan=plan, table=table_columns(ws, row), scorer=score,
                   reason="anomaly detectors served natively (scikit-learn and numpy)", variant="native",
                   extra=extra)
