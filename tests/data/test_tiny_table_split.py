"""A table of one row has no frozen test split to make: `modelloop ingest` stops with exit 2 naming the
row count and what is needed. Before, the split was frozen empty (exit 0), and the model could never be
scored. One new row added to a split version (retrain's new rows) still splits: it trains. Likewise a
time split of 2 rows (test_size rounded to no row) and a stratified one whose every class has one row (each
trains) no longer freeze an empty test split; new rows of a split version keep splitting as before."""

from __future__ import annotations

import pandas as pd
import pytest
from clirun import cli

from modelloop.data.snapshot import ROW_ID
from modelloop.data.split import make_split


@pytest.mark.parametrize("strategy", ["random", "time"])
def test_ingest_of_a_one_row_table_is_exit_2_naming_the_rows(tmp_path, capsys, strategy):
    (tmp_path / "data.csv").write_text("a,day,y\n1.5,2026-01-02,3.0\n")
    (tmp_path / "modelloop.yaml").write_text("name: tiny\ntask: regression\n"
                                             "data: {source: data.csv, target: y, time: day}\n"
                                             f"split: {{strategy: {strategy}}}\n")
    code, out, err = cli(["ingest"], capsys, tmp_path)
    assert code == 2, (out, err)
    assert "the table has 1 row to split; the frozen test split needs at least 2" in err, err
    assert "Traceback" not in err


def test_one_new_row_of_a_split_version_trains():
    df = pd.DataFrame({ROW_ID: range(10), "y": [float(i) for i in range(10)]})
    parent = make_split(df, strategy="random", test_size=0.2, seed=0, target="y")
    new = pd.concat([df, pd.DataFrame({ROW_ID: [99], "y": [1.0]})], ignore_index=True)
    split = make_split(new, strategy="random", test_size=0.2, seed=0, target="y", inherit=parent)
    sides = dict(zip(split[ROW_ID], split["split"], strict=True))
    assert sides[99] == "train" and len(sides) == 11
    assert [sides[i] for i in range(10)] == parent["split"].tolist()


def _split_of(root) -> dict:
    from modelloop import Project
    from modelloop.data.ingest import load_dataset, split_key

    ws = Project.load(root / "modelloop.yaml").workspace
    row, df, _ = load_dataset(ws)
    frame = pd.read_parquet(ws.catalog.get_split(row["id"], split_key(ws.config))["path"])
    sides = dict(zip(frame[ROW_ID], frame["split"], strict=True))
    return {day: sides[rid] for rid, day in zip(df[ROW_ID], df["day"], strict=True)}


@pytest.mark.parametrize("test_size", [0.2, 0.8])
def test_a_time_split_of_two_rows_tests_the_latest_and_trains_the_earliest(tmp_path, capsys, test_size):
    # 2 rows under test_size 0.2: round(2 * 0.8) = 2 rows trained, and the test split was frozen empty
    # (0.8: round(0.4) = 0, nothing trained)
    (tmp_path / "data.csv").write_text("a,day,y\n1.5,2026-01-03,3.0\n2.5,2026-01-01,4.0\n")
    (tmp_path / "modelloop.yaml").write_text("name: tiny\ntask: regression\n"
                                             "data: {source: data.csv, target: y, time: day}\n"
                                             f"split: {{strategy: time, test_size: {test_size}}}\n")
    code, out, err = cli(["ingest", "--json"], capsys, tmp_path)
    assert code == 0, err
    assert sorted(_split_of(tmp_path).items()) == [("2026-01-01", "train"), ("2026-01-03", "test")]


def test_new_rows_of_a_time_split_version_split_as_before():
    # retrain's new rows keep the rounding: 2 of them under test_size 0.2 both train
    df = pd.DataFrame({ROW_ID: range(10), "day": pd.date_range("2026-01-01", periods=10), "y": range(10)})
    parent = make_split(df, strategy="time", test_size=0.2, seed=0, target="y", time="day")
    assert parent["split"].tolist() == ["train"] * 8 + ["test"] * 2
    new = pd.concat([df, pd.DataFrame({ROW_ID: [98, 99], "day": pd.date_range("2026-02-01", periods=2),
                                       "y": [1, 2]})], ignore_index=True)
    split = make_split(new, strategy="time", test_size=0.2, seed=0, target="y", time="day", inherit=parent)
    assert split["split"].tolist() == [*parent["split"].tolist(), "train", "train"]


def test_a_stratified_split_of_single_row_classes_is_exit_2_naming_them(tmp_path, capsys):
    # each class's only row trains (a model that never saw a label cannot be scored on it): the test split
    # was frozen empty, exit 0
    (tmp_path / "data.csv").write_text("a,y\n1.5,cat\n2.5,dog\n0.5,fox\n")
    (tmp_path / "modelloop.yaml").write_text("name: tiny\ntask: classification\n"
                                             "data: {source: data.csv, target: y}\nsplit: {strategy: stratified}\n")
    code, out, err = cli(["ingest"], capsys, tmp_path)
    assert code == 2, (out, err)
    assert "split.strategy stratified: every class of target 'y' has 1 row ('cat': 1, 'dog': 1, 'fox': 1)" in err
    assert "needs a class with at least 2 rows" in err and "Traceback" not in err
    # one class of two rows: its rows go one to each side, the single ones train (as before)
    (tmp_path / "data.csv").write_text("a,y\n1.5,cat\n2.5,dog\n0.5,fox\n0.7,fox\n")
    code, out, err = cli(["ingest"], capsys, tmp_path)
    assert code == 0, err


def test_new_rows_of_a_stratified_version_may_all_be_single_classes():
    df = pd.DataFrame({ROW_ID: range(10), "y": ["a", "b"] * 5})
    parent = make_split(df, strategy="stratified", test_size=0.2, seed=0, target="y")
    new = pd.concat([df, pd.DataFrame({ROW_ID: [98, 99], "y": ["c", "d"]})], ignore_index=True)
    split = make_split(new, strategy="stratified", test_size=0.2, seed=0, target="y", inherit=parent)
    assert split["split"].tolist() == [*parent["split"].tolist(), "train", "train"]
