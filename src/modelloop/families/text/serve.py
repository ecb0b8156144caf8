"""The text family's served object: tokenization in the server, the network in ONNX Runtime.

The int8 graph ``modelloop optimize`` registered (else the fp32 one) runs on ``threads`` intra-op
threads; without either the PyTorch network serves. Texts go straight to the tokenizer unless the
model was trained on cleaned data, whose text normalisation reads a table.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ...serving.runtime import Runtime, native_model, table_columns

__all__ = ["text_runtime"]

log = logging.getLogger("modelloop.serving")


def text_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None, threads: int) -> Runtime:
    """The served object of a text model version."""
    native = native_model(ws, row)
    formats = row.get("formats") or {}
    session, variant = None, "native"
    reason = "text model without an ONNX variant (run `modelloop optimize`); serving PyTorch"
    for key, kind in (("onnx_int8", "int8"), ("onnx", "fp32")):
        if formats.get(key):
            try:
                session = native.onnx_session(kind, path=formats[key], threads=threads)
            except Exception as exc:
                log.warning("model %s:%s: %s session failed: %s", row["name"], row["version"], key, exc)
                continue
            variant, reason = key, f"text model served through ONNX Runtime ({key}, {threads} threads)"
            break
    column = str(row["input_schema"]["text"])  # a text model's schema always names its text column
    table_text = bool(getattr(native, "cleaning_plan_", None))  # the plan's normalisation reads a table

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        # the texts alone: a one-row frame, built and read back, took 0.2 of 0.9 ms (int8, batch 1)
        texts: Any = pd.DataFrame.from_records(records, columns=[column]) if table_text \
            else [r.get(column) for r in records]
        proba, cut = native.scores(texts, session=session)
        return np.asarray(proba, dtype=np.float64), cut

    settings = native.settings()
    extra = {"text": {"column": column, "max_length": int(native.max_length_), "method": settings.method,
                      "backbone": settings.backbone}}
    rt = Runtime(row, native=native, plan=plan, table=table_columns(ws, row), reason=reason, scorer=score,
                 variant=variant, extra=extra)
    rt.text_session = session
    return rt
