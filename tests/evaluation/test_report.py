"""Evaluation figures as JSON and the self-contained HTML report."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from modelloop.errors import ConfigError, DataError
from modelloop.evaluation import evaluate_predictions, render_report, write_report

CONTRACT = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "pr_auc", "log_loss"}


def _binary(n: int = 2_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    p1 = np.clip(0.1 + 0.5 * y * rng.random(n) + 0.3 * rng.random(n), 0, 1)
    return y, np.c_[1 - p1, p1]


def _multiclass(n: int = 1_500, k: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits)
    return y, proba / proba.sum(axis=1, keepdims=True)


def _strict_json(obj: dict) -> dict:
    return json.loads(json.dumps(obj, allow_nan=False))


# --- evaluate_predictions --------------------------------------------------------------------------

def test_binary_evaluation_keys_and_json():
    y, proba = _binary()
    ev = evaluate_predictions("binary", y, proba, classes=[np.int64(0), np.int64(1)], threshold=0.4)
    assert set(ev) == {"task", "metrics", "per_class", "confusion_matrix", "rows", "threshold"}
    assert CONTRACT <= set(ev["metrics"])
    assert not {"rmse", "mae", "r2"} & set(ev["metrics"])
    assert ev["rows"] == len(y) and ev["threshold"] == 0.4
    assert ev["confusion_matrix"]["labels"] == [0, 1]
    assert type(ev["confusion_matrix"]["labels"][0]) is int
    matrix = np.array(ev["confusion_matrix"]["matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == len(y)
    assert set(ev["per_class"]) == {"0", "1"}
    assert ev["per_class"]["1"]["support"] == int(y.sum())
    assert set(ev["per_class"]["0"]) == {"precision", "recall", "f1", "support"}
    assert _strict_json(ev) == ev


def test_threshold_changes_the_labels():
    y, proba = _binary()
    low = evaluate_predictions("binary", y, proba, classes=[0, 1], threshold=0.05)
    high = evaluate_predictions("binary", y, proba, classes=[0, 1], threshold=0.95)
    assert low["per_class"]["1"]["recall"] > high["per_class"]["1"]["recall"]
    assert low["metrics"]["roc_auc"] == high["metrics"]["roc_auc"]


def test_multiclass_with_text_labels():
    y, proba = _multiclass(k=3)
    classes = ["cat", "dog", "fish"]
    by_index = evaluate_predictions("multiclass", y, proba, classes=classes, threshold=0.3)
    by_label = evaluate_predictions("multiclass", np.array(classes, dtype=object)[y], proba,
                                    classes=classes)
    assert by_index == by_label
    assert by_index["threshold"] is None  # a threshold means nothing for multiclass
    assert CONTRACT <= set(by_index["metrics"])
    assert list(by_index["per_class"]) == classes
    assert by_index["confusion_matrix"]["labels"] == classes


def test_regression_keys():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    ev = evaluate_predictions("regression", y, y + rng.normal(scale=0.1, size=500), classes=[])
    assert set(ev["metrics"]) == {"rmse", "mae", "r2"}
    assert ev["per_class"] is None and ev["confusion_matrix"] is None
    assert ev["rows"] == 500 and ev["metrics"]["r2"] > 0.9
    assert _strict_json(ev) == ev


def test_nan_metrics_become_none():
    y = np.zeros(50, dtype=int)  # one class only: ROC-AUC and PR-AUC are undefined
    proba = np.c_[np.full(50, 0.7), np.full(50, 0.3)]
    ev = evaluate_predictions("binary", y, proba, classes=[0, 1])
    assert ev["metrics"]["roc_auc"] is None and ev["metrics"]["pr_auc"] is None
    assert isinstance(ev["metrics"]["accuracy"], float)
    _strict_json(ev)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"task": "clustering"}, ConfigError, "task"),
    ({"task": "ranking"}, DataError, "one predicted rating per true rating"),
    ({"output": np.ones((10, 3)) / 3}, DataError, r"\(n, 2\)"),
    ({"classes": [0, 1, 2]}, DataError, "exactly 2"),
    ({"y_true": np.full(10, 2)}, DataError, "class indices"),
    ({"y_true": np.array(["x"] * 10, dtype=object)}, DataError, "'x'"),
    ({"threshold": 1.5}, ConfigError, "threshold"),
    ({"output": np.full((10, 2), np.nan)}, DataError, "NaN"),
    ({"y_true": np.zeros(9, dtype=int)}, DataError, "rows"),
])
def test_bad_input_is_named(kwargs, error, match):
    args = {"task": "binary", "y_true": np.zeros(10, dtype=int), "output": np.full((10, 2), 0.5),
            "classes": [0, 1], "threshold": None} | kwargs
    with pytest.raises(error, match=match):
        evaluate_predictions(args.pop("task"), args.pop("y_true"), args.pop("output"), **args)


# --- render_report ---------------------------------------------------------------------------------

def _assert_offline(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.IGNORECASE)


def _render(task, classes, y, out, **kwargs) -> str:
    ev = evaluate_predictions(task, y, out, classes=classes, threshold=kwargs.get("threshold"))
    return render_report(ev, title=kwargs.pop("title", "report"), task=task, classes=classes, y_true=y,
                         output=out, **kwargs)


def test_binary_report_is_self_contained_and_escaped():
    y, proba = _binary()
    page = _render("binary", ["legit", "fraud"], y, proba, threshold=0.35, title="fraud <v1> & co",
                   importances={f"f{i}": float(i) for i in range(30)} | {"<script>x</script>": 99.0,
                                                                         "price $usd": 0.5},
                   context={"model": "fraud:1", "dataset": "ds_<1>", "rows": len(y), "threshold": 0.35,
                            "created_at": "2024-05-01T10:00:00"})
    _assert_offline(page)
    assert page.count("<svg") == 5  # ROC, PR, confusion matrix, calibration, importance
    assert "fraud &lt;v1&gt; &amp; co" in page and "fraud <v1>" not in page
    assert "ds_&lt;1&gt;" in page and "<script>x" not in page
    assert "f29" in page and "f9<" not in page  # only the top 20 importances are drawn
    assert "<td>legit</td>" in page and "<td>fraud</td>" in page
    for name in ("roc_auc", "pr_auc", "f1_macro", "log_loss"):
        assert f"<td>{name}</td>" in page
    assert "created at" in page and "2024-05-01T10:00:00" in page


def test_multiclass_report_caps_curves_at_ten_classes():
    y, proba = _multiclass(k=12)
    classes = [f"c{i:02d}" for i in range(12)]
    page = _render("multiclass", classes, y, proba)
    _assert_offline(page)
    assert page.count("<svg") == 3  # ROC, PR, confusion matrix
    assert "10 most frequent of 12 classes" in page
    for label in classes:
        assert f"<td>{label}</td>" in page


def test_regression_report_has_scatter_and_residuals():
    rng = np.random.default_rng(0)
    y = rng.lognormal(size=7_000)
    page = _render("regression", [], y, y + rng.normal(size=7_000))
    _assert_offline(page)
    assert page.count("<svg") == 2
    assert "Predicted vs actual" in page and "Residuals" in page
    assert "5,000 of 7,000 rows" in page
    assert "<td>rmse</td>" in page and "Per class" not in page


def test_undrawable_chart_is_explained_not_fatal():
    y = np.zeros(40, dtype=int)
    proba = np.c_[np.full(40, 0.8), np.full(40, 0.2)]
    page = _render("binary", [0, 1], y, proba)
    assert "Not drawn: needs both classes in y_true." in page
    assert "n/a" in page  # roc_auc is None


def test_report_is_deterministic_and_leaves_no_pyplot_figures():
    plt = pytest.importorskip("matplotlib.pyplot")
    y, proba = _binary(n=500)
    assert _render("binary", [0, 1], y, proba) == _render("binary", [0, 1], y, proba)
    assert plt.get_fignums() == []


# --- write_report ----------------------------------------------------------------------------------

def test_write_report_replaces_atomically(tmp_path):
    path = tmp_path / "reports" / "evaluation.html"
    assert write_report(path, "<p>old</p>") == path
    write_report(path, "<p>new ✓</p>")
    assert path.read_text(encoding="utf-8") == "<p>new ✓</p>"
    assert os.listdir(path.parent) == ["evaluation.html"]


def test_write_report_keeps_the_old_page_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "evaluation.html"
    write_report(path, "<p>old</p>")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(path, "<p>new</p>")
    assert path.read_text() == "<p>old</p>"
    assert os.listdir(tmp_path) == ["evaluation.html"]
