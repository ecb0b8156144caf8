"""The tabular family's served object: its ONNX graph fed straight from JSON records.

Loading a tabular model version (:func:`tabular_runtime`, the family's ``runtime``):

1. The ONNX file cached next to the model (``formats["onnx"]``, by default
   ``.modelloop/models/{name}-v{version}.onnx``) is used when it exists and has the graph inputs
   serving feeds. Otherwise the native model is converted with
   :func:`modelloop.families.tabular.export.to_onnx`, checked, written atomically and recorded in the
   catalog (``formats["onnx"]`` and ``info["onnx_check"]``).
2. The check compares, on up to 256 rows of the model's dataset plus synthetic edge rows (all
   missing, unseen categories), the probabilities (or values) that *this runtime* serves against
   the native model's: ``check_onnx`` on the graph, then the served path end to end. Tolerance:
   ``ONNX_ATOL`` = 1e-4 (absolute, on probabilities / regression values).
3. A model that cannot be converted or fails the check is served natively; the reason is logged
   and shown by ``GET /v1/model`` (``variant: native``, ``reason``).

Per request the runtime's scorer (:func:`onnx_scorer`) turns validated JSON records into the graph's
inputs. For speed it builds the feed directly from the records (about 20 µs for one record, against
~1.8 ms through pandas) with the same mapping as ``prepare_features`` + ``onnx_inputs``:
numeric/boolean -> float32 with NaN for missing, categoricals -> their text with "" for missing, ISO
date-times -> year, month, day, day of week, hour and epoch seconds (aware times in UTC).
``tests/serving/test_runtime.py`` holds the two paths equal. Unlike the pandas path, the result of a
record never depends on the other records of its batch (pandas infers one date format and one dtype per
column). Then the head applies the binary threshold to ``p(class 1)`` and maps class indices back to
the original labels.

The stored graph keeps one ``[N, 1]`` input per prepared column (the export contract). The session
the server opens is rewritten so that the float inputs arrive as one ``[N, k]`` tensor
(``PACKED_INPUT``) split inside the graph: ONNX Runtime pays per input fed, and the fraud example's
17 float inputs cost ~18 µs of a ~90 µs batch-1 run (``benchmarks/onnx_feed.py`` times both). Where
the graph itself concatenates exactly those columns in that order (skl2onnx's tree preprocessing does),
that ``Concat`` reads the packed tensor instead, and the ``Split`` goes when no node reads a column alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.dates import read_datetime
from ...data.schema import Schema
from ...serving.runtime import ONNX_ATOL, Runtime, Scorer, native_model, onnx_path, served_diff
from ...workspace import Workspace
from .columns import DATETIME_PARTS, INPUT_COLUMNS_KEY, prepared_columns

__all__ = ["PACKED_INPUT", "check_frame", "input_map", "onnx_runtime", "onnx_scorer", "packed_inputs", "serving_session",
           "synthetic_frame", "tabular_runtime", "variant_runtime"]

log = logging.getLogger("modelloop.serving")
_CHECK_ROWS = 256


def onnx_scorer(session: Any, schema: Schema, head: Any, plan: Any = None) -> Scorer:
    """The Runtime's scorer over a tabular graph: records (cleaned by ``plan``, a CleaningPlan) -> the
    graph's feed -> the head's scores."""
    feed = _FeedPlan(schema, input_map(session, schema), packed=packed_inputs(session)).feed
    run, output, shape = session.run, [head.onnx_output], head.shape_scores

    def score(records: list[dict[str, Any]]) -> tuple[np.ndarray, None]:
        if plan is not None:
            records = plan.apply_records(records)
        return shape(np.asarray(run(output, feed(records))[0], dtype=np.float64), len(records)), None

    return score


def onnx_runtime(row: dict[str, Any], session: Any, *, plan: dict[str, Any] | None = None, **kw: Any) -> Runtime:
    """A Runtime serving ``session`` (a graph of ``row``'s model, from :func:`serving_session`)."""
    return Runtime(row, session=session, plan=plan, **kw).with_scorer(
        lambda rt: onnx_scorer(session, rt.schema, rt.head, rt.plan))


def variant_runtime(model: Any, onnx_bytes: bytes | None) -> Runtime | None:
    """The serving runtime over a tabular model (a variant ``optimize`` times): its graph when given,
    else the native model; None for a model without an input schema."""
    if getattr(model, "schema", None) is None:
        return None
    info = {"task": model.task, "classes": model.classes_, "threshold": model.threshold_}
    row = {"name": "variant", "version": 0, "input_schema": model.schema.to_dict(), "info": info}
    plan = getattr(model, "cleaning_plan_", None)
    return (onnx_runtime(row, serving_session(onnx_bytes), plan=plan) if onnx_bytes is not None
            else Runtime(row, native=model, plan=plan))


def tabular_runtime(ws: Workspace, row: dict[str, Any], *, plan: dict[str, Any] | None, atol: float = ONNX_ATOL,
                    use_cache: bool = True) -> Runtime:
    """A tabular model: its ONNX graph when it converts and checks (one intra-op thread per session),
    else the native model, with the reason."""
    try:
        session, check = _onnx_session(ws, row, atol, use_cache, plan)
        return onnx_runtime(ws.catalog.get_model(row["name"], row["version"]), session, check=check, plan=plan)
    except Exception as exc:  # any failure to convert, load or check: serve natively, say why
        reason = f"ONNX unavailable ({type(exc).__name__}: {exc}); serving the native model"
        log.warning("model %s:%s: %s", row["name"], row["version"], reason)
        return Runtime(row, native=native_model(ws, row), reason=reason, plan=plan)


_PARTS = ("year", "month", "day", "dayofweek", "hour", "epoch")
_F32_MAX = float(np.finfo(np.float32).max)


class _FeedPlan:
    """Raw JSON records -> the ONNX feed (the ``onnx_inputs`` contract) without pandas.

    ``names`` maps prepared columns to the graph's input names where the converter renamed them
    (``"mean radius"`` -> ``mean_radius``); without it the feed uses the prepared names."""

    def __init__(self, schema: Schema, names: dict[str, str] | None = None, packed: list[str] | None = None):
        feats = schema.features()
        self.floats = [c for c in feats if schema.columns[c] in ("numeric", "boolean")]
        self.strings = [c for c in feats if schema.columns[c] == "categorical"]
        self.datetimes = [c for c in feats if schema.columns[c] == "datetime"]
        if DATETIME_PARTS != _PARTS:
            raise RuntimeError(f"models.tabular.DATETIME_PARTS changed to {DATETIME_PARTS}; "
                               "update serving.runtime._datetime_parts to match")
        numeric, categorical = prepared_columns(schema)
        self.inputs = [*numeric, *categorical]
        name = (names or {}).get
        self._get_floats = itemgetter(*self.floats) if self.floats else None
        self._float_keys = [name(c, c) for c in self.floats]
        self._string_keys = [(c, name(c, c)) for c in self.strings]
        self._part_names = {c: [name(f"{c}__{part}", f"{c}__{part}") for part in _PARTS] for c in self.datetimes}
        # a packed graph: every float column in one [n, k] tensor, in the graph's order of ``packed``
        self._packed: np.ndarray | None = None
        self._reorder = False
        if packed is not None:
            built = self._float_keys + [n for names_ in self._part_names.values() for n in names_]
            self._packed = np.array([built.index(n) for n in packed], dtype=np.intp)
            self._reorder = bool(np.any(self._packed != np.arange(len(built))))

    def feed(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        # This runs in the inference thread holding the GIL, which the event loop then waits for:
        # one C-level itemgetter per record and one array per column kind, not one per column.
        feed: dict[str, np.ndarray] = {}
        n = len(records)
        if self._packed is not None:
            self._feed_packed(records, feed)
        elif self._get_floats is not None:
            # one [k, n, 1] table for every numeric column (its rows are contiguous [n, 1] inputs);
            # the graph takes float32: values beyond its range saturate instead of becoming inf
            raw = np.array([self._get_floats(r) for r in records], dtype=np.float64).reshape(n, -1)
            np.minimum(raw, _F32_MAX, out=raw)
            np.maximum(raw, -_F32_MAX, out=raw)
            feed.update(zip(self._float_keys, np.ascontiguousarray(raw.T, dtype=np.float32)[:, :, None],
                            strict=True))
        for c, key in self._string_keys:
            feed[key] = np.array(["" if (v := r[c]) is None else str(v) for r in records],
                               dtype=object).reshape(-1, 1)
        for c, names in self._part_names.items() if self._packed is None else ():
            parts = np.array([_datetime_parts(r[c]) for r in records], dtype=np.float64).reshape(n, -1)
            feed.update(zip(names, np.ascontiguousarray(parts.T, dtype=np.float32)[:, :, None], strict=True))
        return feed

    def _feed_packed(self, records: list[dict[str, Any]], feed: dict[str, np.ndarray]) -> None:
        get, one, dts = self._get_floats, len(self.floats) == 1, self.datetimes
        rows = []
        for r in records:  # one tuple a record: the float columns, then each datetime's parts
            row = () if get is None else ((get(r),) if one else get(r))
            for c in dts:
                row += _datetime_parts(r[c])
            rows.append(row)
        raw = np.array(rows, dtype=np.float64).reshape(len(records), -1)
        if self._reorder and self._packed is not None:
            raw = raw.take(self._packed, axis=1)
        np.minimum(raw, _F32_MAX, out=raw)
        np.maximum(raw, -_F32_MAX, out=raw)
        feed[PACKED_INPUT] = raw.astype(np.float32)


_NO_DATE = (np.nan,) * 6
_EPOCH = dt.datetime(1970, 1, 1)


def _datetime_parts(value: str | None) -> tuple[float, ...]:
    """``prepare_features``' datetime parts of one string: aware times in UTC, naive ones as they are."""
    if value is None:
        return _NO_DATE
    try:  # the validator's canonical ISO 8601
        t = dt.datetime.fromisoformat(value)
    except ValueError:  # not from the validator: read as training read it
        read = read_datetime(value)
        if read is None:
            return _NO_DATE
        t = read
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (t.year, t.month, t.day, t.weekday(), t.hour, (t - _EPOCH).total_seconds())


PACKED_INPUT = "modelloop_floats"
_PACKED_KEY = "modelloop.packed_inputs"


def serving_session(source: str | bytes, pack: bool = True) -> Any:
    """An ONNX Runtime session for serving a tabular graph, its float inputs packed (``_pack``;
    ``pack=False`` only to measure what packing saves)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_model_from_string(source) if isinstance(source, bytes) else onnx.load_model(source)
    if pack:
        _pack(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1       # requests are batched; more threads fight the HTTP workers
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _pack(model: Any) -> None:
    """Rewrite ``model`` in place: its ``[N, 1]`` float inputs become one ``[N, k]`` input
    (``PACKED_INPUT``) that a ``Split`` node hands out under the old names, which the metadata entry
    ``modelloop.packed_inputs`` lists in column order. Left alone: fewer than two such inputs, or an
    opset before 13 (``Split`` took its sizes as an attribute then)."""
    import json

    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    initialized = {i.name for i in graph.initializer}

    def column(i: Any) -> bool:
        t = i.type.tensor_type
        return (i.name not in initialized and t.elem_type == TensorProto.FLOAT and len(t.shape.dim) == 2
                and t.shape.dim[1].dim_value == 1)

    floats = [i for i in graph.input if column(i)]
    if len(floats) < 2 or opset < 13 or any(i.name == PACKED_INPUT for i in graph.input):
        return
    names = [i.name for i in floats]
    rest = [i for i in graph.input if not column(i)]
    sizes = f"{PACKED_INPUT}_sizes"
    graph.initializer.append(numpy_helper.from_array(np.ones(len(names), dtype=np.int64), sizes))
    graph.node.insert(0, helper.make_node("Split", [PACKED_INPUT, sizes], names, axis=1,
                                          name="modelloop_unpack"))
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(PACKED_INPUT, TensorProto.FLOAT, ["N", len(names)]), *rest])
    _skip_repacking(graph, names)
    entry = model.metadata_props.add()
    entry.key, entry.value = _PACKED_KEY, json.dumps(names)


def _skip_repacking(graph: Any, names: list[str]) -> None:
    """Where the graph concatenates exactly the packed columns in packed order (skl2onnx's first step
    over the numeric columns), its readers take ``PACKED_INPUT`` itself: the ``Concat`` goes, and the
    ``Split`` too when nothing else reads a column (fraud example, compacted graph: ~5 µs of a ~75 µs
    batch-1 run)."""
    from onnx.helper import get_attribute_value

    outputs = {o.name for o in graph.output}
    same = [n for n in graph.node if n.op_type == "Concat" and list(n.input) == names and n.output[0] not in outputs
            and get_attribute_value(next(a for a in n.attribute if a.name == "axis")) in (1, -1)]
    if not same:
        return
    gone = {n.output[0] for n in same}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in gone:
                node.input[i] = PACKED_INPUT
    read = {i for n in graph.node if n.output[0] not in gone for i in n.input}
    for i in reversed(range(len(graph.node))):
        node = graph.node[i]
        if node.output[0] in gone or (node.name == "modelloop_unpack" and not read.intersection(node.output)):
            del graph.node[i]


def packed_inputs(session: Any) -> list[str] | None:
    """The graph input names packed into ``PACKED_INPUT``, in column order; None for a plain graph."""
    import json

    recorded = session.get_modelmeta().custom_metadata_map.get(_PACKED_KEY)
    return json.loads(recorded) if recorded else None


def _onnx_session(ws: Workspace, row: dict[str, Any], atol: float, use_cache: bool = True,
                  plan: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """A checked session: the cached file when it fits the feed contract, else a fresh conversion."""
    schema = Schema.from_dict(row["input_schema"])
    cached = (row.get("formats") or {}).get("onnx") if use_cache else None
    if cached and Path(cached).is_file():
        session = serving_session(str(cached))
        if _fits(session, schema):
            check = (row.get("info") or {}).get("onnx_check") or {"cached": True}
            return session, {**check, "path": str(cached)}
        log.warning("model %s:%s: cached ONNX %s does not have the expected inputs; converting again",
                    row["name"], row["version"], cached)
    return _convert(ws, row, schema, atol, plan)


def input_map(session: Any, schema: Schema) -> dict[str, str] | None:
    """Prepared column -> graph input name for a session over ``schema``'s model; None when the
    graph's inputs are not the feed contract's. ``to_onnx`` records the names it gave in the model's
    metadata; a graph without that entry must use the prepared names as they are."""
    import json

    graph = sorted(i.name for i in session.get_inputs())
    packed = packed_inputs(session)
    if packed is not None:  # the names fed before ``_pack`` put them into one tensor
        graph = sorted([n for n in graph if n != PACKED_INPUT] + packed)
    recorded = session.get_modelmeta().custom_metadata_map.get(INPUT_COLUMNS_KEY)
    names = {col: name for name, col in json.loads(recorded).items()} if recorded else {n: n for n in graph}
    if sorted(names) != sorted(_FeedPlan(schema).inputs) or sorted(names.values()) != graph:
        return None
    return names


def _fits(session: Any, schema: Schema) -> bool:
    return input_map(session, schema) is not None


def _convert(ws: Workspace, row: dict[str, Any], schema: Schema, atol: float,
             plan: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    from .export import check_onnx, to_onnx  # looked up at each call (a test replaces the converter)

    native = native_model(ws, row)
    onnx_model = to_onnx(native)
    raw = onnx_model.SerializeToString()
    served = onnx_runtime(row, serving_session(raw), plan=plan)
    sample = check_frame(ws, row, served.request_schema)
    graph_diff = check_onnx(native, onnx_model, sample, atol=atol)
    session = served.session
    end_to_end = served_diff(served, native, sample)
    if not end_to_end <= atol:
        raise ValueError(f"served ONNX output differs from the native model by {end_to_end:.3g} "
                         f"(> atol {atol:g})")
    path = onnx_path(ws, row["name"], row["version"])
    _write_atomic(path, raw)
    check = {"max_abs_diff": max(graph_diff, end_to_end), "atol": atol, "rows": len(sample),
             "path": str(path)}
    fresh = ws.catalog.get_model(row["name"], row["version"])  # merge with concurrent writers
    ws.catalog.update_model(row["name"], row["version"],
                            formats={**fresh["formats"], "onnx": str(path)},
                            info={**fresh["info"], "onnx_check": check})
    log.info("model %s:%s converted to ONNX (%s), max |diff| %.2g on %d rows",
             row["name"], row["version"], path, check["max_abs_diff"], len(sample))
    return session, check


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)



# ---- check rows ----------------------------------------------------------------------------------
def check_frame(ws: Workspace, row: dict[str, Any], schema: Schema, n: int = _CHECK_ROWS) -> pd.DataFrame:
    """Up to ``n`` rows of the model's dataset (synthetic rows when unreadable) plus edge rows."""
    cols = [c for c in schema.features()]
    frame: pd.DataFrame | None = None
    try:
        from ...data.snapshot import read_snapshot

        data = read_snapshot(ws.catalog.get_dataset(row["dataset_id"])["path"])
        frame = data[cols].sample(min(n, len(data)), random_state=0).reset_index(drop=True)
    except Exception as exc:  # a deleted snapshot must not stop serving
        log.info("model %s:%s: dataset rows unavailable (%s); checking on synthetic rows",
                 row["name"], row["version"], exc)
    synthetic = synthetic_frame(schema, 32 if frame is None else 0)
    edge = pd.DataFrame([{c: None for c in cols},
                         {c: ("__unseen__" if schema.columns[c] == "categorical" else None) for c in cols}])
    parts = [p for p in (frame, synthetic, edge) if p is not None and len(p)]
    return pd.concat([p.astype(object) for p in parts], ignore_index=True)


def synthetic_frame(schema: Schema, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` plausible rows of the schema's features (numbers, two categories, booleans, dates)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for c in schema.features():
        kind = schema.columns[c]
        if kind == "categorical":
            out[c] = rng.choice(["a", "b"], n).tolist()
        elif kind == "boolean":
            out[c] = rng.choice([True, False], n).tolist()
        elif kind == "datetime":
            out[c] = (pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), "s")
                      ).astype(str).tolist()
        else:
            out[c] = rng.normal(0, 10, n).round(3).tolist()
    return pd.DataFrame(out)
