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


def test_a_kind_declared_after_an_ingest_makes_a_version_with_it(tmp_path):
    """Unchanged data kept its version, and the version its schema: ``data.columns: {c: ...}`` or another
    target written after the first ingest took effect only once the data changed (a store code declared
    categorical trained as a number). The data read with another schema is a version of its own; re-ingesting
    it finds it, and the first config finds the first version."""
    df = _table().assign(store=lambda d: np.arange(len(d)) % 7)
    df.to_csv(tmp_path / "t.csv", index=False)
    first = _project(tmp_path).ingest()
    assert first["schema"]["columns"]["store"] == "numeric"
    declared = _project(tmp_path, columns={"store": "categorical"})
    second, again = declared.ingest(), declared.ingest()
    assert second["created"] and second["id"] != first["id"] and second["schema"]["columns"]["store"] == "categorical"
    assert not again["created"] and again["id"] == second["id"]
    assert load_dataset(declared.workspace)[2].columns["store"] == "categorical"
    back = _project(tmp_path).ingest()
    assert not back["created"] and back["id"] == first["id"]


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


def _messy(n=400, seed=0):
    """A table that needs every check: a numeric column with a stray word, missing targets, NaN."""
    df = _table(n, seed)
    df["amount"] = [str(round(v, 3)) for v in np.random.default_rng(seed).normal(size=n)]
    df.loc[7, "amount"] = "n/a?"
    df.loc[[3, 50], "y"] = np.nan
    df.loc[::9, "x"] = np.nan
    return df


def test_a_parquet_source_is_checked_in_place_and_is_the_same_version_as_its_csv(tmp_path):
    from modelloop.data.ingest import read_checked_source
    from modelloop.data.snapshot import HASH_SCHEME, read_manifest, snapshot_file

    df = _messy()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.set_index("id").to_parquet(tmp_path / "t.parquet")  # pandas stores the index as a column: not data
    coerce = {"on_type_error": "coerce"}
    via_csv = _project(tmp_path, **coerce)
    via_parquet = _project(tmp_path, source="t.parquet", id=None, **coerce)
    assert read_checked_source(via_parquet.config).parquet is not None  # scanned, not read into pandas
    parquet_row = via_parquet.ingest()
    # a second project beside the first: its own catalog, so its version is made, not found
    other = tmp_path / "other"
    other.mkdir()
    df.drop(columns="id").to_csv(other / "t.csv", index=False)
    csv_row = _project(other, id=None, **coerce).ingest()
    assert parquet_row["created"] and csv_row["created"] and parquet_row["id"] == csv_row["id"]
    assert parquet_row["rows"] == 398 and parquet_row["source"]["dropped_missing_target"] == 2
    assert parquet_row["source"]["coerced"] == csv_row["source"]["coerced"] != {}
    assert parquet_row["schema"]["columns"] == csv_row["schema"]["columns"]
    assert read_manifest(parquet_row["path"])["hash"] == HASH_SCHEME
    a, b = (pd.read_parquet(snapshot_file(r["path"])) for r in (parquet_row, csv_row))
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert a["amount"].isna().sum() == 1 and a[ROW_ID].is_unique
    assert via_csv.ingest()["id"] != parquet_row["id"]  # with the id column: another table


def test_text_that_is_not_a_date_in_a_date_column_stops_ingest_or_is_coerced_csv_and_parquet_alike(tmp_path):
    """A loans table's 'applied' dates held 'not a date' in 10 rows: ingest kept them, training read them
    as missing and the server refused them, so `predict` on the training file stopped. Now a CSV and a
    Parquet file (dates stored as text) both stop naming the row, or with coerce store it missing."""
    from modelloop.data.snapshot import snapshot_file
    from modelloop.errors import DataError

    df = _table(200).assign(applied=pd.date_range("2024-01-01", periods=200, freq="h").strftime("%d/%m/%Y %H:%M"))
    df.loc[7, "applied"] = "not a date"
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    for source in ("t.csv", "t.parquet"):
        with pytest.raises(DataError, match=r"column 'applied' holds dates but 1 row\(s\) hold text that is not "
                                            r"one, e.g. row 8 .*'not a date'"):
            _project(tmp_path, source=source).ingest()
    rows = [_project(tmp_path, source=source, on_type_error="coerce").ingest() for source in ("t.csv", "t.parquet")]
    for row in rows:
        assert row["source"]["coerced"]["applied"]["coerced_to_missing"] == 1
        stored = pd.read_parquet(snapshot_file(row["path"]))
        assert stored["applied"].isna().sum() == 1 and stored["applied"].notna().sum() == 199


def test_reingest_finds_a_version_hashed_before_the_digest(tmp_path, monkeypatch):
    """A catalog from before ``HASH_SCHEME`` (its ids hash the pandas rows) keeps its versions."""
    from modelloop.data.ingest import read_config_source, split_key
    from modelloop.data.snapshot import assign_row_ids, content_hash, write_snapshot

    _table().to_csv(tmp_path / "t.csv", index=False)
    p = _project(tmp_path)
    ws = p.workspace
    df, schema, report = read_config_source(ws.config)  # what an older ingest stored, the way it did
    df = assign_row_ids(df)
    old = content_hash(df)
    path = write_snapshot(df, ws.datasets_dir / old, {"id": old, "step": "ingest", "rows": len(df)})
    ws.catalog.add_dataset(id=old, project="p", step="ingest", parents=[], schema=schema.to_dict(),
                           rows=len(df), path=str(path), source=report)
    again = p.ingest()
    assert again["id"] == old and not again["created"]
    assert ws.catalog.get_split(old, split_key(ws.config)) is not None  # frozen from the stored rows
    # the match is kept: the next re-ingest finds the version without making the old id again
    monkeypatch.setattr("modelloop.data.ingest.content_hash", None)
    assert p.ingest()["id"] == old
    monkeypatch.undo()
    _table(seed=1).to_csv(tmp_path / "t.csv", index=False)  # as many rows, other values: a new version
    assert p.ingest()["created"]


def test_group_and_random_splits():
    from modelloop.data.split import make_split

    df = _table(n=2000).assign(g=np.arange(2000) // 10)
    df[ROW_ID] = np.arange(2000)
    groups = make_split(df, strategy="group", test_size=0.25, seed=3, target="y", group="g")
    side = groups.set_index(df["g"].to_numpy())["split"]
    assert side.groupby(level=0).nunique().max() == 1  # a group is on one side
    assert (side == "test").groupby(level=0).first().sum() == 50  # a quarter of the 200 groups
    shuffled = make_split(df, strategy="random", test_size=0.25, seed=3, target="y")
    assert (shuffled["split"] == "test").sum() == 500
    assert shuffled.equals(make_split(df, strategy="random", test_size=0.25, seed=3, target="y"))
    assert not shuffled.equals(make_split(df, strategy="random", test_size=0.25, seed=4, target="y"))


def test_ingest_leaves_scikit_learn_unloaded(tmp_path):
    """The split is drawn with numpy: importing scikit-learn and SciPy cost a 1M-row ingest 1 s and 80 MiB."""
    import subprocess
    import sys

    _table(n=500).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "modelloop.yaml").write_text("name: p\ndata: {source: t.csv, target: y, id: id}\n")
    code = ("import sys; from modelloop import Project; Project.load('modelloop.yaml').ingest(); "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_parquet_source_of_unusual_types_ingests_and_keeps_its_version(tmp_path):
    """Null, list, decimal, date, time, binary, dictionary, unsigned, float32, zoned and duration
    columns are copied as they are (pandas could not even hash the list column)."""
    import datetime as dt
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 40
    pq.write_table(pa.table({
        "y": [i % 2 for i in range(n)], "nothing": pa.nulls(n), "pair": [[i, i + 1] for i in range(n)],
        "price": pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(10, 2)),
        "day": [dt.date(2024, 1, 1 + i % 28) for i in range(n)], "at": [dt.time(i % 24) for i in range(n)],
        "raw": [b"x%d" % i for i in range(n)], "level": pa.array(["a", "b"] * (n // 2)).dictionary_encode(),
        "count": pa.array(range(n), pa.uint64()), "ratio": pa.array([i / 3 for i in range(n)], pa.float32()),
        "when": pa.array([dt.datetime(2024, 1, 1, i % 24) for i in range(n)], pa.timestamp("us", tz="Europe/Paris")),
        "took": [dt.timedelta(seconds=i) for i in range(n)],
    }), tmp_path / "t.parquet")
    p = _project(tmp_path, source="t.parquet", id=None)
    first = p.ingest()
    assert first["created"] and first["rows"] == n and not p.ingest()["created"]
    snap = load_dataset(p.workspace)[1]
    assert snap["pair"].iloc[3].tolist() == [3, 4] and str(snap["when"].dtype) == "datetime64[us, Europe/Paris]"


def test_a_source_that_carries_row_ids_keeps_them(tmp_path):
    """A version's own file ingested as a source (an export, a copy): its ``_row_id`` column is kept,
    and the split is made from it."""
    from modelloop.data.snapshot import snapshot_file

    _table().to_csv(tmp_path / "t.csv", index=False)
    first = _project(tmp_path).ingest()
    other = tmp_path / "copy"
    other.mkdir()
    (other / "t.parquet").write_bytes(snapshot_file(first["path"]).read_bytes())
    p = _project(other, source="t.parquet")
    copy = p.ingest()
    row, snap, _ = load_dataset(p.workspace)
    original = pd.read_parquet(snapshot_file(first["path"]))
    assert copy["created"] and snap[ROW_ID].tolist() == original[ROW_ID].tolist()
    assert ensure_split(p.workspace, row, snap).notna().all()
