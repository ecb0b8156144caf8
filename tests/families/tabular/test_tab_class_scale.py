"""The multiclass decision for macro-F1 (issue 27): per-class factors on the OOF probabilities, kept only
when their cross-fitted gain beats the fold-to-fold noise, carried by the served probabilities (so the
native model, ``labels_from_proba`` and the ONNX graph decide alike)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from modelloop.data.schema import Schema
from modelloop.data.split import make_folds
from modelloop.families.tabular.ensemble import ClassScaledClassifier
from modelloop.families.tabular.search import SearchSettings, run_search
from modelloop.families.tabular.threshold import tune_class_scale

SHARES = [0.06, 0.12, 0.52, 0.22, 0.08]  # an ordinal-like 5-level target with two small levels


def _levels(n: int, seed: int, signal: float = 1.0, shares: list[float] = SHARES) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    z = signal * (X["x0"] + 0.6 * X["x1"] - 0.4 * X["x2"]) + rng.normal(0, 1.0, n)
    cuts = np.quantile(z, np.cumsum(shares[:-1]))
    return X, pd.Series(np.array(list("abcde"))[np.searchsorted(cuts, z)], name="level")


def _search(tmp_path, X, y, repeats: int = 1, **kw):
    folds = [f for r in range(repeats)
             for f in make_folds(pd.DataFrame({"y": y}), strategy="stratified", n_folds=5, seed=r, target="y")]
    settings = SearchSettings(task="multiclass", metric="f1_macro", families=["linear"], budget=None, n_trials=1,
                              ensemble=False, cv_repeats=repeats, class_weight="none", **kw)
    return run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds,
                      settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s",
                      work_dir=tmp_path / "w")


def test_tuned_factors_raise_macro_f1_on_rows_they_were_not_tuned_on() -> None:
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    y = rng.choice(k, n, p=[0.7, 0.2, 0.07, 0.03])
    logits = rng.normal(0, 1.0, (n, k)) + 1.2 * np.eye(k)[y] + np.log([0.7, 0.2, 0.07, 0.03])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scale, tuned = tune_class_scale(y[:2000], proba[:2000], "f1_macro")
    argmax_half = f1_score(y[:2000], proba[:2000].argmax(1), average="macro")
    assert tuned > argmax_half + 0.02 and abs(tuned - f1_score(y[:2000], (proba[:2000] * scale).argmax(1),
                                                                  average="macro")) < 1e-9
    assert scale.max() == 1.0 and scale[0] < scale[3]           # the common class is scaled down
    held_out = f1_score(y[2000:], (proba[2000:] * scale).argmax(1), average="macro")
    assert held_out > f1_score(y[2000:], proba[2000:].argmax(1), average="macro") + 0.02


def test_search_keeps_factors_that_beat_the_noise_and_serves_them(tmp_path) -> None:
    X, y = _levels(1500, 0)
    Xt, yt = _levels(3000, 1)
    result = _search(tmp_path, X, y)
    info = result.cv["class_scale"]
    assert info["used"] == "tuned" and info["gain"] > info["noise"] and "more than" in info["reason"]
    est = result.model.estimator_
    assert isinstance(est, ClassScaledClassifier) and result.validation_score == info["tuned"] > info["default"]
    inner = est.estimators_[0]
    tuned = f1_score(yt, result.model.predict(Xt), average="macro")
    argmax = f1_score(yt, np.asarray(result.model.classes_)[
        inner.predict_proba(result.model._prepare(Xt)).argmax(1)], average="macro")
    assert tuned > argmax + 0.02
    proba = result.model.predict_proba(Xt)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert result.model.describe()["class_scale"] == info["scale"]


def test_onnx_graph_decides_as_the_scaled_model(tmp_path) -> None:
    import onnxruntime as ort

    from modelloop.families.tabular.export import check_onnx, onnx_inputs, to_onnx

    X, y = _levels(1500, 0)
    model = _search(tmp_path, X, y).model
    assert isinstance(model.estimator_, ClassScaledClassifier)
    onx = to_onnx(model)
    assert check_onnx(model, onx, X) < 1e-4
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    label = session.run(None, onnx_inputs(model, X, [i.name for i in session.get_inputs()]))[0]
    assert np.array_equal(label, model.predict_index(X))


def test_noise_labels_keep_the_argmax_and_say_why(tmp_path) -> None:
    # equal levels that do not depend on the features: no decision beats the argmax but by chance (with
    # unequal ones macro-F1 itself rewards predicting the small levels more often, noise or not)
    X, y = _levels(600, 2, signal=0.0, shares=[0.2] * 5)
    result = _search(tmp_path, X, y, repeats=3)
    info = result.cv["class_scale"]
    assert info["used"] == "argmax" and "noise" in info["reason"]
    assert not isinstance(result.model.estimator_, ClassScaledClassifier)
    assert result.validation_score == info["default"]


def test_binary_and_other_metrics_are_untouched(tmp_path) -> None:
    X, y = _levels(600, 3)
    result = _search(tmp_path, X, y, tune_threshold=False)
    assert "class_scale" not in result.cv and not isinstance(result.model.estimator_, ClassScaledClassifier)
