"""The anomaly family end to end: partial labels, what the summary says, reasons, served own rows, and
the bad inputs a user meets (exit 2, one line)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from clirun import cli
from servers import predict_all, running

from modelloop.serving import ServeConfig, create_app


def test_the_summary_says_what_was_chosen_and_the_label_is_never_a_feature(sensors):
    project, summary, path = sensors
    assert summary["family"] == "anomaly" and summary["task"] == "anomaly"
    sel = summary["selection"]
    assert sel["method"] == "average_precision" and sel["labels"] > 0 and sel["why"]
    assert sel["chosen"] in {*sel["average_precision"]}
    assert sel["labelled_anomalies"] >= 5 and "weighted by average precision" in sel["why"]
    assert set(sel["weights"]) <= set(sel["average_precision"])
    assert "incident" not in summary["features"]["used"] and "reading_id" not in summary["features"]["used"]
    m = summary["test_metrics"]
    assert {"roc_auc", "pr_auc", "precision_at_budget", "recall"} <= set(m)
    assert m["roc_auc"] > 0.8  # the planted anomalies are found among the labelled test rows


def test_the_gate_figures_on_a_labelled_holdout_and_verdicts_as_label_values(sensors):
    """What a label column adds to the loop (the retrain gate scores slices with evaluate_model)."""
    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.evaluation.evaluate import evaluate_model
    from modelloop.families.heads import head_for
    from modelloop.registry import load_model, resolve_model

    project, summary, _ = sensors
    ws = project.workspace
    row = resolve_model(ws)
    drow, df, _ = load_dataset(ws, row["dataset_id"])
    holdout = df[ensure_split(ws, drow, df) == "test"]
    figures = evaluate_model(load_model(ws, row), holdout, target="incident", task="anomaly")["metrics"]
    assert figures["roc_auc"] == pytest.approx(summary["test_metrics"]["roc_auc"])
    assert {"precision_at_budget", "alerts_per_day"} <= set(figures)
    head = head_for(row["info"])  # an analyst's verdict is stored as the label column's value
    assert (head.check_label("confirmed"), head.check_label("false_alarm")) == ("anomaly", "normal")
    verdicts = pd.Series(["confirmed", "anomaly", "false_alarm", "normal"])
    assert head.truth(verdicts, "incident").tolist() == [1, 1, 0, 0]  # the API's verdicts and the values alike


def test_an_alert_budget_per_day_draws_the_line_at_the_training_rows_rate(sensors):
    from anomaly_toy import PER_DAY

    project, summary, path = sensors
    budget = summary["selection"]["budget"]
    times = pd.to_datetime(pd.read_csv(path)["timestamp"])  # the traffic: every row (not only the train split)
    assert budget["alert_budget"] == "2 per day" and budget["alerts_per_day"] == PER_DAY
    days = (times.max() - times.min()).total_seconds() / 86400
    assert budget["records_per_day"] == pytest.approx(len(times) / days, rel=1e-3)
    assert budget["share"] == pytest.approx(PER_DAY / budget["records_per_day"], rel=1e-4)
    assert summary["threshold"] == pytest.approx(1 - budget["share"])
    m = summary["test_metrics"]  # the test split's flagged share, as alerts a day of such traffic raises
    assert m["alerts_per_day"] == pytest.approx(m["alerts_per_1000"] / 1000 * budget["records_per_day"], rel=1e-3)
    page = open(summary["report"], encoding="utf-8").read()
    assert f"alert line: alert_budget 2 per day at {budget['records_per_day']:g} records a day" in page
    # the standard page: the score distribution by verdict, and the curves the labelled test rows allow;
    # the alert counts among the facts, not in the table of figures that are better high
    assert "<h2>Score distribution</h2>" in page and "<h2>ROC curve</h2>" in page and "<h2>Confusion matrix</h2>" in page
    assert "<td>alerts_per_day</td>" not in page and "<dt>alerts per day</dt>" in page


def test_served_answers_carry_reasons_and_equal_offline_for_the_training_rows(sensors):
    from modelloop.data.sources import read_table
    from modelloop.families.heads import head_for
    from modelloop.registry import load_model, resolve_model

    project, _, path = sensors
    ws = project.workspace
    records = json.loads(pd.read_csv(path).drop(columns=["incident"]).to_json(orient="records"))
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        served = predict_all(url, records)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    flagged_count = sum(a["is_anomaly"] for a in served)
    assert f"modelloop_anomaly_records_total {float(len(served))}" in metrics
    assert f"modelloop_anomaly_alerts_total {float(flagged_count)}" in metrics
    share = round(1 - resolve_model(ws)["info"]["threshold"], 6)  # 2 alerts a day at the training rows' rate
    assert f'modelloop_anomaly_expected_share{{name="sensors"}} {share}' in metrics
    row = resolve_model(ws)
    model, head = load_model(ws, row), head_for(row["info"])
    frame, _ = read_table(str(path))
    offline = head.record_outputs(model.predict_proba(frame.drop(columns=["incident"])), records)
    assert [a["is_anomaly"] for a in served] == [a["is_anomaly"] for a in offline]
    np.testing.assert_allclose([a["score"] for a in served], [a["score"] for a in offline], atol=1e-6)
    def why(answers):  # a reason's value is the record's, as the server read it (an ISO time for a datetime)
        return [[(r["feature"], r["contribution"]) for r in a["reasons"]] for a in answers]

    assert why(served) == why(offline)
    flagged = [a for a in served if a["is_anomaly"]]
    times = pd.to_datetime(frame["timestamp"])
    days = (times.max() - times.min()).total_seconds() / 86400
    assert 1.0 < len(flagged) / days < 3.0  # the budget: 2 alerts a day over the two weeks of readings
    assert all(a["reasons"] and set(a) == {"request_id", "score", "is_anomaly", "reasons"} for a in flagged)
    top = max(range(len(served)), key=lambda i: served[i]["score"])
    reason = served[top]["reasons"][0]
    assert set(reason) == {"feature", "value", "contribution"} and reason["value"] == records[top][reason["feature"]]


def test_a_spiked_reading_names_the_spiked_column_first(sensors):
    project, _, path = sensors
    from modelloop.serving.runtime import load_runtime

    rt = load_runtime(project.workspace)
    record = json.loads(pd.read_csv(path).drop(columns=["incident"]).head(1).to_json(orient="records"))[0]
    record["temperature_c"] = 250.0
    answer = rt.predict(rt.validator.validate_json(json.dumps({"records": [record]}).encode()))[0]
    assert answer["is_anomaly"] and answer["reasons"][0]["feature"] == "temperature_c"
    assert answer["reasons"][0]["value"] == 250.0


def _project(tmp_path, df: pd.DataFrame, **raw) -> None:
    df.to_csv(tmp_path / "d.csv", index=False)
    cfg = {"name": "bad", "task": "anomaly_detection", "data": {"source": "d.csv", **raw.pop("data", {})},
           "train": {"trials": 2}, **raw}
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(cfg))


def test_predict_names_a_chinese_feature_in_the_reasons_column_as_written(tmp_path, capsys):
    # json.dumps escaped non-ASCII: the reasons column read ["\u91d1\u989d"] for ["金额"] (fixed in 896b7ea)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"金额": rng.normal(100, 5, 300).round(2), "数量": rng.integers(1, 5, 300)})
    _project(tmp_path, df, anomaly={"detectors": ["knn"]}, train={"trials": 1, "budget": 10})
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 0, err
    df.head(20).assign(金额=[1e6] + [100.0] * 19).to_csv(tmp_path / "new.csv", index=False)
    code, _, err = cli(["predict", "--data", "new.csv", "--out", "out.csv"], capsys, tmp_path)
    assert code == 0, err
    out = pd.read_csv(tmp_path / "out.csv")
    reasons = out["reasons"].iloc[0]  # as the file holds it (json.loads would undo the escapes)
    assert out["is_anomaly"].iloc[0] and '"金额"' in reasons and "\\u" not in reasons, reasons
    assert "\\u" not in (tmp_path / "out.csv").read_text(encoding="utf-8-sig")


@pytest.mark.parametrize("df,data,says", [
    (pd.DataFrame({"id": [f"r{i}" for i in range(50)], "label": [None] * 49 + ["anomaly"]}),
     {"id": "id", "target": "label"}, "no usable feature for anomaly detection: no feature column"),
    (pd.DataFrame({"a": [1.0] * 50, "b": ["x"] * 50}), {}, "only constant columns (a, b)"),
])
def test_a_table_without_a_usable_feature_exits_2_naming_it(tmp_path, capsys, df, data, says):
    _project(tmp_path, df, data=data)
    code, out, err = cli(["run"], capsys, tmp_path)
    assert code == 2, err
    assert says in err and "Traceback" not in err
    assert not list((tmp_path / ".modelloop").glob("models/*")), "nothing half-written"


def test_a_contamination_outside_the_range_exits_2_naming_the_key(tmp_path, capsys):
    _project(tmp_path, pd.DataFrame({"a": range(20)}), anomaly={"contamination": 0.6})
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2 and "anomaly.contamination: must be in (0, 0.5)" in err and "got 0.6" in err


def test_an_alert_budget_per_day_that_would_flag_half_the_records_exits_2(tmp_path, capsys):
    times = pd.date_range("2025-01-01", periods=40, freq="h")  # 24 records a day
    _project(tmp_path, pd.DataFrame({"a": np.arange(40.0), "t": times}), data={"time": "t"},
             anomaly={"alert_budget": "20 per day"})
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2 and "anomaly.alert_budget: '20 per day' would flag" in err and "allowed: fewer than" in err
    assert "Traceback" not in err and not list((tmp_path / ".modelloop").glob("models/*"))


def test_a_window_by_column_that_is_not_a_feature_exits_2_naming_the_allowed(tmp_path, capsys):
    times = pd.date_range("2025-01-01", periods=60, freq="h")
    _project(tmp_path, pd.DataFrame({"a": np.arange(60.0), "t": times, "id": [f"r{i}" for i in range(60)]}),
             data={"time": "t", "id": "id"}, anomaly={"window_by": "id"})
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2 and "anomaly.window_by: column 'id' is not a feature column the detectors use; allowed:" in err
    assert "Traceback" not in err and not list((tmp_path / ".modelloop").glob("models/*"))


def test_a_label_column_with_three_values_exits_2_naming_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    _project(tmp_path, pd.DataFrame({"a": rng.normal(size=60), "y": ["x", "y", "z"] * 20}), data={"target": "y"})
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2 and "data.target: an anomaly label column holds two values" in err and "'y'" in err


def test_drift_covers_the_features_and_the_score_distribution(sensors):
    from modelloop.feedback.monitor import drift_report
    from modelloop.registry import resolve_model
    from modelloop.serving.runtime import load_runtime

    project, _, path = sensors
    ws = project.workspace
    rt = load_runtime(ws)
    frame = pd.read_csv(path).drop(columns=["incident"]).head(400)
    frame["temperature_c"] += 25.0  # the hall got hot: inputs and scores move
    records = rt.validator.validate_json(json.dumps({"records": json.loads(
        frame.to_json(orient="records"))}).encode())
    recent = [{"inputs": r, "output": o} for r, o in zip(records, rt.predict(records), strict=True)]
    report = drift_report(ws, resolve_model(ws), recent)
    assert report["features"]["temperature_c"]["drifted"]
    assert report["prediction"] is not None and report["prediction"]["drifted"]  # the score distribution
