"""The prepared frame's column names and the ONNX graph's input-names key: what serving needs of the tabular
model's layout, without scikit-learn (``model.py``), so that ``modelloop serve`` starts without importing
it and SciPy (~1.5 s of a server's start) when the model is served through its ONNX graph."""

from __future__ import annotations

from ...data.schema import Schema

__all__ = ["DATETIME_PARTS", "INPUT_COLUMNS_KEY", "prepared_columns"]

DATETIME_PARTS: tuple[str, ...] = ("year", "month", "day", "dayofweek", "hour", "epoch")
INPUT_COLUMNS_KEY = "modelloop.input_columns"


def prepared_columns(schema: Schema) -> tuple[list[str], list[str]]:
    """(numeric, categorical) names of the prepared frame, in the order ``model.prepare_features`` emits."""
    numeric: list[str] = []
    categorical: list[str] = []
    for col in schema.features():
        kind = schema.columns[col]
        if kind == "datetime":
            numeric.extend(f"{col}__{p}" for p in DATETIME_PARTS)
        elif kind == "categorical":
            categorical.append(col)
        else:
            numeric.append(col)
    return numeric, categorical
