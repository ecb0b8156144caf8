"""A table of one row has no frozen test split to make: `modelloop ingest` stops with exit 2 naming the
row count and what is needed. Before, the split was frozen empty (exit 0), and the model could never be
scored. One new row added to a split version (retrain's new rows) still splits: it trains."""

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
