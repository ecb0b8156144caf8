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


def _with_change(f1_interval: list[float], within: bool) -> dict:
    result = _result()
    result["fresh"]["change"] = {
        "f1_macro": {"delta": 0.0553, "interval": f1_interval, "within_noise": within},
        "roc_auc": {"delta": 0.0519, "interval": [0.0121, 0.0934], "within_noise": False}}
    return result


def test_fresh_change_shows_its_interval_and_says_noise_only_when_it_holds_0():
    rows = demo_summary_rows(_with_change([-0.0312, 0.1387], True))
    fresh = rows[[label for label, _ in rows].index("fresh data"):]
    assert fresh[1] == ("", "f1_macro +0.055, 95% interval -0.031 to +0.139: within the noise")
    assert fresh[2] == ("", "roc_auc +0.052, 95% interval +0.012 to +0.093")  # excludes 0: no verdict
    for label, line in rows:
        assert len(f"  {label:12} {line}") <= 80, line
    rows = demo_summary_rows(_with_change([0.0103, 0.1387], False))
    assert ("", "f1_macro +0.055, 95% interval +0.010 to +0.139") in rows
    assert not any("noise" in line for label, line in rows if label == "")  # the result has no gate interval


def test_fresh_change_of_a_model_against_itself_is_0(tmp_path):
    """``_compare_on`` with the same registered model as champion and challenger on the same rows: change
    0 in every figure and a paired interval of [0, 0] (the same answers on every resample, which the
    gate's rule does not call noise), next to the figures evaluate gives."""
    from toy import RAW_CONFIG, make_table, register_linear

    from modelloop.config import parse_config
    from modelloop.demo import _compare_on
    from modelloop.project import Project

    make_table(300).to_csv(tmp_path / "data.csv", index=False)
    project = Project(parse_config(RAW_CONFIG, root=tmp_path))
    project.ingest()
    version = register_linear(project.workspace)
    ref = {"model": {"name": "toy", "version": version}}
    fresh = _compare_on(project, make_table(400, seed=5), {"champion": ref, "challenger": ref})
    assert fresh["champion"]["metrics"] == fresh["challenger"]["metrics"]
    assert fresh["champion"]["rows"] == 400
    assert set(fresh["change"]) == {"f1_macro", "roc_auc"}
    for change in fresh["change"].values():
        assert change["delta"] == 0.0
        assert change["interval"] == [0.0, 0.0] and change["within_noise"] is False


def test_fresh_change_of_two_models_is_the_gates_paired_interval():
    """Two models' answers on 1,500 rows holding 30 positives (the demo's fresh traffic): the change is
    the figures' difference, its interval the gate's paired bootstrap on the same answers, and a small
    change there is within the noise."""
    import numpy as np

    from modelloop.demo import _fresh_change
    from modelloop.evaluation.metrics import classification_metrics, paired_change_interval

    rng = np.random.default_rng(0)
    y = np.zeros(1500, dtype=int)
    y[rng.choice(1500, 30, replace=False)] = 1
    p_a = np.clip(0.02 + 0.5 * y + rng.normal(0, 0.2, 1500), 0, 1)
    p_b = np.clip(p_a + rng.normal(0, 0.05, 1500), 0, 1)
    proba = {role: np.column_stack([1 - p, p]) for role, p in (("champion", p_a), ("challenger", p_b))}
    figures = {role: {"metrics": classification_metrics(y, proba[role], threshold=0.5)} for role in proba}
    answers = {role: (y, proba[role], 0.5) for role in proba}
    change = _fresh_change(figures, answers)
    for metric, c in change.items():
        delta = figures["challenger"]["metrics"][metric] - figures["champion"]["metrics"][metric]
        assert c["delta"] == round(delta, 6)
        assert c["interval"] == paired_change_interval(metric, y, (proba["challenger"], 0.5),
                                                       (proba["champion"], 0.5))
        assert c["interval"][0] <= c["delta"] <= c["interval"][1]
    assert change["f1_macro"]["within_noise"] is True
