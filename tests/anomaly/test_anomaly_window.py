"""Bursts in time: the example plants one, and the time window column (records of the same machine in
the hour before) lets the detectors see it, offline and replayed at serving, from the catalog: a restarted
server keeps its windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from modelloop.examples.sensors import generate_sensors


def test_the_example_plants_a_burst_of_one_machines_readings_within_half_an_hour():
    df = generate_sensors(3000, seed=4, with_kind=True)
    burst = df[df["kind"] == "burst"]
    times = pd.to_datetime(burst["timestamp"])
    assert len(burst) >= 10 and burst["machine"].nunique() == 1
    assert (times.max() - times.min()) <= pd.Timedelta(minutes=30)
    usual = pd.to_datetime(df.loc[df["machine"] == burst["machine"].iloc[0], "timestamp"]).diff().median()
    assert usual > pd.Timedelta(minutes=20)  # the machine usually reports far less often than in the burst


def _after_training(path, rows: int = 1500) -> pd.DataFrame:
    end = pd.to_datetime(pd.read_csv(path)["timestamp"]).max()
    return generate_sensors(rows, seed=3, with_kind=True, start=end.ceil("D"))


def test_the_window_counts_a_burst_and_serving_replays_it_as_offline(sensors):
    from modelloop.registry import load_model, resolve_model
    from modelloop.serving.runtime import load_runtime

    project, summary, path = sensors
    ws = project.workspace
    model = load_model(ws, resolve_model(ws))
    assert model.encoder_.describe()["window"] == {"column": "timestamp", "seconds": 3600.0, "by": "machine"}
    live = _after_training(path)  # the next two weeks: the window counts the live records themselves
    frame = live.drop(columns=["incident", "kind"])
    offline = model.predict_proba(frame)
    rt = load_runtime(ws)
    served = []
    for i in range(0, len(frame), 100):  # batches in time order: each counted against the ones before
        body = json.dumps({"records": json.loads(frame.iloc[i:i + 100].to_json(orient="records"))}).encode()
        served += rt.predict(rt.validator.validate_json(body))
    np.testing.assert_allclose([a["score"] for a in served], offline[:, 0], atol=1e-6)

    burst = np.flatnonzero((live["kind"] == "burst").to_numpy())
    counts = model.encoder_.window_counts(frame)  # readings of the same machine in the hour before
    assert counts[burst].tolist() == list(range(len(burst)))  # each burst reading counts the ones before it
    assert np.median(np.delete(counts, burst)) <= 1
    alone = np.array([model.predict_proba(frame.iloc[[i]])[0, 0] for i in burst])  # no history: count 0
    assert offline[burst, 0].mean() > alone.mean() and offline[burst[-1], 0] > alone[-1]  # the burst adds up
    last = served[burst[-1]]
    assert last["score"] > np.median(offline[:, 0])
    if last["is_anomaly"]:
        assert "machine" in [r["feature"] for r in last["reasons"]]  # the window's deviation is the machine's


def test_datetime_parts_whose_cycle_the_training_rows_do_not_cover_are_left_out(sensors):
    from modelloop.registry import load_model, resolve_model

    project, _, path = sensors
    model = load_model(project.workspace, resolve_model(project.workspace))
    parts = [p for p in model.encoder_.numeric_ if p.startswith("timestamp__")]
    assert sorted(parts) == ["timestamp__dayofweek", "timestamp__hour", "timestamp__window"]  # two weeks: no day
    live = _after_training(path)
    ordinary = live["kind"] == ""
    flagged = model.predict(live.drop(columns=["incident", "kind"])) > model.threshold_
    assert flagged[ordinary.to_numpy()].mean() < 3 * (1 - model.threshold_)  # the next weeks do not all look new


def test_a_restarted_server_keeps_its_windows_and_a_record_sent_twice_counts_once(sensors):
    """The served window lives in the catalog (its anomaly_window table): a second server, started after
    the first stopped, counts each record against the ones the first one scored, and a record sent again
    is not counted twice."""
    from servers import predict_all, running

    from modelloop.registry import load_model, resolve_model
    from modelloop.serving import ServeConfig, create_app

    project, _, path = sensors
    ws = project.workspace
    model = load_model(ws, resolve_model(ws))
    end = pd.to_datetime(pd.read_csv(path)["timestamp"]).max()  # a month after the other tests' traffic
    live = generate_sensors(600, seed=9, with_kind=True, start=end.ceil("D") + pd.Timedelta(days=30))
    live = live.sort_values("timestamp").reset_index(drop=True)
    frame = live.drop(columns=["incident", "kind"])
    offline = model.predict_proba(frame)[:, 0]  # each record counted against every one before it
    records = json.loads(frame.to_json(orient="records"))
    burst = np.flatnonzero((live["kind"] == "burst").to_numpy())
    half = int(burst[len(burst) // 2])  # the first server stops in the middle of a burst
    serve = {"config": ServeConfig(reload_poll_seconds=0), "api_keys": []}
    with running(create_app(ws, **serve)) as url:
        first = predict_all(url, records[:half])
    with running(create_app(ws, **serve)) as url:  # a new server: nothing of the first in its memory
        again = predict_all(url, records[half - 40:half])  # sent twice: counted once (burst records among them)
        second = predict_all(url, records[half:])
    scores = [a["score"] for a in first + second]
    np.testing.assert_allclose(scores, offline, atol=1e-6)
    assert [a["score"] for a in again] == [a["score"] for a in first[half - 40:]]
    # what the kept window changes: the burst's second half scored without its first half scores otherwise
    cold = model.predict_proba(frame.iloc[half:])[:, 0]
    rest = burst[burst >= half]
    assert np.abs(offline[rest] - cold[rest - half]).max() > 0.01


def test_a_schema_3_catalog_gets_the_window_table(store_url):
    import sqlalchemy as sa

    from modelloop.catalog import SCHEMA_VERSION, Catalog, anomaly_window, meta

    url = store_url
    cat = Catalog(url)
    cat.add_decision(name="m", trigger={}, dataset_id=None, champion={}, challenger={}, promoted=False, reason="r")
    with cat.tx() as c:  # back to schema 3: no window table
        anomaly_window.drop(c)
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value="3"))
    cat.close()
    cat = Catalog(url)
    with cat.tx() as c:
        assert c.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == str(SCHEMA_VERSION)
    assert len(cat.list_decisions("m")) == 1
    cat.add_window_records("m", [("a", "k", 10.0), ("a", "k", 10.0), ("b", "k", 20.0)])
    assert sorted(cat.window_records("m", ["k"], 0.0)) == [("a", "k", 10.0), ("b", "k", 20.0)]
    cat.add_window_records("m", [], before=15.0)  # forgets what is older than one window back
    assert cat.window_records("m", ["k"], 0.0) == [("b", "k", 20.0)]
