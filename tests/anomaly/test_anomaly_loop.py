"""The loop on an anomaly model: analysts' verdicts through /v1/feedback and `modelloop feedback`, then
`modelloop retrain`, whose gate compares precision at the alert budget on the recent verdicts and
ROC-AUC on the labelled holdout."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
import yaml
from anomaly_toy import sensors_config, write_sensors
from clirun import cli
from servers import predict_all, running

from modelloop.serving import ServeConfig, create_app


# [sparse] is slow-marked (about 15-25 s): [none] runs the same CLI loop (run, serve, API and file verdicts, bad
# verdicts, retrain, gate) in the default run, and test_stage's
# test_the_gate_figures_on_a_labelled_holdout_and_verdicts_as_label_values covers what labels add (the
# holdout's ROC-AUC, verdicts read as the label column's values) on the session project.
@pytest.mark.parametrize("labels", [pytest.param("sparse", marks=pytest.mark.slow), "none"])
def test_verdicts_come_back_and_retrain_gates_on_precision_at_the_budget(tmp_path, capsys, labels):
    from modelloop.examples.sensors import generate_sensors

    path = write_sensors(tmp_path, rows=800, seed=0)
    raw = sensors_config()
    if labels == "none":  # no label column at all and no data.target: the verdicts are the only labels
        pd.read_csv(path).drop(columns=["incident"]).to_csv(path, index=False)
        del raw["data"]["target"]
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    code, out, err = cli(["run", "--json"], capsys, tmp_path)
    assert code == 0, err
    selection = json.loads(out)["selection"]
    if labels == "none":  # no label: the summary states the unsupervised signals behind each member's weight
        members = {m["detector"]: m["weight"] for m in json.loads(out)["detectors"]}
        assert set(selection["stability"]) == set(selection["consensus_agreement"]) == set(members)
        assert "stability under subsampling" in selection["why"]
        from modelloop.families.anomaly.search import unsupervised_weights

        expected = unsupervised_weights(selection["consensus_agreement"], selection["stability"])
        assert members == pytest.approx(expected, abs=2e-3)
        code, _, err = cli(["optimize"], capsys, tmp_path)  # no label to measure a variant's change on
        assert code == 2 and "no label column (data.target is not set)" in err and "Traceback" not in err
        code, out, err = cli(["evaluate", "--json"], capsys, tmp_path)  # no label anywhere: the alert figures
        assert code == 0, err
        assert json.loads(out)["labelled"] == 0 and json.loads(out)["metrics"]["alerts_per_1000"] > 0
    from modelloop.project import Project

    ws = Project.load(str(tmp_path / "modelloop.yaml")).workspace
    live = generate_sensors(1200, seed=7, with_kind=True)  # new traffic, its planted kind known
    records = json.loads(live.drop(columns=["incident", "kind"]).to_json(orient="records"))
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        answers = predict_all(url, records)  # each prediction carries its own request_id
        with httpx.Client(base_url=url, timeout=60) as client:
            alerts = [i for i, a in enumerate(answers) if a["is_anomaly"]]
            assert len(alerts) >= 20
            bad = client.post("/v1/feedback", json={"request_id": answers[alerts[0]]["request_id"], "label": "maybe"})
            assert bad.status_code == 422
            assert bad.json()["message"] == 'body.label: must be a verdict, confirmed or false_alarm, got "maybe"'
            unknown = client.post("/v1/feedback", json={"request_id": "nope", "label": "confirmed"})
            assert unknown.status_code == 404
            verdict = lambda i: "confirmed" if live["kind"].iloc[i] else "false_alarm"  # noqa: E731
            for i in alerts[:10]:
                r = client.post("/v1/feedback", json={"request_id": answers[i]["request_id"], "label": verdict(i)})
                assert r.status_code == 201, r.text
    rows = [{"request_id": answers[i]["request_id"], "label": verdict(i)} for i in alerts[10:60]]
    calm = [i for i, a in enumerate(answers) if not a["is_anomaly"]]
    pd.DataFrame([*rows, {"request_id": answers[calm[0]]["request_id"], "label": "perhaps"}]).to_csv(
        tmp_path / "verdicts.csv", index=False)
    code, out, err = cli(["feedback", "verdicts.csv", "--json"], capsys, tmp_path)
    assert code == 0, err
    assert (json.loads(out)["accepted"], json.loads(out)["invalid"]) == (len(rows), 1), out
    pd.DataFrame([{"request_id": answers[calm[1]]["request_id"], "label": "yes"}]).to_csv(tmp_path / "bad.csv", index=False)
    code, _, err = cli(["feedback", "bad.csv"], capsys, tmp_path)
    assert code == 2 and "invalid labels" in err
    # the anomaly model's rule, not 'one of the model's classes (or a number for regression)': its classes
    # (anomaly, normal) are not what a feedback file gives
    assert err.rstrip().endswith("returned; label: must be a verdict, confirmed or false_alarm, got 'yes'"), err

    code, out, err = cli(["retrain", "--json"], capsys, tmp_path)
    assert code == 0, err
    decision = json.loads(out)
    assert decision["metric"] == "precision_at_budget (recent), roc_auc (holdout)"
    champion, challenger = decision["champion"]["metrics"], decision["challenger"]["metrics"]
    assert {"precision_at_budget", "roc_auc"} <= set(challenger["recent"])
    assert ("roc_auc" in challenger["holdout"]) == (labels == "sparse")  # no labelled holdout: no figure
    gate = decision["gate"]
    # no labelled holdout: nothing to fall on (holdout_drop null), the recent verdicts decide
    assert (gate["holdout_drop"] is None) == (labels == "none"), gate
    assert decision["promoted"] == (gate["recent_gain"] > 0 and (gate["holdout_drop"] or 0) <= gate["max_holdout_drop"])
    assert champion["recent"]["precision_at_budget"] is not None
    from modelloop.data.ingest import load_dataset
    from modelloop.families import label_column

    _, merged, _ = load_dataset(ws, decision["dataset"])  # the verdicts are in the new dataset version
    column = label_column(ws.config)
    assert column == ("incident" if labels == "sparse" else "_verdict")
    fed = merged[merged["_origin"] == "feedback"].set_index("_request_id")[column]
    sent = {answers[i]["request_id"]: verdict(i) for i in alerts[:60]}
    assert decision["added_rows"] == len(sent) == len(fed)
    assert {r: ("confirmed" if v in ("confirmed", "anomaly") else "false_alarm") for r, v in fed.items()} == sent
