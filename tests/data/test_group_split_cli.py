"""data.group with too few groups for the frozen test split: `modelloop ingest` stops with exit 2 naming the
column, its groups and what is needed, and a split of 2 or 3 groups never leaves the test set empty. Before,
split.strategy 'group' on a single group froze an empty test set at ingest (exit 0), and train then failed
saying the test set held "the others"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from clirun import cli

from modelloop.data.snapshot import ROW_ID
from modelloop.data.split import make_split


def _project(root: Path, groups: int, strategy: str, test_size: float = 0.2) -> Path:
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=60), "site": [f"s{i % groups}" for i in range(60)],
                  "y": [0, 1] * 30}).to_csv(root / "data.csv", index=False)
    (root / "modelloop.yaml").write_text(f"name: sites\ntask: classification\n"
                                         f"data: {{source: data.csv, target: y, group: site}}\n"
                                         f"split: {{strategy: {strategy}, test_size: {test_size}}}\n")
    return root


@pytest.mark.parametrize("strategy", ["group", "random", "stratified"])
def test_ingest_of_a_single_group_is_exit_2_naming_the_column(tmp_path, capsys, strategy):
    code, out, err = cli(["ingest"], capsys, _project(tmp_path, 1, strategy))
    assert code == 2, (out, err)
    assert "data.group: column 'site' has 1 group among the 60 rows to split" in err
    assert "at least 2" in err and "Traceback" not in err
    fix = "split.strategy random or stratified without data.group" if strategy == "group" else \
        "leave data.group out"
    assert fix in err


@pytest.mark.parametrize("strategy", ["group", "random", "stratified"])
def test_two_groups_and_a_tiny_test_size_put_one_group_in_test(tmp_path, capsys, strategy):
    """test_size 0.01 of 2 groups rounds to none: the split still puts a whole group in the test set (and
    keeps one to train on), through the real command, and for pandas and Polars frames of 2 and 3 groups."""
    code, out, err = cli(["ingest", "--json"], capsys, _project(tmp_path, 2, strategy, 0.01))
    assert code == 0, err
    from modelloop import Project

    ws = Project.load(tmp_path / "modelloop.yaml").workspace
    split = ws.catalog.get_split(ws.catalog.latest_dataset("sites")["id"], _key(ws))
    assert split["counts"] == {"train": 30, "test": 30}
    for groups in (2, 3):
        df = pd.DataFrame({ROW_ID: np.arange(60), "y": [0, 1] * 30, "site": [f"s{i % groups}" for i in range(60)]})
        for frame in (df, pl.from_pandas(df)):
            for seed in range(5):
                sides = make_split(frame, strategy=strategy, test_size=0.01, seed=seed, target="y", group="site")
                side = np.asarray(sides["split"].cast(pl.String).to_numpy() if isinstance(sides, pl.DataFrame)
                                  else sides["split"].to_numpy())
                assert 1 <= len(set(df["site"][side == "test"])) < groups  # a test group, and one to train
                assert not set(df["site"][side == "test"]) & set(df["site"][side == "train"])


def test_a_polars_frame_of_one_group_is_refused_under_the_group_strategy():
    from modelloop.errors import ConfigError

    df = pl.DataFrame({ROW_ID: np.arange(10), "y": [0, 1] * 5, "site": ["s0"] * 10})
    with pytest.raises(ConfigError, match=r"column 'site' has 1 group among the 10 rows to split"):
        make_split(df, strategy="group", test_size=0.2, seed=0, target="y", group="site")


def _key(ws) -> str:
    from modelloop.data.ingest import split_key

    return split_key(ws.config)
