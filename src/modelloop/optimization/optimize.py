"""The optimize stage: build variants of a model, verify and benchmark each, register the best.

The baseline is ``native``: the model as trained, scored through its head on a DataFrame (how a user
would otherwise serve it). Every other variant is built by the model's family (``Family.variant_maker``:
the tabular family's ONNX, pruned and distilled models in ``families/tabular/variants.py``, the text
family's ONNX fp32/int8 graphs and smaller students in ``families/text/variants.py``); one that does
not apply raises :class:`VariantSkipped` with the reason the table shows. A variant the family serves
from JSON records carries its serving :class:`~modelloop.serving.runtime.Runtime` (``runtime``); the
registered version carries its ONNX file in ``formats`` (``onnx`` or ``onnx_int8``).

Every variant is scored on the frozen test set (metric, agreement with the original) and timed the
same way, as the server runs it (JSON records through the serving runtime, batch 1 and 64; batch 1
over changing records, :func:`cycle_records`); one outside ``optimize.max_metric_drop`` is reported
and never registered.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import pickle
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import StateError
from ..evaluation.evaluate import evaluate_model, model_inputs
from ..evaluation.metrics import direction
from ..workspace import Workspace

__all__ = ["CYCLED_RECORDS", "TABULAR_VARIANTS", "VARIANTS", "VariantPredictor", "VariantResult", "VariantSkipped",
           "cpu_ms", "cycle_records", "native_predictor", "optimize", "served_call"]

# every variant ``optimize.variants: auto`` tries; a family skips, with the reason, those that do not
# apply to its models (its ``variants`` declare the ones that do)
VARIANTS = ("onnx", "onnx_int8_dynamic", "onnx_int8_static", "pruned", "distilled")
TABULAR_VARIANTS = VARIANTS  # the name earlier releases exported


@dataclass
class VariantResult:
    name: str
    size_bytes: int | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    throughput_rps: float | None = None
    memory_mb: float | None = None
    metric: float | None = None
    metric_delta: float | None = None
    agreement: float | None = None
    metric_delta_ci: list[float] | None = None  # 95 % paired-bootstrap interval of metric_delta
    kept: bool = False
    reason: str = ""


class VariantPredictor:
    """One variant behind one call: ``proba(frame) -> (n, K)`` (or predictions for regression)."""

    def __init__(self, name: str, fn: Callable[[pd.DataFrame], np.ndarray], size: int, model: Any,
                 onnx_bytes: bytes | None = None, onnx_format: str = "onnx", serves_records: bool = True,
                 runtime: Any = None):
        self.name, self.fn, self.size, self.model, self.onnx_bytes = name, fn, size, model, onnx_bytes
        self.onnx_format = onnx_format  # the ``formats`` key the ONNX file is registered under
        # timed through the serving Runtime (JSON records in); False: the variant's own ``fn``
        self.serves_records = serves_records
        # the Runtime that serves it, as its family builds it (None: the native model's, when it has an
        # input schema and no graph; else its ``fn``)
        self.runtime = runtime


def native_predictor(model: Any, head: Any) -> VariantPredictor:
    """The model as trained, scored by its head (``native_scores``) on a DataFrame: the baseline."""
    return VariantPredictor("native", lambda frame: head.native_scores(model, frame), len(pickle.dumps(model)),
                            model)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _runtime(pred: VariantPredictor) -> Any:
    """The serving runtime over a variant served from records (None for one timed by its own ``fn``)."""
    from ..serving.runtime import Runtime

    model = pred.model
    if pred.runtime is not None or not pred.serves_records or pred.onnx_bytes is not None:
        return pred.runtime
    if getattr(model, "schema", None) is None or getattr(model, "task", None) is None:
        return None
    if getattr(model, "serves_records", True) is False:  # a model the generic table runtime cannot serve
        return None                                      # (generated text): timed by its own ``fn``
    info = {"task": model.task, "classes": getattr(model, "classes_", None),
            "threshold": getattr(model, "threshold_", None)}
    row = {"name": "variant", "version": 0, "input_schema": model.schema.to_dict(), "info": info}
    return Runtime(row, native=model, plan=getattr(model, "cleaning_plan_", None))


def served_call(pred: VariantPredictor) -> Callable[[pd.DataFrame], Callable[[], Any]] | None:
    """``frame -> call`` running a variant as ``modelloop serve`` does (JSON records in, the serving
    runtime over its graph or, without one, the native model), so the times ``optimize`` compares are
    the ones a deployed model pays, not those of a DataFrame round trip; None: timed by its ``fn``."""
    from ..serving.runtime import to_records

    runtime = _runtime(pred)
    if runtime is None:
        return None

    def prepare(frame: pd.DataFrame) -> Callable[[], Any]:
        records = to_records(frame, runtime.request_schema)
        return lambda: runtime.predict(records)

    return prepare


def cpu_ms(call: Callable[[], Any], seconds: float = 1.0, chunk: int = 20) -> float:
    """CPU milliseconds of one ``call`` on an uncontended core: the 10th percentile of chunks of
    ``chunk`` calls over about ``seconds`` (at least 5 chunks), on this thread (ONNX Runtime runs on
    the caller's thread with its one intra-op thread). On a shared machine another tenant's memory
    traffic slows tree walks up to 3x for stretches of a second; the median of a chunk drifts with
    it, the low percentile over a second stays within a few percent. A batch-1 ``call`` should change
    records (:func:`cycle_records`): one record repeated is timed at its best case."""
    for _ in range(5):
        call()
    per_call: list[float] = []
    end = time.perf_counter() + seconds
    while len(per_call) < 5 or time.perf_counter() < end:
        t = time.thread_time()
        for _ in range(chunk):
            call()
        per_call.append((time.thread_time() - t) * 1000 / chunk)
    return float(np.percentile(per_call, 10))


CYCLED_RECORDS = 64  # distinct records a batch-1 timing goes round (cycle_records)


def cycle_records(prepare: Callable[[pd.DataFrame], Callable[[], Any]], frame: pd.DataFrame,
                  records: int = CYCLED_RECORDS) -> Callable[[], Any]:
    """A call that runs one record of ``frame`` a call (batch 1), round robin over its first ``records``
    rows (all of them when it has fewer), each prepared once by ``prepare`` (``frame -> call``).

    Why: a record repeated call after call is not what a server sees. The CPU's branch predictor learns
    that record's path through the trees (the fraud example's 15 bagged boosters: 47 us a call on one
    record, 78-100 us on changing ones; a 500-tree LightGBM: 40 against 63 us, benchmarks/RESULTS.md):
    a figure timed that way is the best case, and under a limit such as ``train.max_latency_ms`` it
    admits a model that serves slower. The batch-1 timings (:func:`cpu_ms` through ``served_latency``,
    the optimize stage's p50/p99) go through this one helper."""
    calls = [prepare(frame.iloc[i:i + 1]) for i in range(max(1, min(records, len(frame))))]
    turn = itertools.cycle(calls)
    return lambda: next(turn)()


def _latencies(prepare: Callable[[pd.DataFrame], Callable[[], Any]], frame: pd.DataFrame,
               repeats: int) -> tuple[float, float]:
    """(p50, p99) wall milliseconds of one record, at most ``repeats`` runs or 5 s, over changing
    records (:func:`cycle_records`)."""
    one = cycle_records(prepare, frame)
    for _ in range(5):
        one()
    lat = []
    deadline = time.perf_counter() + 5.0
    for _ in range(repeats):
        t = time.perf_counter()
        one()
        lat.append((time.perf_counter() - t) * 1000)
        if time.perf_counter() > deadline:
            break
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def _time(pred: VariantPredictor, frame: pd.DataFrame, repeats: int = 200) -> tuple[float, float, float]:
    served = served_call(pred)
    prepare = served or (lambda f: (lambda: pred.fn(f)))
    p50, p99 = _latencies(prepare, frame, repeats)
    batch = prepare(frame.iloc[:64] if len(frame) >= 64 else pd.concat([frame] * (64 // len(frame) + 1)).iloc[:64])
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < 1.0 or n < 3:
        batch()
        n += 1
    thr = 64 * n / (time.perf_counter() - t)
    return p50, p99, float(thr)


def _evaluate_variant(pred: VariantPredictor, base: VariantPredictor | None, base_metric: float | None, test: pd.DataFrame,
                      target: str, head: Any, metric: str, max_drop: float) -> VariantResult:
    X = model_inputs(pred.model, test, target)  # (a chat model's target, its messages, is its input too)
    rss = _rss_mb()
    p50, p99, thr = _time(pred, X)
    res = VariantResult(pred.name, size_bytes=pred.size, latency_p50_ms=round(p50, 4), latency_p99_ms=round(p99, 4),
                        throughput_rps=round(thr, 1), memory_mb=round(max(_rss_mb() - rss, 0.0), 2))

    class _Wrapped:  # evaluate_model wants predict/predict_proba; route them through the variant
        classes_ = getattr(pred.model, "classes_", None)
        threshold_ = getattr(pred.model, "threshold_", None)
        schema = getattr(pred.model, "schema", None)  # its input columns (model_inputs)

        def predict_proba(self, frame):
            return pred.fn(frame)

        def predict(self, frame):
            return pred.fn(frame)

    res.metric = evaluate_model(_Wrapped(), test, target=target, task=head.kind)["metrics"][metric]
    if base is not None and base_metric is not None:
        a, b = pred.fn(X), base.fn(X)
        thr_a, thr_b = _Wrapped.threshold_, getattr(base.model, "threshold_", None)
        y = head.truth(test[target], target)
        res.agreement = head.agreement(a, b, (thr_a, thr_b))  # the answers each serves, at its own threshold
        sign = 1.0 if direction(metric) == "maximize" else -1.0
        res.metric_delta = round(sign * (res.metric - base_metric), 6)
        res.metric_delta_ci = _delta_interval(metric, y, (a, thr_a), (b, thr_b), head)
        res.kept = res.metric_delta >= -max_drop
        lo, hi = res.metric_delta_ci
        res.reason = "within the quality budget" if res.kept else \
            f"{metric} falls {-res.metric_delta:.4f} (> max_metric_drop {max_drop}; 95% interval of the change " \
            f"{lo:+.4f} to {hi:+.4f})"
    else:
        res.metric_delta, res.agreement, res.kept, res.reason = 0.0, 1.0, True, "the unoptimized model"
    return res


def _delta_interval(metric: str, y: np.ndarray, variant: tuple[np.ndarray, float | None],
                    base: tuple[np.ndarray, float | None], head: Any) -> list[float]:
    """The 95 % paired-bootstrap interval of the variant's change against the base on the test rows
    (:func:`..evaluation.metrics.paired_change_interval`), through the head's own figure for a metric
    outside the registry (generated text: chrf)."""
    from ..evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, paired_change_interval

    def by_head(name: str, y_true: Any, output: Any, threshold: float | None = None) -> float:
        return head.evaluate(y_true, output)["metrics"][name]

    known = metric in CLASSIFICATION_METRICS + REGRESSION_METRICS or head is None
    return paired_change_interval(metric, y, variant, base, figure=None if known else by_head)


def _choose(results: list[VariantResult], target: str) -> VariantResult:
    kept = [r for r in results if r.kept and r.latency_p50_ms is not None]
    key = {"latency": lambda r: r.latency_p50_ms, "throughput": lambda r: -r.throughput_rps,
           "size": lambda r: r.size_bytes}[target]
    return min(kept, key=key)


def optimize(ws: Workspace, *, model: str | None = None, variants: list[str] | None = None,
             promote: bool | None = None, by: str = "modelloop optimize") -> dict[str, Any]:
    """Build, verify and benchmark variants; register the best one that keeps quality.

    With ``promote`` (default ``optimize.promote``) the registered variant replaces its parent in
    production, so that what optimize found is what gets served; a parent that is not production is
    left alone (optimizing a candidate must not deploy it), and the answer says why. ``by`` names
    the step in the alias history (``retrain`` when a promoted challenger is optimized at once).
    """
    from ..data.ingest import ensure_split, load_dataset
    from ..families import family_of
    from ..families.heads import head_for
    from ..registry import resolve_model

    cfg = ws.config
    oc = cfg.optimize
    row = resolve_model(ws, model)
    family = family_of(row)
    teacher = family.load(ws, row)
    head = head_for(row["info"])
    drow, df, _ = load_dataset(ws, row["dataset_id"])
    side = ensure_split(ws, drow, df)
    target = cfg.data.target
    test = df[side == "test"].reset_index(drop=True)
    train = df[side == "train"].reset_index(drop=True)
    # auto: every shared name (a family skips, with the reason, those it does not build) and the family's own
    own = [v for v in getattr(family, "variants", ()) if v not in VARIANTS]
    wanted = [*VARIANTS, *own] if (variants or oc.variants) in (None, "auto", ["auto"]) else \
        list(variants or oc.variants)
    # every variant of a model whose family serves it on several threads (a text network) is timed on as
    # many, PyTorch included, so the table shows what serving pays; None: one thread each (tabular)
    threads = family.serve_threads(cfg.serve)
    with tempfile.TemporaryDirectory(prefix="modelloop-optimize-") as scratch, _torch_threads(threads):
        make = family.variant_maker(teacher, train, target=target, seed=cfg.seed, scratch=Path(scratch),
                                    max_drop=oc.max_metric_drop, threads=threads)
        if target is None or target not in df.columns:  # e.g. an anomaly project without labels (a family with
            # nothing to build, a recommender, has refused above)
            missing = "data.target is not set" if target is None else f"data.target '{target}' is not in the data"
            raise StateError(f"modelloop optimize: a variant is kept only when its {cfg.metric} on the test split's "
                             f"labels stays within optimize.max_metric_drop, and this project has no label column "
                             f"({missing}); serve the trained model as it is, or set data.target to a label "
                             "column and run `modelloop run` again")
        base = native_predictor(teacher, head)
        results = [_evaluate_variant(base, None, None, test, target, head, cfg.metric, oc.max_metric_drop)]
        built: dict[str, VariantPredictor] = {"native": base}
        for name in wanted:
            try:
                pred = make(name)
            except VariantSkipped as exc:
                results.append(VariantResult(name, reason=str(exc)))
                continue
            built[name] = pred
            results.append(_evaluate_variant(pred, base, results[0].metric, test, target, head, cfg.metric,
                                             oc.max_metric_drop))
        chosen = _choose(results, oc.target)
        version = row["version"]
        if chosen.name != "native":
            version = _register(ws, row, built[chosen.name], chosen, results, drow)
    out: dict[str, Any] = {"variants": [asdict(r) for r in results], "baseline": "native", "chosen": chosen.name,
           "target": oc.target, "metric": cfg.metric, "parent": {"name": row["name"], "version": row["version"]},
           "model": {"name": row["name"], "version": version}}
    if threads:
        out["threads"] = threads
    out["promoted"], out["promotion"] = _promote(ws, row, version, oc.promote if promote is None else promote, by)
    out["report"] = str(_write_report(ws, out))
    return out


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``threads`` for the block (unchanged when None)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


OPTIMIZED_VARIANT_OF = "optimized variant of v"  # the alias history's reason, read by ``rollback``


def _promote(ws: Workspace, parent: dict, version: int, wanted: bool, by: str) -> tuple[bool, str | None]:
    """(promoted, why) for the registered ``version``; (False, None) when promotion was not asked for."""
    from ..registry import PRODUCTION, promote

    if not wanted:
        return False, None
    if version == parent["version"]:
        return False, "the unoptimized model stays best; nothing to promote"
    current = ws.catalog.get_alias(parent["name"], PRODUCTION)
    if current != parent["version"]:
        return False, (f"v{parent['version']} is not the production version ({'v' + str(current) if current else 'none'}"
                       f"); `modelloop promote {version}` serves the variant anyway")
    promote(ws, f"{parent['name']}:{version}", PRODUCTION, reason=f"{by}: {OPTIMIZED_VARIANT_OF}{parent['version']}")
    return True, f"production v{parent['version']} -> v{version}"


class VariantSkipped(Exception):
    """A variant that does not apply to this model; the message says why (the table shows it)."""


def _register(ws: Workspace, parent: dict, pred: VariantPredictor, chosen: VariantResult, results: list,
              drow: dict) -> int:
    """A new model version (native object + its ONNX file) linked to its parent."""
    from ..registry import tracker_for

    cfg = ws.config
    tracker = tracker_for(ws)
    with tracker.run(f"optimize-{parent['name']}-v{parent['version']}-{chosen.name}",
                     tags={"modelloop.kind": "optimize", "modelloop.parent_version": str(parent["version"])}) as rid:
        tracker.log(rid, params={"variant": chosen.name, "parent_version": parent["version"]},
                    metrics={k: v for k, v in asdict(chosen).items() if isinstance(v, (int, float))
                             and not isinstance(v, bool)})
        # a model that keeps files outside its pickle (a generative ONNX graph) moves them beside the
        # registered models first, so the pickle points at files that outlive optimize's scratch folder
        store = getattr(pred.model, "store_files", None)
        kept: list[Path] = store(ws.models_dir) if store is not None else []
        version = tracker.log_model(rid, pred.model, name=cfg.name)
    formats = {"native": f"models:/{cfg.name}/{version}"}
    if kept:
        formats["graph"] = str(kept[0])
    if pred.onnx_bytes is not None:
        key = pred.onnx_format
        path = ws.models_dir / f"{cfg.name}-v{version}{'-int8' if key == 'onnx_int8' else ''}.onnx"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pred.onnx_bytes)
        tmp.replace(path)
        formats[key] = str(path)
    info = {**parent["info"], "variant": chosen.name, "optimize": [asdict(r) for r in results],
            "size_bytes": chosen.size_bytes, "latency_p50_ms": chosen.latency_p50_ms,
            "description": pred.model.describe()}
    metrics = dict(parent["metrics"])
    metrics[cfg.metric] = chosen.metric
    ws.catalog.add_model(name=cfg.name, version=version, run_id=rid, dataset_id=parent["dataset_id"],
                         parent_version=parent["version"], formats=formats, metrics=metrics,
                         input_schema=parent["input_schema"], info=info, family=parent.get("family"))
    from ..catalog import utcnow

    ws.catalog.add_run(id=rid, project=cfg.name, dataset_id=drow["id"], config_hash="optimize", kind="optimize",
                       params={"variant": chosen.name, "parent_version": parent["version"]},
                       metrics={cfg.metric: chosen.metric}, artifacts=formats, started_at=utcnow(),
                       ended_at=utcnow())
    return int(version)


def _write_report(ws: Workspace, out: dict[str, Any]):
    import html

    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v.get(k)))}</td>" for k in
                         ("name", "size_bytes", "latency_p50_ms", "latency_p99_ms", "throughput_rps", "metric",
                          "metric_delta", "metric_delta_ci", "agreement", "kept", "reason")) + "</tr>"
        for v in out["variants"])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>optimize</title><style>body{{font-family:"
            f"system-ui,sans-serif;margin:2rem}}td,th{{border:1px solid #ddd;padding:.3rem .6rem}}table{{"
            f"border-collapse:collapse}}</style></head><body><h1>Optimize — {html.escape(out['parent']['name'])} "
            f"v{out['parent']['version']}</h1><p>chosen: <b>{html.escape(out['chosen'])}</b> (target "
            f"{html.escape(out['target'])}) → registered as v{out['model']['version']}"
            f"{html.escape(' (promoted: ' + out['promotion'] + ')' if out['promoted'] else '')}</p><table><tr>"
            + "".join(f"<th>{h}</th>" for h in ("variant", "size bytes", "p50 ms (batch 1)", "p99 ms", "rows/s (batch 64)",
                                                out["metric"], "delta", "delta 95% interval", "agreement",
                                                "kept", "reason"))
            + f"</tr>{rows}</table>"
            + (f"<p>each variant timed on {out['threads']} thread(s), as served</p>" if out.get("threads") else "")
            + "</body></html>")
    path = ws.reports_dir / f"optimize-{out['parent']['name']}-v{out['parent']['version']}.html"
    buf = io.StringIO(page)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return path
