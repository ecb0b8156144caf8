"""Which new feedback rows the retrain's recent slice holds (``feedback.recent.choose_recent``): the latest
share, unless the gate's class figure cannot compare models there. The whole retrain is in test_loop.py."""

from __future__ import annotations

import pandas as pd

from modelloop.feedback.recent import choose_recent


def _feedback(labels: list) -> pd.DataFrame:
    return pd.DataFrame({"_row_id": range(len(labels)), "y": labels})  # oldest first


def test_a_class_averaged_figure_gets_every_class_of_the_feedback():
    """Multiclass feedback whose latest 30% misses class 'a': f1_macro would score 'a' 0 for every model,
    so each class gives its own latest 30%; accuracy only needs two classes and keeps the latest share."""
    fb = _feedback(["a"] * 8 + ["b"] * 8 + ["c"] * 2 + ["b"] * 2)
    ids, note = choose_recent(fb, 0.3, "y", "f1_macro")
    assert sorted(ids) == [6, 7, 15, 17, 18, 19]  # a's last 2, b's last 3, c's last 1
    assert note == {"how": "latest_of_each_class", "rows": 6, "fraction": 0.3, "classes": {"b": 3, "a": 2, "c": 1},
                    "feedback_classes": 3, "latest_classes": {"b": 4, "c": 2}, "latest_rows": 6}
    ids, note = choose_recent(fb, 0.3, "y", "accuracy")
    assert sorted(ids) == list(range(14, 20)) and note["how"] == "latest"


def test_one_class_of_feedback_or_a_figure_of_no_class_keeps_the_latest_share():
    """No slice of one-class feedback holds two classes (the gate lets the holdout decide), and a regression
    figure has no classes to keep."""
    ids, note = choose_recent(_feedback(["x"] * 10), 0.3, "y", "f1_macro")
    assert sorted(ids) == [7, 8, 9] and note["how"] == "latest" and note["feedback_classes"] == 1
    ids, note = choose_recent(_feedback(["a"] * 5 + ["b"] * 5), 0.3, "y", "rmse")
    assert sorted(ids) == [7, 8, 9] and note == {"how": "latest", "rows": 3, "fraction": 0.3}


def test_verdicts_of_one_kind_last_give_each_verdicts_latest_share_for_precision_at_the_budget():
    """An anomaly gate's precision at the alert budget is 0.0 for every flagging model on false alarms
    alone: confirmed verdicts first and false alarms last give each verdict's latest 30% instead."""
    ids, note = choose_recent(_feedback(["confirmed"] * 10 + ["false_alarm"] * 10), 0.3, "y", "precision_at_budget")
    assert sorted(ids) == [7, 8, 9, 17, 18, 19] and note["how"] == "latest_of_each_class"
    assert note["latest_classes"] == {"false_alarm": 6} and note["classes"] == {"confirmed": 3, "false_alarm": 3}


def test_with_groups_the_slice_takes_whole_groups_latest_first():
    """data.group: the groups whose latest feedback is newest go whole to the slice until it holds the share
    (of each class where the latest one cannot compare models)."""
    fb = _feedback(list("aaaaaaabbb")).assign(g=["G1", "G2", "G1", "G3", "G2", "G4", "G3", "G5", "G5", "G6"])
    ids, note = choose_recent(fb, 0.3, "y", "rmse", group="g")
    assert sorted(ids) == [7, 8, 9] and note["rows"] == 3  # G6, then G5 (its 2 rows) reach the 3 asked for
    ids, note = choose_recent(fb, 0.3, "y", "f1_macro", group="g")  # the latest 3 are all 'b'
    assert sorted(ids) == [3, 6, 9]  # a's 2: G3 whole; b's 1: G6
    assert note["how"] == "latest_of_each_class" and note["classes"] == {"a": 2, "b": 1}
    assert note["groups"] == {"column": "g", "groups": 2, "feedback_groups": 6, "held_by_earlier_slice": 0}


def test_earlier_slices_return_to_training_but_the_groups_the_new_slice_takes():
    """The rows of earlier slices leave the recent side (the next model learns them), except those of a
    group the new slice takes: a group's rows stay on one side. They do not pull their groups in."""
    fb = _feedback(list("aaaaaaabbb")).assign(g=["G1", "G2", "G1", "G3", "G2", "G4", "G3", "G5", "G5", "G6"])
    earlier = pd.DataFrame({"_row_id": [100, 101, 102, 103], "g": ["G5", "G1", "G9", "G5"]})
    ids, note = choose_recent(fb, 0.3, "y", "rmse", group="g", earlier=earlier)
    assert sorted(ids) == [7, 8, 9, 100, 103] and note["rows"] == 3  # G1 (held before) is not pulled in
    assert note["earlier_slices"] == {"rows": 4, "kept": 2} and note["groups"]["held_by_earlier_slice"] == 1
    ids, note = choose_recent(fb, 0.3, "y", "f1_macro", group="g", earlier=earlier)
    assert sorted(ids) == [3, 6, 9] and note["earlier_slices"] == {"rows": 4, "kept": 0}  # G3, G6
    ids, note = choose_recent(fb, 0.3, "y", "rmse", earlier=earlier)  # no data.group: every row returns
    assert sorted(ids) == [7, 8, 9] and note["earlier_slices"] == {"rows": 4, "kept": 0} and "groups" not in note
