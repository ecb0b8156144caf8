"""Ingest and the frozen split, through the workspace and its catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelloop import Project, parse_config
from modelloop.data.ingest import ensure_split, load_dataset
from modelloop.data.snapshot import ROW_ID
from modelloop.errors import DataError


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "x": rng.normal(size=n),
                         "c": rng.choice(["a", "b"], n), "y": (rng.random(n) < 0.2).astype(int)})


def _project(tmp_path, **data):
    cfg = {"name": "p", "data": {"source": "t.csv", "target": "y", "id": "id", **data}}
    return Project(parse_config(cfg, root=tmp_path))


def test_reingesting_unchanged_data_keeps_the_version(tmp_path):
    _table().to_csv(tmp_path / "t.csv", index=False)
    p = _project(tmp_path)
    first, again = p.ingest(), p.ingest()
    assert first["created"] and not again["created"] and first["id"] == again["id"]
    # the same table from another format is the same content
    _table().to_parquet(tmp_path / "t.parquet", index=False)
    same = _project(tmp_path, source="t.parquet").ingest()
    assert same["id"] == first["id"] and not same["created"]
    _table(seed=1).to_csv(tmp_path / "t.csv", index=False)
    changed = p.ingest()
    assert changed["created"] and changed["id"] != first["id"] and changed["seq"] == 2
    assert [d["version"] for d in p.status()["datasets"]] == [1, 2]


def test_snapshot_has_stable_row_ids_and_manifest(tmp_path):
    df = _table()
    df = pd.concat([df, df.iloc[:3]])  # exact duplicates get distinct row ids
    df.to_csv(tmp_path / "t.csv", index=False)
    row = _project(tmp_path).ingest()
    _, snap, schema = load_dataset(_project(tmp_path).workspace)
    assert snap[ROW_ID].is_unique and len(snap) == 303
    assert schema.columns["id"] == "identifier" and schema.features() == ["x", "c"]
    assert (tmp_path / ".modelloop" / "datasets" / row["id"] / "manifest.json").exists()


def test_split_is_frozen_stratified_and_inherited(tmp_path):
    _table(n=1000).to_csv(tmp_path / "t.csv", index=False)
    p = _project(tmp_path)
    p.ingest()
    ws = p.workspace
    row, df, _ = load_dataset(ws)
    side = ensure_split(ws, row, df)
    assert (side == "test").mean() == pytest.approx(0.2, abs=0.01)
    rate = df.groupby(side)["y"].mean()
    assert abs(rate["test"] - rate["train"]) < 0.02
    assert ensure_split(ws, row, df).equals(side)  # stored, not re-drawn
    # a derived version keeps its parent's assignment for the rows it kept
    child_df = pd.concat([df.iloc[100:], df.iloc[:0]])
    child = ws.catalog.add_dataset(id="child0000000", project="p", step="clean", parents=[row["id"]],
                                   schema=row["schema"], rows=len(child_df), path=row["path"], source={})
    child_side = ensure_split(ws, child, child_df)
    assert child_side.tolist() == side.iloc[100:].tolist()


def test_time_split_puts_the_latest_rows_in_test(tmp_path):
    df = _table(n=500)
    df["ts"] = pd.date_range("2026-01-01", periods=500, freq="h")
    df = df.sample(frac=1, random_state=0)
    df.to_csv(tmp_path / "t.csv", index=False)
    p = Project(parse_config({"name": "p", "data": {"source": "t.csv", "target": "y", "time": "ts"},
                              "split": {"strategy": "time", "test_size": 0.2}}, root=tmp_path))
    p.ingest()
    row, snap, _ = load_dataset(p.workspace)
    side = ensure_split(p.workspace, row, snap)
    ts = pd.to_datetime(snap["ts"])
    assert ts[side == "test"].min() > ts[side == "train"].max()


@pytest.mark.parametrize("data, match", [
    ({"target": "nope"}, "data.target: column 'nope' is not in"),
    ({"source": "missing.csv"}, "file not found"),
])
def test_bad_input(tmp_path, data, match):
    _table().to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=match):
        _project(tmp_path, **data).ingest()


def test_single_class_target(tmp_path):
    df = _table()
    df["y"] = 1
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="has a single class"):
        _project(tmp_path).ingest()
    assert not (tmp_path / ".modelloop" / "datasets").exists() or not any(
        (tmp_path / ".modelloop" / "datasets").iterdir())


def test_split_sides_agrees_with_ensure_split_in_any_stored_order(tmp_path):
    import polars as pl

    from modelloop.data.ingest import split_key, split_sides
    from modelloop.data.snapshot import snapshot_file

    _table().to_csv(tmp_path / "t.csv", index=False)
    p = _project(tmp_path)
    row = p.ingest()
    ws = p.workspace
    data = pl.scan_parquet(snapshot_file(row["path"]))
    side = split_sides(ws, row, data)  # makes the split
    df = load_dataset(ws)[1]
    expected = ensure_split(ws, row, df)
    assert side.to_list() == expected.tolist()
    path = ws.catalog.get_split(row["id"], split_key(ws.config))["path"]
    stored = pd.read_parquet(path)
    shuffled = stored.sample(frac=1.0, random_state=1)
    flipped = stored.iloc[:5].assign(split=np.where(stored["split"].iloc[:5] == "test", "train", "test"))
    pd.concat([flipped, shuffled]).to_parquet(path, index=False)  # repeated ids: the last entry wins
    assert split_sides(ws, row, data).to_list() == ensure_split(ws, row, df).tolist() == expected.tolist()
    stored.iloc[1:].to_parquet(path, index=False)
    with pytest.raises(DataError, match="does not cover 1 rows"):
        split_sides(ws, row, data)
    with pytest.raises(DataError, match="does not cover 1 rows"):
        ensure_split(ws, row, df)


def test_ingest_freezes_the_split_of_the_version(tmp_path):
    from modelloop.data.ingest import split_key

    _table().to_csv(tmp_path / "t.csv", index=False)
    p = _project(tmp_path)
    row = p.ingest()
    ws = p.workspace
    stored = ws.catalog.get_split(row["id"], split_key(ws.config))
    assert stored is not None  # made by ingest, so later stages only look it up
    sides = pd.read_parquet(stored["path"])
    assert len(sides) == 300 and set(sides["split"]) == {"train", "test"}
    assert ensure_split(ws, row, load_dataset(ws)[1]).tolist() == sides["split"].tolist()
    # a split setting changed later: re-ingesting the same data freezes that split too
    p2 = Project(parse_config({"name": "p", "data": {"source": "t.csv", "target": "y", "id": "id"},
                               "split": {"test_size": 0.3}}, root=tmp_path))
    assert not p2.ingest()["created"]
    assert p2.workspace.catalog.get_split(row["id"], split_key(p2.workspace.config)) is not None
