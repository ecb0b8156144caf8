"""Recommendation data: the interaction keys, ids by their text, the frozen split, and bad input (exit 2,
one line naming the key, nothing registered)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from clirun import cli

from modelloop.config import parse_config
from modelloop.errors import ConfigError, DataError


def _project(tmp_path, df: pd.DataFrame, **data):
    from modelloop.project import Project

    df.to_csv(tmp_path / "events.csv", index=False)
    raw = {"name": "shop", "task": "recommendation", "data": {"source": "events.csv", "user": "user", "item": "item",
                                                              **data}, "train": {"trials": 2}}
    return Project(parse_config(raw, root=tmp_path))


def test_recommendation_needs_no_target_and_defaults_to_ndcg():
    cfg = parse_config({"task": "recommendation", "data": {"source": "e.csv", "user": "u", "item": "i"}})
    assert cfg.data.target is None and cfg.metric == "ndcg" and cfg.model.k == 10
    with pytest.raises(ConfigError, match=r"train.metric: must be one of ndcg, .* got 'f1_macro'"):
        parse_config({"task": "recommendation", "data": {"source": "e.csv", "user": "u", "item": "i"},
                      "train": {"metric": "f1_macro"}})


@pytest.mark.parametrize(("frame", "data", "says"), [
    (pd.DataFrame({"customer": ["a", "b"], "item": ["x", "y"]}), {}, r"^data\.user: column 'user' is not in"),
    (pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "stars": ["5", "great"]}), {"rating": "stars"},
     r"^data\.rating: column 'stars' must hold numbers, got 'great'"),
    (pd.DataFrame({"user": ["a", "a", "a"], "item": ["x", "y", "z"]}), {}, r"^data\.user: .* holds 1 user"),
])
def test_bad_interactions_are_refused_naming_the_key(tmp_path, frame, data, says):
    project = _project(tmp_path, frame, **data)
    with pytest.raises(DataError, match=says):
        project.ingest()
    assert project.workspace.catalog.list_datasets("shop") == []


def test_the_cli_exits_2_with_one_error_line(tmp_path, capsys):
    pd.DataFrame({"user": ["a", "b"], "product": ["x", "y"]}).to_csv(tmp_path / "events.csv", index=False)
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump({
        "name": "shop", "task": "recommendation", "data": {"source": "events.csv", "user": "user", "item": "item"},
        "train": {"trials": 1}}))
    code, out, err = cli(["run"], capsys, tmp_path)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: data.item: column 'item' is not in events.csv; columns: user, product"], err
    assert "Traceback" not in err


def test_ids_are_matched_by_their_text_and_the_split_never_leaks(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(1, 30, 400), "item": rng.integers(100, 140, 400)})
    project = _project(tmp_path, df)
    project.ingest()
    summary = project.train()
    ws = project.workspace
    from modelloop.families import family_of

    row = ws.catalog.get_model("shop", summary["model"]["version"])
    model = family_of(row).load(ws, row)
    assert model.recommend(7, 5) == model.recommend("7", 5) == model.recommend(7.0, 5)
    assert model.recommend(7, 5)[1] is None  # a known user, not the fallback
    from modelloop.data.ingest import ensure_split, load_dataset

    drow, data, _ = load_dataset(ws)
    side = ensure_split(ws, drow, data)
    assert set(side) == {"train", "test"}
    assert set(data["user"][side == "test"]) <= set(data["user"][side == "train"])  # a share of each user's
    train_pairs = set(zip(data["user"][side == "train"], data["item"][side == "train"], strict=True))
    for user in ("7", "12"):  # a user's training items are never recommended to them
        seen = {i for u, i in train_pairs if u == user}
        assert seen and not seen & {r["item"] for r in model.recommend(user, 40)[0]}


def test_without_data_time_each_user_keeps_a_share_of_their_interactions_for_test():
    from modelloop.data.snapshot import ROW_ID
    from modelloop.data.split import make_split

    cfg = parse_config({"task": "recommendation", "data": {"source": "e.csv", "user": "u", "item": "i"}})
    assert cfg.split.strategy == "user"
    users = np.repeat(["a", "b", "c", "d"], [1, 2, 5, 20])
    df = pd.DataFrame({ROW_ID: np.arange(len(users)), "u": users})
    split = make_split(df, strategy="user", test_size=0.2, seed=0, target=None, user="u")
    test = dict(df.assign(test=(split["split"] == "test").to_numpy()).groupby("u")["test"].sum())
    assert test == {"a": 0, "b": 1, "c": 1, "d": 4}  # one row: train only; else at least one, never all
    again = make_split(df, strategy="user", test_size=0.2, seed=0, target=None, user="u")
    assert split.equals(again)
    with pytest.raises(ConfigError, match="split.strategy: 'user' needs data.user"):
        parse_config({"data": {"source": "e.csv", "target": "y"}, "split": {"strategy": "user"}})


def test_with_data_time_the_user_split_leaves_out_each_users_latest_rows():
    from modelloop.data.snapshot import ROW_ID
    from modelloop.data.split import make_split

    df = pd.DataFrame({ROW_ID: np.arange(10), "u": ["a"] * 5 + ["b"] * 5,
                       "ts": [f"2026-01-0{d}" for d in (5, 1, 4, 2, 3)] * 2})
    split = make_split(df, strategy="user", test_size=0.4, seed=0, target=None, time="ts", user="u")
    test = df[(split["split"] == "test").to_numpy()]
    assert sorted(test["ts"]) == ["2026-01-04", "2026-01-04", "2026-01-05", "2026-01-05"]
