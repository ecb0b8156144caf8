"""The anomaly task's config: an optional target, the threshold keys and their one-line errors."""

from __future__ import annotations

import pytest

from modelloop.config import parse_config
from modelloop.errors import ConfigError


def _cfg(**extra):
    return {"task": "anomaly_detection", "data": {"source": "d.csv"}, **extra}


def test_anomaly_detection_needs_no_target_and_splits_at_random():
    cfg = parse_config(_cfg())
    assert cfg.data.target is None and cfg.split.strategy == "random"
    assert cfg.metric == "pr_auc" and cfg.anomaly.share == 0.01
    assert parse_config(_cfg(anomaly={"alert_budget": 5})).anomaly.share == 0.005


@pytest.mark.parametrize("value", [0, 0.5, 0.7, -0.1])
def test_a_contamination_outside_zero_to_half_names_the_key(value):
    with pytest.raises(ConfigError, match=r"^anomaly\.contamination: .*0\.5.*got " + str(value)):
        parse_config(_cfg(anomaly={"contamination": value}))


def test_contamination_and_alert_budget_together_are_refused():
    with pytest.raises(ConfigError, match="anomaly.contamination or anomaly.alert_budget, not both"):
        parse_config(_cfg(anomaly={"contamination": 0.01, "alert_budget": 3}))


def test_other_tasks_still_require_a_target_and_refuse_the_anomaly_section():
    with pytest.raises(ConfigError, match=r"^data.target: required, but missing$"):
        parse_config({"task": "classification", "data": {"source": "d.csv"}})
    with pytest.raises(ConfigError, match=r"anomaly: only used by task: anomaly_detection"):
        parse_config({"data": {"source": "d.csv", "target": "y"}, "anomaly": {"contamination": 0.1}})
