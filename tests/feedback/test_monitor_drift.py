"""Drift alerts on the fraud example: a timestamp is compared by the parts the model uses, not by the
raw time that moves on every run, and an alert names the test that found the drift."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pandas as pd
import pytest

from modelloop import Project, parse_config
from modelloop.config import Config
from modelloop.examples.fraud import generate_transactions
from modelloop.registry import load_model, resolve_model

COLUMNS = ["transaction_id", "timestamp", "amount", "merchant_category", "channel", "is_fraud"]


def _config(root, **monitor) -> Config:
    return parse_config({"name": "tx", "data": {"source": "tx.csv", "target": "is_fraud", "id": "transaction_id"},
                         "train": {"trials": 2, "cv_folds": 2, "families": ["linear"], "ensemble": False},
                         "monitor": {"min_rows": 100, **monitor}}, root=root)


def _log_traffic(p: Project, df: pd.DataFrame) -> None:
    """What the server logs for each request: its JSON inputs and the production model's answer."""
    ws = p.workspace
    row = resolve_model(ws)
    inputs = df.drop(columns=["is_fraud"])
    labels = load_model(ws, row).predict(inputs)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    records = json.loads(inputs.to_json(orient="records", date_format="iso"))
    ws.catalog.add_predictions([
        {"request_id": uuid.uuid4().hex, "name": row["name"], "version": row["version"],
         "at": now + dt.timedelta(milliseconds=i), "inputs": rec, "output": {"label": int(labels[i])},
         "latency_ms": 1.0} for i, rec in enumerate(records)])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A quick model on 1500 transactions of the first quarter (90 days), then 800 requests of the next
    quarter (later timestamps, amounts ~40% higher, new merchant categories)."""
    root = tmp_path_factory.mktemp("drift")
    generate_transactions(1500, seed=0)[COLUMNS].to_csv(root / "tx.csv", index=False)
    p = Project(_config(root))
    p.run()
    _log_traffic(p, generate_transactions(800, seed=11, shift=True)[COLUMNS])
    return p


def test_a_timestamp_is_compared_by_its_parts_and_its_range_describes_the_window(served: Project) -> None:
    mon = served.monitor()
    features = mon["drift"]["features"]
    stamp = sorted(c for c in features if c.startswith("timestamp"))
    # 90 days of training rows cover a day, a week and a month, not a year; raw time is never compared
    assert stamp == ["timestamp:day", "timestamp:dayofweek", "timestamp:hour"], stamp
    assert not any(features[c]["drifted"] for c in stamp), {c: features[c] for c in stamp}
    assert not any(a["feature"] and a["feature"].startswith("timestamp") for a in mon["alerts"])
    window = mon["window"]["time_columns"]["timestamp"]
    assert window["training_from"][:7] == "2024-01" and window["training_to"][:7] == "2024-03"
    assert window["from"][:7] == "2024-04" and window["to"] > window["from"]
    assert window["compared"] == ["timestamp:day", "timestamp:dayofweek", "timestamp:hour"]
    assert "amount" in mon["drifted_features"]  # the real change is still seen


def test_an_alert_names_the_test_that_fired(served: Project) -> None:
    """With PSI out of reach, the KS test alone finds the amounts' drift: the alert says so, with its
    statistic and p-value, and quotes no PSI under its threshold."""
    mon = Project(_config(served.workspace.root, psi_threshold=50.0)).monitor()
    (alert,) = [a for a in mon["alerts"] if a["feature"] == "amount"]
    d = mon["drift"]["features"]["amount"]
    assert alert["test"] == "ks" and alert["statistic"] == d["ks"] and alert["p_value"] == d["p_value"] < 0.01
    assert alert["score"] == d["psi"] < alert["threshold"] == 50.0  # the existing keys keep their meaning
    assert "KS test statistic" in alert["message"] and "p-value" in alert["message"]
    assert "PSI" not in alert["message"]
    for a in mon["alerts"]:
        if a["kind"].endswith("_drift"):
            assert a["test"] in ("ks", "chi2") and "PSI" not in a["message"], a


@pytest.mark.parametrize(("days", "parts"), [(0.5, []), (1, ["hour"]), (10, ["dayofweek", "hour"]),
                                             (90, ["day", "dayofweek", "hour"]),
                                             (400, ["day", "dayofweek", "hour", "month"])])
def test_a_part_is_compared_once_training_spans_its_cycle(days: float, parts: list[str]) -> None:
    from modelloop.data.schema import Schema
    from modelloop.feedback.monitor import time_parts

    start = pd.Timestamp("2024-01-01")
    reference = pd.DataFrame({"t": pd.date_range(start, start + pd.Timedelta(days=days), periods=500),
                              "x": 1.0})
    current = pd.DataFrame({"t": [(start + pd.Timedelta(days=days + 30)).isoformat()], "x": [1.0]})
    ref, cur, described = time_parts(reference, current, Schema(columns={"t": "datetime", "x": "numeric"}))
    assert sorted(ref.columns) == sorted(cur.columns) == [f"t:{p}" for p in parts]
    assert described["t"]["from"] == described["t"]["to"] == current["t"][0]
    assert described["t"]["training_from"] == start.isoformat()


def test_the_reference_is_read_once_per_version_and_each_caller_gets_its_own_copy(
        served: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard asks for drift once per day shown: the training rows and the model's answers on them
    are the same each time, so the snapshot is read and the model answers once, and a caller converting
    columns (drift_report does) does not change what the next one gets."""
    import modelloop.data.ingest as ingest
    from modelloop.feedback import monitor as mon

    ws = served.workspace
    row = resolve_model(ws)
    mon._TRAINING_ROWS.clear()
    mon._REFERENCE_OUTPUTS.clear()
    reads: list[str] = []
    real = ingest.load_dataset

    def counted(ws_, ref=None):  # a spy that calls the real reader
        reads.append(ref)
        return real(ws_, ref)

    monkeypatch.setattr(ingest, "load_dataset", counted)
    recent = ws.catalog.recent_predictions(ws.config.name, limit=500)
    first = mon.drift_report(ws, row, recent)
    first_rows = mon.training_rows(ws, row)
    first_rows["amount"] = -1.0  # a caller's change stays in its copy
    second = mon.drift_report(ws, row, recent)
    assert len(reads) == 1, reads
    assert mon.training_rows(ws, row)["amount"].min() >= 0
    assert second["features"] == first["features"] and second["prediction"] == first["prediction"]
    assert len(mon._REFERENCE_OUTPUTS) == 1
