"""profile / clean / the quality gate through the project API and the CLI contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelloop import DataError, Project, parse_config
from modelloop.registry import load_model, resolve_model


def _table(n=500, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "z": rng.normal(size=n), "c": rng.choice(["a", "b"], n),
                       "y": (x + rng.normal(0, .5, n) > 0).astype(int)})
    df.loc[rng.choice(n, 50, replace=False), "x"] = np.nan
    return pd.concat([df, df.iloc[:10]], ignore_index=True)  # 10 exact duplicates


def _project(tmp_path, **extra) -> Project:
    _table().to_csv(tmp_path / "d.csv", index=False)
    cfg = {"name": "q", "data": {"source": "d.csv", "target": "y"},
           "train": {"trials": 3, "cv_folds": 3, "families": ["linear"], "ensemble": False}, **extra}
    return Project(parse_config(cfg, root=tmp_path))


def test_profile_json_contract_and_report(tmp_path):
    p = _project(tmp_path)
    p.ingest()
    r = p.profile()
    assert set(r["scores"]) >= {"completeness", "validity", "consistency", "overall"}
    assert all(0 <= v <= 100 for v in r["scores"].values())
    assert r["gate"]["passed"] is True and set(r["columns"]) >= {"x", "c", "y"}
    kinds = {f["kind"] for f in r["findings"]}
    assert {"missing_values", "duplicate_rows"} <= kinds
    for f in r["findings"]:
        assert set(f) >= {"kind", "column", "severity", "count", "message"}
    assert set(r["shift"]) == {"x", "z", "c"}  # train vs frozen test split
    html = open(r["report"]["html"], encoding="utf-8").read()
    assert "<svg" in html and "https://" not in html
    assert json.load(open(r["report"]["json"]))["scores"] == r["scores"]
    stored = p.workspace.catalog.get_dataset(r["dataset"]["id"])["quality"]
    assert stored["scores"]["overall"] == r["scores"]["overall"]


def test_a_time_split_compares_the_timestamp_by_its_parts(tmp_path):
    """Under a time split every test row is later than every train row, so the raw timestamp always
    looked shifted; the profile now compares the parts a model reads, as monitoring does."""
    rng = np.random.default_rng(5)
    n = 3000
    seconds = np.sort(rng.integers(0, 300 * 86400, n))
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(seconds, unit="s")
    x = rng.normal(size=n)
    pd.DataFrame({"t": t, "x": x, "y": (x + rng.normal(0, .5, n) > 0).astype(int)}).to_csv(
        tmp_path / "d.csv", index=False)
    cfg = {"name": "q", "data": {"source": "d.csv", "target": "y", "time": "t"}}
    p = Project(parse_config(cfg, root=tmp_path))
    p.ingest()
    r = p.profile()
    assert p.workspace.config.split.strategy == "time"
    assert sorted(r["shift"]) == ["t:day", "t:dayofweek", "t:hour", "x"]  # ~240 train days: no month
    assert not any(v["drifted"] for v in r["shift"].values()), r["shift"]
    assert not [f for f in r["findings"] if f["kind"] == "split_shift"]


def test_the_split_shift_of_a_large_side_is_measured_on_a_sample_it_reports(tmp_path):
    """A side larger than quality.shift.max_rows is compared on a seeded uniform sample of that many rows
    (KS and PSI are oversensitive on a million rows anyway), and the report says how many of how many;
    a smaller side keeps every row, so small tables' results are those of the whole split."""
    import polars as pl

    from modelloop.data.ingest import dataset_row, split_sides
    from modelloop.data.shift import compare_distributions
    from modelloop.data.snapshot import snapshot_file

    p = _project(tmp_path, quality={"shift": {"max_rows": 1000}})
    p.ingest()
    r = p.profile()
    train, test = r["sampled"]["shift"]["train"], r["sampled"]["shift"]["test"]
    assert train["of"] + test["of"] == 510 and train["rows"] == train["of"] and test["rows"] == test["of"]
    ws = p.workspace
    data = pl.scan_parquet(snapshot_file(dataset_row(ws, None)["path"]))
    side = split_sides(ws, dataset_row(ws, None), data)
    table = data.collect()
    whole = compare_distributions(table.filter(side == "train"), table.filter(side == "test"),
                                  {"x": "numeric", "z": "numeric", "c": "categorical"},
                                  psi_threshold=ws.config.monitor.psi_threshold, p_threshold=ws.config.monitor.p_value)
    assert r["shift"] == json.loads(json.dumps(whole))  # small sides: every row, the results unchanged

    big = pd.concat([_table(n=2500, seed=s) for s in (1, 2)], ignore_index=True)
    (tmp_path / "big").mkdir()
    big.to_csv(tmp_path / "big" / "d.csv", index=False)
    p = Project(parse_config({"name": "q", "data": {"source": "d.csv", "target": "y"},
                              "quality": {"shift": {"max_rows": 1000}}}, root=tmp_path / "big"))
    p.ingest()
    r = p.profile()
    sampled = r["sampled"]["shift"]
    assert sampled["train"]["rows"] == sampled["test"]["rows"] == 1000 < sampled["train"]["of"]
    assert sampled["train"]["of"] + sampled["test"]["of"] == len(big)
    for res in r["shift"].values():  # shares of the 1,000 sampled rows of each side
        for b in res["bins"]:
            assert abs(b["reference"] * 1000 - round(b["reference"] * 1000)) < 1e-6
    assert "train/test shift on 1,000 + 1,000 sampled rows" in open(r["report"]["html"], encoding="utf-8").read()
    assert p.profile()["shift"] == r["shift"]  # the same seeded rows each time


def test_ingest_counts_repeated_row_hashes_and_the_profile_skips_the_search_only_without_any(tmp_path):
    """Equal rows hash alike, so no repeated row hash at ingest proves no duplicate rows: the profile
    of that version does not search again. With repeats (10 duplicated rows) it searches, exactly."""
    from modelloop.data.ingest import dataset_row
    from modelloop.data.snapshot import read_manifest
    from modelloop.data.stages import _distinct_rows

    p = _project(tmp_path)
    p.ingest()
    row = dataset_row(p.workspace, None)
    hashes = read_manifest(row["path"])["row_hashes"]
    assert hashes == {"columns": ["x", "z", "c", "y"], "repeated": 10}
    assert p.profile()["duplicates"]["rows"] == 10 and not _distinct_rows(row, ["x", "z", "c", "y"])

    (tmp_path / "u").mkdir()
    _table().drop_duplicates().to_csv(tmp_path / "u" / "d.csv", index=False)
    p = Project(parse_config({"name": "q", "data": {"source": "d.csv", "target": "y"}}, root=tmp_path / "u"))
    p.ingest()
    row = dataset_row(p.workspace, None)
    assert read_manifest(row["path"])["row_hashes"]["repeated"] == 0
    assert _distinct_rows(row, ["c", "y", "x", "z"]) and not _distinct_rows(row, ["x", "z", "c"])
    r = p.profile()
    assert r["duplicates"] == {"rows": 0, "share": 0.0}
    assert not [f for f in r["findings"] if f["kind"] == "duplicate_rows"]


def test_run_stops_before_training_when_the_gate_fails(tmp_path):
    p = _project(tmp_path, quality={"gate": {"max_missing_share": 0.05}})
    with pytest.raises(DataError, match="failed the quality gate"):
        p.run()
    assert p.status()["models"] == []


def test_clean_makes_a_child_version_and_the_model_replays_imputation(tmp_path):
    rules = [{"action": "drop_duplicates"}, {"action": "impute", "columns": ["x"], "strategy": "median",
                                             "indicator": True}]
    p = _project(tmp_path, clean={"rules": rules}, quality={"gate": {"max_missing_share": 0.05}})
    res = p.run()  # clean runs before the gate: the cleaned version passes it
    ds = p.status()["datasets"]
    assert [d["step"] for d in ds] == ["ingest", "clean"] and ds[1]["parents"] == [ds[0]["id"]]
    assert ds[1]["rows"] == ds[0]["rows"] - 10 and res["dataset"]["id"] == ds[1]["id"]
    changes = res["clean"]["changes"]
    assert changes[0]["rows_dropped"] == 10 and changes[1]["cells_changed"] == 50
    again = p.clean(dataset=ds[0]["id"])
    assert not again["created"] and again["id"] == ds[1]["id"]
    model = load_model(p.workspace, resolve_model(p.workspace))
    assert "x__missing" in model.schema.features()
    # a raw record with x missing gets the training median and the indicator at prediction time
    raw = pd.DataFrame({"x": [np.nan], "z": [0.3], "c": ["a"]})
    median = pd.read_csv(tmp_path / "d.csv").drop_duplicates()["x"].median()
    cleaned = model.clean_inputs(raw)
    assert cleaned["x"].iloc[0] == pytest.approx(median) and int(cleaned["x__missing"].iloc[0]) == 1
    present = model.clean_inputs(pd.DataFrame({"x": [0.1], "z": [0.3], "c": ["a"]}))
    assert present["x"].iloc[0] == 0.1 and int(present["x__missing"].iloc[0]) == 0
    assert model.predict_proba(raw).shape == (1, 2)


def test_clean_rule_naming_an_unknown_column(tmp_path):
    from modelloop import ConfigError

    p = _project(tmp_path, clean={"rules": [{"action": "impute", "columns": ["nope"]}]})
    p.ingest()
    with pytest.raises(ConfigError, match="nope"):
        p.clean()
    assert len(p.status()["datasets"]) == 1


def _sources(tmp_path):
    a = pd.DataFrame({"cid": ["c1", "c2", "c3", "c4"] * 30, "x": np.arange(120.0), "y": [0, 1] * 60})
    b = a.copy()
    b.loc[b["cid"] == "c2", "x"] = -1.0  # the same key disagrees with source a
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_parquet(tmp_path / "b.parquet", index=False)


def test_several_sources_union_with_conflicts_reported(tmp_path):
    _sources(tmp_path)
    cfg = {"name": "s", "data": {"sources": [{"name": "crm", "source": "a.csv"},
                                             {"name": "billing", "source": "b.parquet"}],
                                 "combine": "union", "keys": ["cid"], "target": "y"}}
    p = Project(parse_config(cfg, root=tmp_path))
    row = p.ingest()
    assert row["rows"] == 240 and row["source"]["combine"] == "union"
    r = p.profile()
    conflicts = [f for f in r["findings"] if f["kind"] == "source_conflict"]
    assert conflicts and conflicts[0]["column"] == "x"
    assert r["scores"]["consistency"] < 100


def test_join_key_missing_in_one_source(tmp_path):
    _sources(tmp_path)
    pd.DataFrame({"other": [1, 2], "y": [0, 1]}).to_csv(tmp_path / "c.csv", index=False)
    cfg = {"name": "s", "data": {"sources": [{"name": "crm", "source": "a.csv"}, {"name": "c", "source": "c.csv"}],
                                 "combine": "join", "keys": ["cid"], "target": "y"}}
    with pytest.raises(DataError, match="source 'c' has no key column 'cid'"):
        Project(parse_config(cfg, root=tmp_path)).ingest()
    assert not (tmp_path / ".modelloop" / "datasets").exists() or not any(
        (tmp_path / ".modelloop" / "datasets").iterdir())


def test_source_config_errors():
    from modelloop import ConfigError

    with pytest.raises(ConfigError, match="give either data.source"):
        parse_config({"data": {"target": "y"}})
    with pytest.raises(ConfigError, match="data.keys: data.combine: join needs"):
        parse_config({"data": {"target": "y", "combine": "join", "sources": [{"name": "a", "source": "a.csv"}]}})
    with pytest.raises(ConfigError, match="names must be unique"):
        parse_config({"data": {"target": "y", "sources": [{"name": "a", "source": "a.csv"},
                                                          {"name": "a", "source": "b.csv"}]}})
