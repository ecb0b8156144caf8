"""What `modelloop monitor` says of an anomaly model from the verdicts that came back: `v1 all: n=40` and
nothing else before, so a team could not see how many of its alerts were real. Now the alerts' precision
(the flagged answers confirmed) and the recall of the confirmed anomalies (those the model flagged)."""

from __future__ import annotations

import pytest

from modelloop.families.heads import AnomalyHead


def test_live_figures_read_the_served_flag_against_the_verdicts():
    head = AnomalyHead("anomaly", ["normal", "anomaly"], 0.98)
    # the API keeps the verdict itself, a file's import the label column's value: both count
    labels = ["confirmed", "anomaly", "false_alarm", "normal", "confirmed"]
    outputs = [{"is_anomaly": True}, {"is_anomaly": True}, {"is_anomaly": True}, {"is_anomaly": False},
               {"is_anomaly": False}]
    figures = head.live_figures(labels, outputs)
    assert figures == {"precision_at_budget": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3)}
    assert set(figures) == set(AnomalyHead.live_metrics)


def test_verdicts_that_cannot_say_a_figure_give_none():
    head = AnomalyHead("anomaly")  # no label column: the classes are the verdicts
    quiet = head.live_figures(["false_alarm", "false_alarm"], [{"is_anomaly": False}, None])
    assert quiet == {"precision_at_budget": None, "recall": None}  # nothing flagged, nothing confirmed
    assert head.live_figures(["confirmed"], [{"is_anomaly": True}]) == {"precision_at_budget": 1.0, "recall": 1.0}
