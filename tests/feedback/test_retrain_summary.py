"""The retrain summary's table shows the figure the gate compared on each slice: a head with its own gate
(a language model: chrF on the recent answers, perplexity on the holdout) got dashes before, because the
table looked up the combined name ``chrf (recent), perplexity (holdout)``."""

from __future__ import annotations


def _decision(gate: dict, metric: str, holdout: dict, recent: dict) -> dict:
    model = {"model": {"name": "helpdesk", "version": 1}, "metrics": {"holdout": holdout, "recent": recent}}
    better = {"holdout": {k: v * 1.02 for k, v in holdout.items()}, "recent": {k: v + 0.1 for k, v in recent.items()}}
    return {"promoted": True, "reason": "r", "metric": metric, "gate": gate, "rows": {"holdout": 48, "recent": 12},
            "champion": model, "challenger": {"model": {"name": "helpdesk", "version": 2}, "metrics": better}}


def _rows(shown: str) -> dict[str, list[str]]:
    return {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in shown.splitlines() if line.count("│") == 4}


def test_each_slice_shows_the_figure_its_gate_compared(capsys):
    from modelloop.ui import render_retrain

    figures = {"chrf": 0.4, "perplexity": 6.0}
    render_retrain(_decision({"recent_metric": "chrf", "holdout_metric": "perplexity"},
                             "chrf (recent), perplexity (holdout)", dict(figures), dict(figures)))
    rows = _rows(capsys.readouterr().out)
    assert rows == {"holdout (48 rows), perplexity": ["6.0000", "6.1200"], "recent (12 rows), chrf": ["0.4000", "0.5000"]}


def test_one_figure_for_both_slices_keeps_the_plain_table(capsys):
    from modelloop.ui import render_retrain

    render_retrain(_decision({"recent_metric": "f1_macro", "holdout_metric": "f1_macro"}, "f1_macro",
                             {"f1_macro": 0.7}, {"f1_macro": 0.5}))
    shown = capsys.readouterr().out
    assert "f1_macro on the same rows" in shown
    assert _rows(shown) == {"holdout (48 rows)": ["0.7000", "0.7140"], "recent (12 rows)": ["0.5000", "0.6000"]}


def test_the_summary_says_how_many_earlier_slice_rows_returned_to_training(capsys):
    from modelloop.ui import render_retrain

    slice_ = {"earlier_slices": {"rows": 120, "kept": 30, "returned_to_training": 80, "to_test": 10}}
    render_retrain(_decision({"recent_metric": "f1_macro", "holdout_metric": "f1_macro", "recent_slice": slice_},
                             "f1_macro", {"f1_macro": 0.7}, {"f1_macro": 0.5}))
    assert ("earlier recent slices: 80 of their 120 rows returned to training, 10 joined the frozen holdout with "
            "their group, 30 stay in the recent slice with their group") in " ".join(capsys.readouterr().out.split())
    render_retrain(_decision({"recent_metric": "f1_macro", "holdout_metric": "f1_macro",
                              "recent_slice": {"earlier_slices": {"rows": 0, "kept": 0, "returned_to_training": 0,
                                                                  "to_test": 0}}},
                             "f1_macro", {"f1_macro": 0.7}, {"f1_macro": 0.5}))
    assert "earlier recent slices" not in capsys.readouterr().out  # a first retrain: no earlier slice
