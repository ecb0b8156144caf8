"""The train summary says what the JSON says of stacking and of the data's warnings."""

from __future__ import annotations

from modelloop.families.tabular.task import ordinal_warning


def _result(**more):
    return {"model": {"name": "grades", "version": 2}, "dataset": {"id": "9b68", "version": 1, "rows": 600},
            "production": True, "best_family": "lightgbm", "families": ["lightgbm", "xgboost"], "trials": 8,
            "resumed_trials": 0, "seconds": 12.0, "report": "r.html", "metric": "f1_macro",
            "validation_score": 0.61, "test_metrics": {"f1_macro": 0.6}, "rows": {"train": 480, "test": 120}, **more}


def test_the_summary_shows_the_stack_verdict_and_the_ordinal_warning(capsys):
    import pandas as pd

    from modelloop.ui import render_train

    warning = ordinal_warning(pd.Series([1, 2, 3, 4, 5] * 20), "grade")
    assert warning  # evenly spaced whole numbers: the family warns
    stack = {"kept": False, "reason": "the level-2 model scores 0.6010 out of fold, not above the best single "
                                      "model or blend (0.6100)"}
    render_train(_result(ensemble={"kept": True, "stack": stack}, warnings=[warning]))
    shown = capsys.readouterr().out
    assert "stacking    not kept: the level-2 model scores 0.6010" in shown
    assert "warning" in shown and "regression" in shown


def test_without_stack_or_warnings_the_summary_says_nothing_of_them(capsys):
    from modelloop.ui import render_train

    render_train(_result())
    shown = capsys.readouterr().out
    assert "stacking" not in shown and "warning" not in shown
