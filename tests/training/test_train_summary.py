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
    stack = {"kept": False, "reason": "the level-2 model scores f1_macro 0.6010 out of fold, no better than the best single "
                                      "model or blend (0.6100)"}
    render_train(_result(ensemble={"kept": True, "stack": stack}, warnings=[warning]))
    shown = capsys.readouterr().out
    assert "stacking    not kept: the level-2 model scores f1_macro 0.6010" in shown
    assert "warning" in shown and "regression" in shown


def test_without_stack_or_warnings_the_summary_says_nothing_of_them(capsys):
    from modelloop.ui import render_train

    render_train(_result())
    shown = capsys.readouterr().out
    assert "stacking" not in shown and "warning" not in shown


def test_a_fine_tuned_language_model_shows_its_figures_beside_the_base_models(capsys):
    """A generative search minimises the validation loss: the summary names it (it said ``chrf = 2.4315``),
    and the test table, whose figures are none of a classifier's, shows them with the base model's
    (it was empty)."""
    from modelloop.ui import render_train

    render_train(_result(metric="chrf", validation_metric="log_loss", validation_score=2.4315, best_family="lora",
                         families=None, test_metrics={"exact_match": 0.0, "chrf": 0.2173, "rouge_l": 0.1409,
                                                      "perplexity": 11.33},
                         training_summary="lora on bundled: 1 epochs, 79 tokens/s, stopped by train.budget",
                         base_test_metrics={"exact_match": 0.0, "chrf": 0.121, "rouge_l": 0.05, "perplexity": 14.93}))
    shown = capsys.readouterr().out
    assert "validation  log_loss = 2.4315" in shown and "chrf = 2.4315" not in shown
    assert "lora on bundled: 1 epochs, 79 tokens/s, stopped by train.budget" in shown
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in shown.splitlines() if line.count("│") == 4}
    assert rows["chrf"] == ["0.2173", "0.1210"] and rows["perplexity"] == ["11.3300", "14.9300"]
    assert set(rows) == {"exact_match", "chrf", "rouge_l", "perplexity"} and "base model" in shown


def test_a_regression_on_prices_shows_its_figures_as_a_person_reads_them(capsys):
    """An rmse on house prices read ``15393.1195 ± 2157.0616``: four decimals on a figure in the tens of
    thousands. From 1,000 up the summary separates thousands with one decimal, as the HTML report does."""
    from modelloop.ui import render_train

    render_train(_result(metric="rmse", validation_score=15393.1195, test_metrics={"rmse": 17747.6536, "r2": 0.5932},
                         cv={"spread": 2157.0616, "folds": 10, "repeats": 2},
                         test_interval={"metric": "rmse", "low": 14457.4746, "high": 21721.6371, "rows": 110}))
    shown = capsys.readouterr().out
    assert "validation  rmse = 15,393.1" in shown and "± 2,157.1 (std over 10 folds" in shown
    assert "17,747.7" in shown and "0.5932" in shown
    assert "rmse 95 % interval 14,457.5 to 21,721.6" in shown
    assert "15393.1195" not in shown
