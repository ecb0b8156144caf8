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


def test_an_alert_budget_is_per_1000_records_or_per_day():
    per_day = parse_config(_cfg(data={"source": "d.csv", "time": "t"}, anomaly={"alert_budget": "20 per day"}))
    assert per_day.anomaly.per_day == 20.0
    for written in ("5 per 1000", "5/1,000", 5, "5"):
        assert parse_config(_cfg(anomaly={"alert_budget": written})).anomaly.share == 0.005


@pytest.mark.parametrize("value", ["lots", "20 per week", 600, "0 per day", True])
def test_an_alert_budget_of_another_form_names_the_key_and_the_forms(value):
    with pytest.raises(ConfigError, match=r'^anomaly\.alert_budget: must be alerts per 1,000 records \(a number in '
                                          r'\(0, 500\), or "5 per 1000"\) or alerts per day \("20 per day"'):
        parse_config(_cfg(anomaly={"alert_budget": value}))


def test_an_alert_budget_per_day_needs_a_time_column():
    with pytest.raises(ConfigError, match=r"^anomaly\.alert_budget: '20 per day' \(alerts per day\) needs data\.time"):
        parse_config(_cfg(anomaly={"alert_budget": "20 per day"}))


def test_the_time_window_is_a_duration_or_null():
    assert parse_config(_cfg(anomaly={"window": "30min"})).anomaly.window_seconds == 1800.0
    assert parse_config(_cfg(anomaly={"window": None})).anomaly.window_seconds is None
    with pytest.raises(ConfigError, match=r"^anomaly\.window: must be a duration such as '1h', '30min' or '2d'"):
        parse_config(_cfg(anomaly={"window": "soon"}))
