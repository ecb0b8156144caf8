"""The served model: one ``predict(records)`` over whatever a family serves it with.

:func:`load_runtime` resolves a model version and asks its family (``Family.runtime``) for a
:class:`Runtime`: the family gives it a ``scorer`` (validated records -> scores in the head's shape;
the tabular family's ONNX feed and session, ``families/tabular/serve.py``; the text family's tokenizer
and network) or only the ``native`` model, scored through the head on a DataFrame. The runtime
validates requests against the model's input schema, replays the cleaning plan of the data the model
was trained on, and turns scores into answers through the model's head (``families/heads.py``).
A family whose serving path fails serves the native model, and says why (``GET /v1/model``:
``variant: native``, ``reason``).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.cleaning import CleaningPlan
from ..data.dates import read_datetime
from ..data.schema import Schema
from ..workspace import Workspace
from .config import ServeConfig, serve_config
from .validation import RequestValidator

__all__ = ["ONNX_ATOL", "Runtime", "Scorer", "available_cpus", "load_runtime", "native_model", "onnx_path",
           "served_diff", "table_columns", "text_threads", "to_records"]

# validated records -> (scores in the head's shape, which texts were cut or None): a family's serving path
Scorer = Callable[[list[dict[str, Any]]], tuple[np.ndarray, np.ndarray | None]]

log = logging.getLogger("modelloop.serving")
ONNX_ATOL = 1e-4
_CHECK_ROWS = 256


def onnx_path(ws: Workspace, name: str, version: int) -> Path:
    """Where serving caches the ONNX file of a model version."""
    return ws.models_dir / f"{name}-v{version}.onnx"


class Runtime:
    """One loaded model version. ``predict`` is thread-safe (ORT sessions are) and never mutates."""

    def __init__(self, row: dict[str, Any], *, session: Any = None, native: Any = None,
                 reason: str | None = None, check: dict[str, Any] | None = None,
                 plan: dict[str, Any] | None = None, table: Sequence[str] = (),
                 scorer: Scorer | None = None, variant: str | None = None,
                 extra: dict[str, Any] | None = None,
                 by_key: Callable[[Runtime, str | None], Runtime] | None = None):
        """``scorer``: a family's way from validated records to scores (and which texts were cut), e.g.
        the tabular family's ONNX feed and ``session``, or the text family's tokenizer and network;
        without one the ``native`` model is scored through the head; ``extra``: what the family adds
        to ``GET /v1/model``; ``by_key``: a family whose answers depend on the request's API key (a
        generative model's prefix cache salt): ``(runtime, key) -> the runtime answering that key``
        (:meth:`for_key`)."""
        from ..families.heads import head_for

        info = row.get("info") or {}
        self.name: str = row["name"]
        self.version: int = int(row["version"])
        self.row = row
        self.schema = Schema.from_dict(row["input_schema"])
        self.head = head_for({**info, "task": info.get("task") or getattr(native, "task", None)})
        self.task: str = self.head.kind
        self.classes: list[Any] | None = self.head.classes
        self.threshold: float | None = self.head.threshold
        self.session, self.native, self.reason, self.check = session, native, reason, check
        self.variant = variant or ("onnx" if session is not None else "native")
        # a model trained on cleaned data: clients send the raw columns, the plan makes the rest
        self.plan = CleaningPlan.from_dict(plan) if plan else None
        self.request_schema = request_schema(self.schema, self.plan)
        self.validator = RequestValidator(self.request_schema, title=f"{self.name}_v{self.version}_record",
                                          table=table)
        self.loaded_at = time.time()
        self.text_session: Any = None  # a text model's ONNX Runtime session (the text family sets it)
        self._scorer = scorer
        self._extra = dict(extra or {})
        self._by_key = by_key
        # which requests this runtime's answers may draw on each other's for (a generative model's prefix
        # cache salt; :meth:`keyed`): "" for every request, else the salt of one API key
        self.cache_salt = ""

    def with_scorer(self, make: Callable[[Runtime], Scorer]) -> Runtime:
        """This runtime scoring through ``make(self)``: a family's scorer built from the runtime's
        schema, head and cleaning plan (the tabular family's ONNX feed)."""
        self._scorer = make(self)
        return self

    def for_key(self, api_key: str | None) -> Runtime:
        """The runtime that answers a request made with ``api_key`` (None: sent without one, or no keys
        configured): this one, unless the family's answers depend on the key (``by_key``: a generative
        model's prefix cache, salted per key), then one runtime per key (:meth:`keyed`), so that the
        micro-batcher, which batches only requests of one runtime, never mixes keys in a batch."""
        return self if self._by_key is None else self._by_key(self, api_key)

    def keyed(self, salt: str, scorer: Scorer) -> Runtime:
        """A copy of this runtime (same model, schema and head) scoring through ``scorer``, its
        ``cache_salt`` ``salt``: what a family's ``by_key`` returns for one key."""
        view = copy.copy(self)
        view._scorer, view.cache_salt = scorer, salt
        return view

    # ---- inference ---------------------------------------------------------------------------
    def score_records(self, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores of validated records (the head's shape: ``(n, K)`` probabilities or ``(n,)`` values)
        and, for a model that reads text, which texts were cut to its ``max_length`` (else None)."""
        if self._scorer is not None:
            return self._scorer(records)
        return self.scores(records), None

    def scores(self, records: list[dict[str, Any]]) -> np.ndarray:
        """(n, K) probabilities in ``classes`` order, or (n,) values for regression."""
        if self._scorer is not None:
            return self._scorer(records)[0]
        frame = pd.DataFrame.from_records(records, columns=self.validator.features)
        return self.head.shape_scores(np.asarray(self.head.native_scores(self.native, frame), dtype=np.float64),
                                      len(records))

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One output per record, shaped by the model's head: ``{"label", "probabilities"}`` or
        ``{"label", "value"}`` (regression). A text model's output also says ``"truncated": true`` when
        its text was cut to the model's ``max_length`` (counted in ``modelloop_texts_truncated_total``)."""
        scores, cut = self.score_records(records)
        out = self.head.record_outputs(scores, records)
        if cut is not None:
            for i in np.flatnonzero(cut).tolist():
                out[i]["truncated"] = True
        return out

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` shows."""
        return {"name": self.name, "version": self.version, "task": self.task,
                "family": self.row.get("family"), "head": self.head.name,
                "variant": self.variant, "reason": self.reason, "onnx_check": self.check,
                "classes": self.classes, "threshold": self.threshold,
                "input_schema": self.request_schema.to_dict(), "features": self.validator.features,
                "cleaning_plan": self.plan.to_dict() if self.plan is not None else None,
                "metrics": self.row.get("metrics") or {}, "formats": self.row.get("formats") or {},
                "loaded_at": self.loaded_at, **self._extra}


def request_schema(schema: Schema, plan: CleaningPlan | None) -> Schema:
    """What a client sends: the model's input schema without the columns its cleaning plan adds."""
    if plan is None:
        return schema
    added = set(plan.added_columns())
    columns = {c: k for c, k in schema.columns.items() if c not in added}
    return Schema(columns=columns, target=schema.target, id=schema.id, text=schema.text, time=schema.time,
                  dtypes={c: t for c, t in schema.dtypes.items() if c not in added},
                  datetime_formats={c: f for c, f in schema.datetime_formats.items() if c in columns})


# ---- loading -------------------------------------------------------------------------------------
def load_runtime(ws: Workspace, ref: str | None = None, *, atol: float = ONNX_ATOL,
                 onnx: bool = True, use_cache: bool = True, text_threads: int | None = None,
                 serve: ServeConfig | None = None) -> Runtime:
    """Load a model version (production by default) as ONNX when it converts and checks, else native.

    ``use_cache=False`` converts again even when an ONNX file is recorded for the version.
    ``text_threads``: intra-op threads of a text model's session (default: the CPUs this process may
    use); a tabular session always runs on one. ``serve``: the server's settings (``create_app``'s
    ``config``), default the project's ``serve:`` section; a family reads them as
    ``serve_config(ws.config)`` (a generative model's prefix cache), so it is handed a workspace whose
    config carries them.
    """
    from ..families import family_of
    from ..registry import resolve_model

    row = resolve_model(ws, ref)
    plan = _cleaning_plan(ws, row)
    if not onnx:
        return Runtime(row, native=native_model(ws, row), reason="ONNX disabled by the caller", plan=plan)
    return family_of(row).runtime(_serving(ws, serve), row, plan=plan, threads=text_threads or available_cpus(),
                                  atol=atol, use_cache=use_cache)


def _serving(ws: Workspace, serve: ServeConfig | None) -> Workspace:
    """``ws`` with ``serve`` as its config's ``serve:`` section (``ws`` itself when it already is)."""
    if serve is None or serve_config(ws.config) is serve:
        return ws
    view = copy.copy(ws)  # the same paths and catalog (opened by resolve_model: a cached attribute, shared)
    view.config = ws.config.model_copy(update={"serve": serve})
    return view


def _cleaning_plan(ws: Workspace, row: dict[str, Any]) -> dict[str, Any] | None:
    """The cleaning plan replayed on requests: the one of the data the model was trained on."""
    from ..data.stages import cleaning_plan

    try:
        return cleaning_plan(ws, ws.catalog.get_dataset(row["dataset_id"]))
    except Exception as exc:  # a deleted dataset: the model object still carries its plan
        log.info("model %s:%s: dataset manifest unavailable (%s); using the model's own plan",
                 row["name"], row["version"], exc)
        return getattr(native_model(ws, row), "cleaning_plan_", None)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as containers and taskset set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def text_threads(config: Any) -> int:
    """A served text model's session threads: ``serve.text_threads``, else this process's share of
    the CPUs when ``serve.workers`` processes each load the model."""
    return int(config.text_threads or max(1, available_cpus() // config.workers))


def table_columns(ws: Workspace, row: dict[str, Any]) -> list[str]:
    """The columns of the table a model was trained on. A text model's schema names only its text
    and target, yet clients send the table's rows (the examples' ``lang`` beside the text): the
    server takes the other columns and keeps them in the log, as it does for a tabular model."""
    try:
        return list(ws.catalog.get_dataset(row["dataset_id"])["schema"]["columns"])
    except Exception as exc:  # a deleted dataset: the text column alone
        log.info("model %s:%s: dataset schema unavailable (%s)", row["name"], row["version"], exc)
        return []


def native_model(ws: Workspace, row: dict[str, Any]) -> Any:
    from ..registry import load_model

    return load_model(ws, row)


def served_diff(runtime: Runtime, native: Any, sample: pd.DataFrame) -> float:
    """Max |served - native| with the records as a client would send them (JSON scalars)."""
    records = to_records(sample, runtime.request_schema)
    got = runtime.scores(records)
    want = runtime.head.native_scores(native, sample)
    return float(np.max(np.abs(got - np.asarray(want, dtype=np.float64)))) if len(sample) else 0.0


def to_records(frame: pd.DataFrame, schema: Schema) -> list[dict[str, Any]]:
    """Rows as validated JSON records: numbers, bools, strings and None for missing."""
    from .validation import _boolean

    records: list[dict[str, Any]] = []
    for row in frame.to_dict(orient="records"):
        rec: dict[str, Any] = {}
        for c, v in row.items():
            kind = schema.columns.get(c)
            if v is None or (not isinstance(v, str) and pd.isna(v)):
                rec[c] = None
            elif kind == "boolean":
                try:
                    rec[c] = _boolean(v.item() if isinstance(v, np.generic) else v)
                except ValueError:  # a value the API would refuse: send it as missing
                    rec[c] = None
            elif kind == "datetime":  # read as training read it (the column's format), as a client sends it
                t = read_datetime(str(v), schema.datetime_format(c))
                rec[c] = None if t is None else t.isoformat()
            elif kind == "numeric":
                rec[c] = float(v)
            else:
                rec[c] = v.item() if isinstance(v, np.generic) else v
        records.append(rec)
    return records

