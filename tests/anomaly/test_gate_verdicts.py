"""The retrain gate of an anomaly model when the recent verdicts are of one kind: precision at the alert
budget (the share of flagged records the analysts confirmed) is 0.0 on false alarms alone for every model
that flags anything, and missing for one that flags nothing, so it cannot compare two models there. The
gate says so in the verdicts' terms and decides on what can: the labelled holdout's ROC-AUC, or nothing
(the champion stays) when there is no labelled row. Verdicts of both kinds with no labelled row: the recent
slice decides and the holdout is said to be unchecked, not to have dropped by 0."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from anomaly_toy import sensors_config, write_sensors
from servers import predict_all, running

from modelloop.serving import ServeConfig, create_app


def _project(tmp_path, labels: bool):
    from modelloop.project import Project

    path = write_sensors(tmp_path, rows=700, seed=3)
    raw = sensors_config()
    raw["train"] = {"budget": 20, "trials": 3}
    raw["anomaly"]["detectors"] = ["iforest", "ecod", "knn"]
    # stratified: the holdout keeps some of the 7 labelled anomalies (random without labels)
    raw["split"] = {"strategy": "stratified" if labels else "random", "test_size": 0.3}
    if not labels:  # a table of readings without a label column: the verdicts are the only labels
        pd.read_csv(path).drop(columns=["incident"]).to_csv(path, index=False)
        del raw["data"]["target"]
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    project = Project.load(str(tmp_path / "modelloop.yaml"))
    project.ingest()
    project.train()
    return project, path


def _false_alarms(project, tmp_path, path, n: int) -> list[dict]:
    """The top ``n`` scores of the training rows, served, all called false alarms: half through the API
    (stored as 'false_alarm'), then half in a file (stored as the label column's normal value)."""
    import httpx

    from modelloop.feedback.store import import_feedback

    records = json.loads(pd.read_csv(path).drop(columns=["incident"], errors="ignore").to_json(orient="records"))
    with running(create_app(project.workspace, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        answers = predict_all(url, records)
        top = sorted(answers, key=lambda a: -a["score"])[:n]
        with httpx.Client(base_url=url, timeout=60) as client:
            for a in top[: n // 2]:
                assert client.post("/v1/feedback", json={"request_id": a["request_id"],
                                                         "label": "false_alarm"}).status_code == 201
    pd.DataFrame({"request_id": [a["request_id"] for a in top[n // 2:]], "label": "false_alarm"}).to_csv(
        tmp_path / "verdicts.csv", index=False)  # the server has stopped: every answer is in the log
    assert import_feedback(project.workspace, str(tmp_path / "verdicts.csv"))["accepted"] == n - n // 2
    return top


def test_false_alarms_alone_let_the_labelled_holdout_decide(tmp_path):
    project, path = _project(tmp_path, labels=True)
    top = _false_alarms(project, tmp_path, path, 40)
    assert sum(a["is_anomaly"] for a in top) >= 10  # the champion flags some of them: its precision there is 0.0
    res = project.retrain()
    gate = res["gate"]
    recent = gate["recent_slice"]
    # the file's 'normal' and the API's 'false_alarm' are one class: the verdicts hold it alone
    assert recent["classes"] == {"normal": res["rows"]["recent"]} and recent["feedback_classes"] == 1, recent
    assert recent["compares"] is False and gate["judged_on"] == "holdout" and gate["recent_gain_interval"] is None
    ch, cl = (res[m]["metrics"]["holdout"]["roc_auc"] for m in ("champion", "challenger"))
    assert res["promoted"] is (cl - ch > 0), res["reason"]
    assert res["reason"].startswith(
        f"the recent slice ({res['rows']['recent']} rows) holds only class 'normal' (so does all the new "
        "feedback): precision_at_budget cannot compare models there, so the frozen holdout decides: "
        "challenger "), res["reason"]
    assert f"{cl - ch:+.4f} roc_auc" in res["reason"]


def test_false_alarms_alone_and_no_labelled_holdout_keep_the_champion(tmp_path):
    project, path = _project(tmp_path, labels=False)
    _false_alarms(project, tmp_path, path, 40)
    res = project.retrain()
    gate = res["gate"]
    assert gate["recent_slice"]["classes"] == {"false_alarm": res["rows"]["recent"]}, gate
    assert gate["judged_on"] == "none" and res["promoted"] is False and res["challenger"]["metrics"]["holdout"] == {}
    assert res["reason"] == (
        f"the recent slice ({res['rows']['recent']} rows) holds only class 'false_alarm' (so does all the new "
        "feedback): precision_at_budget cannot compare models there, and the frozen holdout holds no labelled "
        "row, where roc_auc cannot compare models either: the champion stays")


# the analysts call the champion's alerts false and confirm records it let pass: the challenger, which learnt
# from those verdicts, wins on the recent slice (promoted); verdicts alternating on its alerts: it does not
@pytest.mark.parametrize("verdicts, promoted", [("against_the_alerts", True), ("alternating", False)])
def test_verdicts_of_both_kinds_and_no_labelled_holdout_leave_the_holdout_unchecked(tmp_path, verdicts, promoted):
    """An unlabelled project whose recent verdicts compare the models: the recent slice decides, and the
    reason and ``gate.holdout_drop`` (null) say the frozen holdout was not checked, rather than a drop of
    +0.0000 roc_auc it never measured."""
    import httpx

    project, path = _project(tmp_path, labels=False)
    records = json.loads(pd.read_csv(path).to_json(orient="records"))
    with running(create_app(project.workspace, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        top = sorted(predict_all(url, records), key=lambda a: -a["score"])[:40]
        assert 6 <= sum(a["is_anomaly"] for a in top) < 40  # the champion flags some of them, not all
        with httpx.Client(base_url=url, timeout=60) as client:
            for i, a in reversed(list(enumerate(top))):  # the top scores last: they make up the recent slice
                label = ("false_alarm" if a["is_anomaly"] else "confirmed") if verdicts == "against_the_alerts" \
                    else ("confirmed" if i % 2 else "false_alarm")
                assert client.post("/v1/feedback", json={"request_id": a["request_id"],
                                                         "label": label}).status_code == 201
    res = project.retrain()
    gate = res["gate"]
    assert set(gate["recent_slice"]["classes"]) == {"confirmed", "false_alarm"}, gate
    assert gate["recent_slice"]["compares"] is True and gate["judged_on"] == "recent", gate
    assert res["challenger"]["metrics"]["holdout"] == {} and res["champion"]["metrics"]["holdout"] == {}
    assert gate["holdout_drop"] is None, gate
    assert res["promoted"] is promoted is (gate["recent_gain"] > 0), res["reason"]
    start = "challenger beats champion on the recent slice by " if promoted else \
        "challenger does not beat the champion on the recent slice: gain "
    assert res["reason"].startswith(start), res["reason"]
    assert "; the frozen holdout holds no labelled row, so it was not checked" in res["reason"], res["reason"]
    assert "roc_auc" not in res["reason"] and "drops" not in res["reason"], res["reason"]
