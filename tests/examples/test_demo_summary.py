"""The demo's one-screen summary: what served when, in a plain 80-column terminal."""

from __future__ import annotations

from modelloop.ui import demo_summary_rows


def _result() -> dict:
    metrics = {"recent": {"f1_macro": 0.4924}, "holdout": {"f1_macro": 0.7862}}
    return {
        "train": {"dataset": {"id": "9b68fc005df5", "version": 1, "rows": 20000},
                  "model": {"name": "fraud", "version": 1}, "best_family": "xgboost",
                  "families": ["lightgbm", "xgboost"],
                  "test_metrics": {"f1_macro": 0.7862, "roc_auc": 0.9043},
                  "report": "/home/someone/demo/.modelloop/reports/evaluation-fraud-v1.html"},
        "optimize": {"variants": [{"name": "native", "latency_p50_ms": 65.7}, {"name": "onnx", "latency_p50_ms": 0.4987}],
                     "chosen": "onnx", "promoted": True, "model": {"name": "fraud", "version": 2}},
        "monitor": {"drifted_features": ["amount", "merchant"],
                    "metrics": {"2": {"all": {"f1_macro": 0.4949, "n": 3000}}}},
        "retrain": {"promoted": True, "champion": {"model": {"version": 2}, "metrics": metrics},
                    "challenger": {"model": {"version": 3}, "metrics": {"recent": {"f1_macro": 0.645},
                                                                         "holdout": {"f1_macro": 0.788}}},
                    "optimize": {"promoted": True, "chosen": "onnx", "model": {"name": "fraud", "version": 4}}},
        "serve": {"after": {"versions": {4: 1500}}},
        "monitor_after": {"metrics": {"4": {"all": {"f1_macro": 0.5502, "n": 1500}}}},
        "fresh": {"champion": {"rows": 1500, "version": 2, "metrics": {"f1_macro": 0.4949, "roc_auc": 0.7727}},
                  "challenger": {"rows": 1500, "version": 3, "metrics": {"f1_macro": 0.5502, "roc_auc": 0.8246}}},
    }


def test_summary_names_the_served_versions_and_fits_80_columns():
    rows = demo_summary_rows(_result())
    text = dict(rows)
    assert text["model"].startswith("fraud:1 — ensemble of 2,")   # what was registered, not the best trial
    assert text["optimize"].endswith("serving v2")
    assert text["live before"] == "f1_macro 0.4949 on 3000 labeled predictions"  # v2 served, not v1
    assert ("", "v3 optimized (onnx), serving v4") in rows
    assert text["live after"].startswith("served by v4")
    for label, line in rows:
        assert len(f"  {label:12} {line}") <= 80, line
