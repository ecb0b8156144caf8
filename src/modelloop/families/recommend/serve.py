"""The recommendation family's served object: the generic Runtime scoring ``(user, item)`` records with
the native model (``POST /v1/predict``), and the model itself for ``POST /v1/recommend``
(:mod:`modelloop.serving.recommend`): its factors and per-user index are in memory, a request is one
matrix-vector product and a partial sort, or (a catalog small enough to precompute) a slice of the
user's list ranked when the model loaded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...serving.runtime import Runtime, native_model, table_columns

__all__ = ["recommend_runtime"]


def recommend_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None) -> Runtime:
    native = native_model(ws, row)
    # every known user's scores once, when the catalog is small enough, and their serve.max_k best unseen
    # items (+ room for a request's exclude list) ranked once: a request reads a list
    precomputed = native.precompute(keep=ws.config.serve.max_k + 32)
    columns = [native.user_col, native.item_col]

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        frame = pd.DataFrame.from_records(records, columns=columns)
        return np.asarray(native.predict(frame), dtype=np.float64), None

    described = native.describe()
    extra = {"recommend": {**{key: described[key] for key in ("recommender", "k", "explicit", "users", "items",
                                                               "item_features")}, "precomputed": precomputed}}
    runtime = Runtime(row, native=native, plan=None, table=table_columns(ws, row), scorer=score,
                      reason="recommender served natively (numpy factors, a partial sort per request)",
                      variant="native", extra=extra)
    runtime.recommender = native  # type: ignore[attr-defined]  # what /v1/recommend asks
    return runtime
