"""The anomaly family's served object: the generic Runtime with a scorer that runs the native detector
on the validated records (no ONNX graph: ECOD/COPOD tails and kNN distances read the training rows).
A model with a time window column replays it: the scorer keeps the records it scored after the training
rows in the catalog's ``anomaly_window`` table (``features.WindowHistory``, one window back, each record
once by its digest) and counts each new record against the ones kept there: a restarted server, and
every worker of one, count the records kept before (batches scored at the same moment by two workers
do not see each other)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

from ...data.images import IMAGE_COLUMN, STAT_COLUMNS
from ...serving.runtime import Runtime, native_model, table_columns
from .features import WindowHistory

__all__ = ["anomaly_runtime"]


def anomaly_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None) -> Runtime:
    native = native_model(ws, row)
    encoder = native.encoder_
    windowed = getattr(encoder, "window_part_", None) is not None  # versions before the window have none
    history = WindowHistory(encoder, catalog=ws.catalog, name=row["name"]) if windowed else None
    lock = threading.Lock()
    images = getattr(encoder, "backbone", None) is not None  # images.ImageEncoder: records carry pixels
    columns = [IMAGE_COLUMN, *STAT_COLUMNS] if images else list(native.schema.features())

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        frame = pd.DataFrame.from_records(records, columns=columns)
        if images:  # the validator decoded and resized each image: its pixels stand for the bytes
            frame[IMAGE_COLUMN] = pd.Series([getattr(r, "pixels", r.get(IMAGE_COLUMN)) for r in records],
                                            index=frame.index, dtype=object)
        if getattr(native, "cleaning_plan_", None):
            from ...data.cleaning import CleaningPlan

            frame = CleaningPlan.from_dict(native.cleaning_plan_).apply_inference(frame)
        if history is None:
            return np.asarray(native.predict_proba(frame), dtype=np.float64), None
        with lock:  # the window counts the records served before (kept in the catalog): read, score, keep
            history.load(frame)
            scores = np.asarray(native.predict_proba(frame, history), dtype=np.float64)
            history.add(frame)
        return scores, None

    extra = {"anomaly": {"threshold": native.threshold_, "members": native.describe()["members"],
                         "selection": native.selection_.get("chosen"), "budget": native.selection_.get("budget")}}
    reason = "anomaly detectors served natively (scikit-learn and numpy)"
    if images:
        extra["image"] = {"column": IMAGE_COLUMN, "image_size": encoder.image_size, "backbone": encoder.backbone,
                          "upload": "/v1/predict/image"}
        reason = "anomaly detectors over the frozen image backbone's features, served natively"
    rt = Runtime(row, native=native, plan=plan, table=table_columns(ws, row), scorer=score, reason=reason,
                 variant="native", extra=extra)
    if images:  # decoded as the image family's server decodes, each image kept for verdicts (its served.py)
        from ..image.serve import ImageRequestValidator
        from ..image.served import served_images

        rt.validator = ImageRequestValidator(rt.validator, encoder.image_size,  # type: ignore[assignment]
                                             keep=served_images(ws, row))
    return rt
