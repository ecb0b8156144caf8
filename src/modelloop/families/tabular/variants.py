"""The tabular family's variants for ``modelloop optimize`` (its ``variant_maker``):

* ``onnx`` — the same estimator in an ONNX Runtime session (trees and linear models convert).
* ``distilled`` — for an ensemble: one LightGBM model trained on the ensemble's soft labels, so
  users get ensemble accuracy at single-model latency. Soft labels are learned exactly by
  weighting: each training row appears once per class with weight ``p(class)``, which makes the
  student's log loss the cross-entropy to the teacher. Served through ONNX like any tree model.
* ``pruned`` — for boosted trees (XGBoost / LightGBM, alone or blended): the same model with only
  its first rounds, the smallest share whose decisions agree with the full model's on the training
  rows (:mod:`.prune`). Serving cost grows with the number of trees; the last rounds of a
  boosted model change few decisions.
* ``onnx_int8_dynamic`` / ``onnx_int8_static`` apply to neural networks (weights in MatMul/Gemm);
  for tree ensembles they are skipped with that reason.

Each ONNX variant carries the serving runtime over its graph (:func:`.serve.variant_runtime`), so the
optimize stage times it as ``modelloop serve`` runs it. :func:`served_latency` is the same figure for
one model, which ``train.max_latency_ms`` compares.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable

import numpy as np
import pandas as pd

from ...optimization.optimize import VARIANTS, VariantPredictor, VariantSkipped, cpu_ms, cycle_records, served_call
from ...serving.runtime import ONNX_ATOL, served_diff
from .fidelity import matching_threshold, perturbed
from .serve import variant_runtime

__all__ = ["STUDENTS", "STUDENT_TOLERANCE", "distill", "native_variant", "onnx_variant", "served_latency",
           "tabular_variants"]

_NN_ONLY = "applies to neural networks (weights in MatMul/Gemm); a tree/linear model has none to quantize"


def native_variant(model: Any) -> VariantPredictor:
    """The model as trained, scored on a DataFrame (``predict_proba``, or ``predict`` for regression)."""
    fn = model.predict if model.task == "regression" else model.predict_proba
    return VariantPredictor("native", fn, len(pickle.dumps(model)), model)


def onnx_variant(model: Any, name: str = "onnx") -> VariantPredictor:
    """The model's ONNX graph: scored by a plain session (``fn``), served by the packed-feed runtime."""
    import onnxruntime as ort

    from .export import onnx_inputs, to_onnx

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

    return VariantPredictor(name, fn, len(blob), model, blob, runtime=variant_runtime(model, blob))


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
    from .model import TabularModel, categorical_indices, build_estimator, prepared_columns

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


def served_latency(model: Any, frame: pd.DataFrame) -> tuple[float, str]:
    """(batch-1 milliseconds, ``"onnx"`` or ``"native"``) of a tabular ``model`` loaded as
    ``modelloop serve`` loads it: over ONNX Runtime when it converts and its served output matches
    the native model on ``frame`` (the server's own check), natively otherwise.

    The figure is the call's CPU time on an uncontended core (``optimization.optimize.cpu_ms``): a limit compares models,
    and on a shared machine wall-clock time also counts what other tenants take. Each call is the next of
    ``frame``'s first 64 records (``optimization.optimize.cycle_records``): one record timed over and over
    lets the branch predictor learn its path through the trees and under-measures a large ensemble (a
    500-tree LightGBM: 40 us a call against 63, benchmarks/RESULTS.md)."""
    pred, served = native_variant(model), "native"
    try:
        onnx = onnx_variant(model)
        if onnx.runtime is not None and served_diff(onnx.runtime, model, frame) <= ONNX_ATOL:
            pred, served = onnx, "onnx"
    except Exception:  # served natively, as the server would
        pass
    return cpu_ms(cycle_records(served_call(pred) or (lambda f: (lambda: pred.fn(f))), frame)), served


def tabular_variants(teacher: Any, train: pd.DataFrame, *, target: str, seed: int,
                     max_drop: float = 0.01) -> Callable[[str], VariantPredictor]:
    """``name -> predictor`` for a tabular model (:func:`_build`)."""
    X_train = train.drop(columns=[target])
    return lambda name: _build(name, teacher, X_train, seed, max_drop)


def _build(name: str, teacher: Any, X_train: pd.DataFrame, seed: int, max_drop: float = 0.01) -> VariantPredictor:
    family = (teacher.describe() or {}).get("family")
    if name == "pruned":
        from .prune import NothingToPrune, prune_rounds

        try:  # agreement asked of the pruned model: half the quality budget, the test set gets the rest
            model, _ = prune_rounds(teacher, X_train, min_fidelity=1.0 - max_drop / 2, seed=seed)
        except NothingToPrune as exc:
            raise VariantSkipped(str(exc)) from None
        try:
            return onnx_variant(model, "pruned")
        except Exception:
            pred = native_variant(model)
            pred.name = "pruned"
            return pred
    if name == "onnx":
        try:
            return onnx_variant(teacher)
        except Exception as exc:  # the converter names the operator or estimator at fault
            raise VariantSkipped(f"export failed: {str(exc).splitlines()[0][:300]}") from None
    if name == "distilled":
        members = (teacher.describe() or {}).get("members") or []
        if family != "ensemble" and len(members) < 2:
            raise VariantSkipped("the model is a single model, not an ensemble: nothing to distil")
        student = distill(teacher, X_train, seed=seed)
        try:
            pred = onnx_variant(student, "distilled")
        except Exception:
            pred = native_variant(student)
            pred.name = "distilled"
        pred.model = student
        return pred
    if name in ("onnx_int8_dynamic", "onnx_int8_static"):
        raise VariantSkipped(_NN_ONLY)
    raise VariantSkipped(f"unknown variant; allowed: {', '.join(VARIANTS)}")
