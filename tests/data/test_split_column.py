"""split.strategy column: a team's own holdout. The rows split.column marks test (test, true, 1, in any case)
are the frozen test split and every other row trains; the column is never a feature, so the served model
answers the training rows without it. Bad marks and config slips stop with exit 2 naming what is allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from clirun import cli

from modelloop.data.snapshot import ROW_ID
from modelloop.data.split import make_split

MARKS = ["Test", "train", " TRAIN ", "true", "False", "1", "0"]
IS_TEST = [True, False, False, True, False, True, False]


def _project(root: Path, side: list | None = None, split: str = "{strategy: column, column: side}",
             rows: int = 140) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    df["y"] = np.where(df["a"] + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    df["side"] = side if side is not None else [MARKS[i % len(MARKS)] for i in range(rows)]
    df.to_csv(root / "data.csv", index=False)
    (root / "modelloop.yaml").write_text(f"name: holdout\ndata: {{source: data.csv, target: y}}\nsplit: {split}\n"
                                         "train: {budget: 5, families: [lightgbm], trials: 2}\n")
    return root, df


def test_the_marked_rows_are_the_test_split_and_the_model_serves_rows_without_the_column(tmp_path, capsys):
    root, df = _project(tmp_path)
    assert cli(["ingest"], capsys, root)[0] == 0
    code, out, err = cli(["train", "--json"], capsys, root)
    assert code == 0, err
    from modelloop import Project
    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.registry import load_model, resolve_model

    ws = Project.load(root / "modelloop.yaml").workspace
    row = ws.catalog.latest_dataset("holdout")
    _, stored, _ = load_dataset(ws, row["id"])
    sides = ensure_split(ws, row, stored).to_numpy()
    expected = np.array([IS_TEST[i % len(MARKS)] for i in range(len(df))])
    # the stored rows are the source's, in order: each one's side is the one its mark says
    assert list(stored["a"]) == pytest.approx(list(df["a"]))
    assert list(sides == "test") == list(expected)
    assert row["schema"]["columns"]["side"] == "identifier"
    model = load_model(ws, resolve_model(ws))
    assert "side" not in model.schema.features()
    # the training rows, sent to the real server as a client sends them, with their mark column and
    # without it, are accepted and answered as offline
    from servers import served_equals_offline

    train_rows = df.loc[~expected]
    served_equals_offline(ws, train_rows, "y")
    served_equals_offline(ws, train_rows.drop(columns=["side"]), "y")
    import json

    summary = json.loads(out)
    assert summary["rows"] == {"train": int((~expected).sum()), "test": int(expected.sum())}


def test_pandas_and_polars_frames_split_alike_and_new_rows_follow_their_marks():
    df = pd.DataFrame({ROW_ID: np.arange(14), "y": [0, 1] * 7,
                       "side": [True, False] * 7})
    for frame in (df, pl.from_pandas(df)):
        sides = make_split(frame, strategy="column", test_size=0.2, seed=0, target="y", column="side")
        side = np.asarray(sides["split"].cast(pl.String).to_numpy() if isinstance(sides, pl.DataFrame)
                          else sides["split"].to_numpy())
        assert list(side == "test") == list(df["side"])
    # a derived version: known rows keep their side, new rows (all train here) follow their marks
    inherit = pd.DataFrame({ROW_ID: np.arange(14), "split": np.where(df["side"], "test", "train")})
    more = pd.concat([df, pd.DataFrame({ROW_ID: [14, 15], "y": [0, 1], "side": ["train", "train"]})],
                     ignore_index=True)
    sides = make_split(more, strategy="column", test_size=0.2, seed=0, target="y", column="side", inherit=inherit)
    assert list(sides["split"]) == [*np.where(df["side"], "test", "train"), "train", "train"]


def test_an_unknown_mark_is_exit_2_naming_the_values_and_what_is_allowed(tmp_path, capsys):
    side = ["test", "train", "valid", None] * 10
    root, _ = _project(tmp_path, side=side, rows=40)
    code, out, err = cli(["ingest"], capsys, root)
    assert code == 2, (out, err)
    assert "split.column 'side': 20 rows say neither test nor train" in err
    assert "'valid': 10 rows" in err and "'<missing>': 10 rows" in err
    assert "allowed: test or train (any case), true or false, 1 or 0" in err and "Traceback" not in err


def test_a_column_marking_every_row_one_side_is_exit_2(tmp_path, capsys):
    root, _ = _project(tmp_path, side=["train"] * 30, rows=30)
    code, _, err = cli(["ingest"], capsys, root)
    assert code == 2 and "split.column 'side': all 30 rows say train" in err
    assert "rows on both sides" in err


@pytest.mark.parametrize(("split", "message"), [
    ("{strategy: column}", "split.strategy: 'column' needs split.column"),
    ("{column: side}", "split.column: read only by split.strategy: column, got split.strategy: null (left out)"),
    ("{strategy: random, column: side}", "split.column: read only by split.strategy: column, got "
                                         "split.strategy: random"),
    ("{strategy: column, column: y}", "split.column: 'y' is also a role column"),
    ("{strategy: column, column: sides}", "column 'sides' named in the config is not in the data"),
])
def test_config_slips_are_exit_2_naming_the_fix(tmp_path, capsys, split, message):
    root, _ = _project(tmp_path, split=split)
    code, out, err = cli(["ingest"], capsys, root)
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err
