"""The optimize stage: build variants of a model, verify and benchmark each, register the best.

Tabular variants:

* ``native`` — the model as trained, scored by its own ``predict_proba`` on a DataFrame: how a
  user would otherwise serve it (the baseline).
* ``onnx`` — the same estimator in an ONNX Runtime session (trees and linear models convert).
* ``distilled`` — for an ensemble: one LightGBM model trained on the ensemble's soft labels, so
  users get ensemble accuracy at single-model latency. Soft labels are learned exactly by
  weighting: each training row appears once per class with weight ``p(class)``, which makes the
  student's log loss the cross-entropy to the teacher. Served through ONNX like any tree model.
* ``pruned`` — for boosted trees (XGBoost / LightGBM, alone or blended): the same model with only
  its first rounds, the smallest share whose decisions agree with the full model's on the training
  rows (:mod:`.tree_prune`). Serving cost grows with the number of trees; the last rounds of a
  boosted model change few decisions.
* ``onnx_int8_dynamic`` / ``onnx_int8_static`` apply to neural networks (weights in MatMul/Gemm);
  for tree ensembles they are skipped with that reason.

Text models get their own variants (:mod:`.text_variants`: ONNX fp32, int8 dynamic, int8 static,
a structurally pruned and a distilled fewer-layer student, :mod:`.text_compress`);
the registered version carries its ONNX file in ``formats`` (``onnx`` or ``onnx_int8``), which is
what serving loads for a text model.

Every variant is scored on the frozen test set (metric, agreement with the original) and timed the
same way, as the server runs it (JSON records through the serving runtime, batch 1 and 64); one
outside ``optimize.max_metric_drop`` is reported and never registered.
"""

from __future__ import annotations

import contextlib
import io
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

from ..evaluation.evaluate import evaluate_model
from ..evaluation.metrics import direction
from ..workspace import Workspace
from ..families.tabular.fidelity import matching_threshold, perturbed

__all__ = ["TABULAR_VARIANTS", "VARIANTS", "VariantPredictor", "VariantResult", "VariantSkipped", "distill",
           "optimize", "tabular_variants"]

# every variant ``optimize.variants: auto`` tries; a family skips, with the reason, those that do not
# apply to its models (its ``variants`` declare the ones that do)
VARIANTS = ("onnx", "onnx_int8_dynamic", "onnx_int8_static", "pruned", "distilled")
TABULAR_VARIANTS = VARIANTS  # the name earlier releases exported
_NN_ONLY = "applies to neural networks (weights in MatMul/Gemm); a tree/linear model has none to quantize"


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
                 onnx_bytes: bytes | None = None, onnx_format: str = "onnx", serves_records: bool = True):
        self.name, self.fn, self.size, self.model, self.onnx_bytes = name, fn, size, model, onnx_bytes
        self.onnx_format = onnx_format  # the ``formats`` key the ONNX file is registered under
        # timed through the generic serving Runtime (JSON records in); False: the variant's own ``fn``
        self.serves_records = serves_records


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _native(model: Any) -> VariantPredictor:
    fn = model.predict if model.task == "regression" else model.predict_proba
    return VariantPredictor("native", fn, len(pickle.dumps(model)), model)


def _onnx(model: Any, name: str = "onnx") -> VariantPredictor:
    import onnxruntime as ort

    from ..families.tabular.export import onnx_inputs, to_onnx

    blob = to_onnx(model).SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out_index = 0 if model.task == "regression" else 1

    def fn(frame: pd.DataFrame) -> np.ndarray:
        res = sess.run(None, onnx_inputs(model, model.clean_inputs(frame), names))[out_index]
        return np.asarray(res, dtype=float).reshape(len(frame), -1) if out_index else np.asarray(res).ravel()

    return VariantPredictor(name, fn, len(blob), model, blob)


# students from small to large: ONNX Runtime's time in a server grows with the tree nodes it walks
# (fraud example, batch 16, cold cache as between a server's batches: 150x31 9k nodes 754 µs,
# 300x63 38k nodes 1,420 µs; agreement with the teacher on unseen rows 0.990 and 0.992)
STUDENTS = ({"n_estimators": 150, "learning_rate": 0.1, "num_leaves": 31},
            {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 63})
STUDENT_TOLERANCE = 0.005  # half a point of agreement: about one standard error on 1,000 held-out rows


def distill(teacher: Any, X: pd.DataFrame, *, seed: int = 0, params: dict | None = None,
            augment: int = 1) -> Any:
    """The smallest LightGBM student of ``STUDENTS`` (or one of ``params``) that mimics the teacher.

    Each candidate is fitted on 80 % of ``X`` and scored on the rest against the teacher (the share
    of equal labels; for regression 1 - mean |Δ| / std of the teacher's values); the first within
    ``STUDENT_TOLERANCE`` of the best is refitted on all of ``X``."""
    if params is not None or len(X) < 50:
        return _fit_student(teacher, X, seed=seed, params=params or STUDENTS[-1], augment=augment)
    held = X.sample(frac=0.2, random_state=seed)
    rest = X.drop(held.index)
    scores = [_fidelity(teacher, _fit_student(teacher, rest, seed=seed, params=p, augment=augment), held)
              for p in STUDENTS]
    best = max(scores)
    chosen = next(p for p, score in zip(STUDENTS, scores, strict=True) if score >= best - STUDENT_TOLERANCE)
    return _fit_student(teacher, X, seed=seed, params=chosen, augment=augment)


def _fidelity(teacher: Any, student: Any, X: pd.DataFrame) -> float:
    want, got = np.asarray(teacher.predict(X)), np.asarray(student.predict(X))
    if teacher.task == "regression":
        return 1.0 - float(np.mean(np.abs(got - want)) / (np.std(want) + 1e-12))
    return float(np.mean(got == want))


def _fit_student(teacher: Any, X: pd.DataFrame, *, seed: int, params: dict, augment: int) -> Any:
    """One LightGBM student fitted on the teacher's soft labels over ``X`` (raw training rows) plus
    ``augment`` perturbed copies of it, so the student also learns the teacher between the rows.

    For binary and regression teachers the student splits categories by ordinal codes (``x <= t``)
    numbered in the order of the teacher's mean score per category, which is the order LightGBM's own
    categorical splits sort by, so a threshold on the code separates the same groups. Categorical
    splits convert to chains of equality nodes; ONNX Runtime walks trees of one node kind faster
    (the fraud example's student: 30 against 55 µs a record at batch 16). A multiclass teacher has
    no one order for all classes: its student keeps LightGBM's categorical splits."""
    X = pd.concat([X.reset_index(drop=True)] + [perturbed(X.reset_index(drop=True), seed + i)
                                                for i in range(augment)], ignore_index=True)
    from ..families.tabular.model import TabularModel, categorical_indices, build_estimator, prepared_columns

    schema = teacher.prepared_schema()
    numeric, categorical = prepared_columns(schema)
    pipe = build_estimator("lightgbm", params,
                           task=teacher.task, numeric_cols=numeric, categorical_cols=categorical, seed=seed,
                           class_weight="none")
    prepared = teacher._prepare(X)
    prep, model = pipe.named_steps["prep"], pipe.named_steps["model"]
    proba = teacher.predict_proba(X) if teacher.task != "regression" else None
    scored = teacher.task in ("binary", "regression") and categorical
    if scored:
        score = teacher.predict(X) if proba is None else proba[:, 1]
        prep.set_params(cat__categories=[_score_order(prepared[c], score) for c in categorical])
    if proba is None:
        Xt = prep.fit_transform(prepared)
        model.fit(Xt, teacher.predict(X), categorical_feature=[])
    else:
        k = proba.shape[1]
        rep = pd.concat([prepared] * k, ignore_index=True)
        y = np.repeat(np.arange(k), len(prepared))
        w = proba.T.reshape(-1)
        Xt = prep.fit_transform(rep)
        keep = w > 1e-6
        model.fit(Xt[keep], y[keep], sample_weight=w[keep],
                  categorical_feature=[] if scored else (categorical_indices(prep) or "auto"))
    threshold = teacher.threshold_
    if teacher.task == "binary" and threshold is not None and proba is not None:
        # keep the teacher's decision rate: the student's threshold flags as many training rows
        threshold = matching_threshold(proba[:, 1] >= threshold, model.predict_proba(Xt[: len(prepared)])[:, 1])
    student = TabularModel.from_fitted(schema=schema, task=teacher.task, classes=teacher.classes_, estimator=pipe,
                                       threshold=threshold, family="lightgbm",
                                       description={"distilled_from": teacher.describe().get("family"),
                                                    "student": {k: params[k] for k in ("n_estimators", "num_leaves")
                                                                if k in params}})
    student.cleaning_plan_ = getattr(teacher, "cleaning_plan_", None)
    return student


def _score_order(column: pd.Series, score: np.ndarray) -> list[Any]:
    """The categories of ``column`` (missing left out) from the lowest mean ``score`` to the highest."""
    means = pd.Series(score).groupby(column.to_numpy(), dropna=True).mean()
    return list(means.sort_values(kind="stable").index)


def _runtime(pred: VariantPredictor) -> Any:
    """The serving runtime over a variant served from records (None for one timed by its own ``fn``)."""
    from ..serving.runtime import Runtime, serving_session

    model = pred.model
    if not pred.serves_records or getattr(model, "schema", None) is None:
        return None
    info = {"task": model.task, "classes": model.classes_, "threshold": model.threshold_}
    row = {"name": "variant", "version": 0, "input_schema": model.schema.to_dict(), "info": info}
    plan = getattr(model, "cleaning_plan_", None)
    return (Runtime(row, session=serving_session(pred.onnx_bytes), plan=plan) if pred.onnx_bytes is not None
            else Runtime(row, native=model, plan=plan))


def _served(pred: VariantPredictor) -> Callable[[pd.DataFrame], Callable[[], Any]] | None:
    """For a tabular variant: ``frame -> call`` running it as ``modelloop serve`` does (JSON records
    in, the serving runtime over its ONNX session or, without one, the native model), so the times
    ``optimize`` compares are the ones a deployed model pays, not those of a DataFrame round trip."""
    from ..serving.runtime import to_records

    runtime = _runtime(pred)
    if runtime is None:
        return None

    def prepare(frame: pd.DataFrame) -> Callable[[], Any]:
        records = to_records(frame, runtime.request_schema)
        return lambda: runtime.predict(records)

    return prepare


def served_latency(model: Any, frame: pd.DataFrame) -> tuple[float, str]:
    """(batch-1 milliseconds, ``"onnx"`` or ``"native"``) of a tabular ``model`` loaded as
    ``modelloop serve`` loads it: over ONNX Runtime when it converts and its served output matches
    the native model on ``frame`` (the server's own check), natively otherwise.

    The figure is the call's CPU time on an uncontended core (``_cpu_ms``): a limit compares models,
    and on a shared machine wall-clock time also counts what other tenants take."""
    from ..serving.runtime import ONNX_ATOL, served_diff

    pred, served = _native(model), "native"
    try:
        onnx = _onnx(model)
        runtime = _runtime(onnx)
        if runtime is not None and served_diff(runtime, model, frame) <= ONNX_ATOL:
            pred, served = onnx, "onnx"
    except Exception:  # served natively, as the server would
        pass
    return _cpu_ms((_served(pred) or (lambda f: (lambda: pred.fn(f))))(frame.iloc[:1])), served


def _cpu_ms(call: Callable[[], Any], seconds: float = 1.0, chunk: int = 20) -> float:
    """CPU milliseconds of one ``call`` on an uncontended core: the 10th percentile of chunks of
    ``chunk`` calls over about ``seconds`` (at least 5 chunks), on this thread (ONNX Runtime runs on
    the caller's thread with its one intra-op thread). On a shared machine another tenant's memory
    traffic slows tree walks up to 3x for stretches of a second; the median of a chunk drifts with
    it, the low percentile over a second stays within a few percent."""
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


def _latencies(prepare: Callable[[pd.DataFrame], Callable[[], Any]], frame: pd.DataFrame,
               repeats: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of one record, at most ``repeats`` runs or 5 s."""
    one = prepare(frame.iloc[:1])
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
    served = _served(pred)
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
                      target: str, task: str, metric: str, max_drop: float) -> VariantResult:
    X = test.drop(columns=[target])
    rss = _rss_mb()
    p50, p99, thr = _time(pred, X)
    res = VariantResult(pred.name, size_bytes=pred.size, latency_p50_ms=round(p50, 4), latency_p99_ms=round(p99, 4),
                        throughput_rps=round(thr, 1), memory_mb=round(max(_rss_mb() - rss, 0.0), 2))

    class _Wrapped:  # evaluate_model wants predict/predict_proba; route them through the variant
        classes_ = getattr(pred.model, "classes_", None)
        threshold_ = getattr(pred.model, "threshold_", None)

        def predict_proba(self, frame):
            return pred.fn(frame)

        def predict(self, frame):
            return pred.fn(frame)

    res.metric = evaluate_model(_Wrapped(), test, target=target, task=task)["metrics"][metric]
    if base is not None and base_metric is not None:
        from ..evaluation.evaluate import label_indices
        from ..evaluation.metrics import labels_from_proba

        a, b = pred.fn(X), base.fn(X)
        thr_a, thr_b = _Wrapped.threshold_, getattr(base.model, "threshold_", None)
        if task == "regression":
            y = test[target].to_numpy(dtype=float)
            res.agreement = float(np.mean(np.isclose(a, b, rtol=1e-3, atol=1e-3)))
        else:  # the decisions each model serves, each at its own threshold
            y = label_indices(_Wrapped(), test[target], target)
            res.agreement = float(np.mean(labels_from_proba(a, thr_a) == labels_from_proba(b, thr_b)))
        sign = 1.0 if direction(metric) == "maximize" else -1.0
        res.metric_delta = round(sign * (res.metric - base_metric), 6)
        res.metric_delta_ci = _delta_interval(metric, sign, y, (a, thr_a), (b, thr_b))
        res.kept = res.metric_delta >= -max_drop
        lo, hi = res.metric_delta_ci
        res.reason = "within the quality budget" if res.kept else \
            f"{metric} falls {-res.metric_delta:.4f} (> max_metric_drop {max_drop}; 95% interval of the change " \
            f"{lo:+.4f} to {hi:+.4f})"
    else:
        res.metric_delta, res.agreement, res.kept, res.reason = 0.0, 1.0, True, "the unoptimized model"
    return res


def _delta_interval(metric: str, sign: float, y: np.ndarray, variant: tuple[np.ndarray, float | None],
                    base: tuple[np.ndarray, float | None], rounds: int = 200, seed: int = 0) -> list[float]:
    """The 95 % interval of ``sign * (metric(variant) - metric(base))`` over paired bootstrap resamples
    of the test rows: how much of a change on a small test set (few positives) is noise."""
    import warnings

    from ..evaluation.metrics import score

    rng = np.random.default_rng(seed)
    deltas = []
    with warnings.catch_warnings():  # a resample may lack a class: its figure is nan, left out
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            i = rng.integers(0, len(y), len(y))
            deltas.append(sign * (score(metric, y[i], variant[0][i], threshold=variant[1])
                                  - score(metric, y[i], base[0][i], threshold=base[1])))
    lo, hi = np.nanpercentile(np.array(deltas, dtype=float), [2.5, 97.5])
    return [round(float(lo), 6), round(float(hi), 6)]


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
    from ..registry import resolve_model

    cfg = ws.config
    oc = cfg.optimize
    row = resolve_model(ws, model)
    family = family_of(row)
    teacher = family.load(ws, row)
    task = row["info"]["task"]
    drow, df, _ = load_dataset(ws, row["dataset_id"])
    side = ensure_split(ws, drow, df)
    target = cfg.data.target
    test = df[side == "test"].reset_index(drop=True)
    train = df[side == "train"].reset_index(drop=True)
    wanted = list(VARIANTS) if (variants or oc.variants) in (None, "auto", ["auto"]) else \
        list(variants or oc.variants)
    # every variant of a model whose family serves it on several threads (a text network) is timed on as
    # many, PyTorch included, so the table shows what serving pays; None: one thread each (tabular)
    threads = family.serve_threads(cfg.serve)
    with tempfile.TemporaryDirectory(prefix="modelloop-optimize-") as scratch, _torch_threads(threads):
        make = family.variant_maker(teacher, train, target=target, seed=cfg.seed, scratch=Path(scratch),
                                    max_drop=oc.max_metric_drop, threads=threads)
        base = _native(teacher)
        results = [_evaluate_variant(base, None, None, test, target, task, cfg.metric, oc.max_metric_drop)]
        built: dict[str, VariantPredictor] = {"native": base}
        for name in wanted:
            try:
                pred = make(name)
            except VariantSkipped as exc:
                results.append(VariantResult(name, reason=str(exc)))
                continue
            built[name] = pred
            results.append(_evaluate_variant(pred, base, results[0].metric, test, target, task, cfg.metric,
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


def tabular_variants(teacher: Any, train: pd.DataFrame, *, target: str, seed: int,
                     max_drop: float = 0.01) -> Callable[[str], VariantPredictor]:
    """``name -> predictor`` for a tabular model (:func:`_build`)."""
    X_train = train.drop(columns=[target])
    return lambda name: _build(name, teacher, X_train, seed, max_drop)


def _build(name: str, teacher: Any, X_train: pd.DataFrame, seed: int, max_drop: float = 0.01) -> VariantPredictor:
    family = (teacher.describe() or {}).get("family")
    if name == "pruned":
        from ..families.tabular.prune import NothingToPrune, prune_rounds

        try:  # agreement asked of the pruned model: half the quality budget, the test set gets the rest
            model, _ = prune_rounds(teacher, X_train, min_fidelity=1.0 - max_drop / 2, seed=seed)
        except NothingToPrune as exc:
            raise VariantSkipped(str(exc)) from None
        try:
            return _onnx(model, "pruned")
        except Exception:
            pred = _native(model)
            pred.name = "pruned"
            return pred
    if name == "onnx":
        try:
            return _onnx(teacher)
        except Exception as exc:  # the converter names the operator or estimator at fault
            raise VariantSkipped(f"export failed: {str(exc).splitlines()[0][:300]}") from None
    if name == "distilled":
        members = (teacher.describe() or {}).get("members") or []
        if family != "ensemble" and len(members) < 2:
            raise VariantSkipped("the model is a single model, not an ensemble: nothing to distil")
        student = distill(teacher, X_train, seed=seed)
        try:
            pred = _onnx(student, "distilled")
        except Exception:
            pred = _native(student)
            pred.name = "distilled"
        pred.model = student
        return pred
    if name in ("onnx_int8_dynamic", "onnx_int8_static"):
        raise VariantSkipped(_NN_ONLY)
    raise VariantSkipped(f"unknown variant; allowed: {', '.join(VARIANTS)}")


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
        version = tracker.log_model(rid, pred.model, name=cfg.name)
    formats = {"native": f"models:/{cfg.name}/{version}"}
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
                         input_schema=parent["input_schema"], info=info)
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
