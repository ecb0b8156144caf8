"""Cleaning rules: each changes exactly what it should and reports it; the plan replays at inference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelloop.data.cleaning import CleaningPlan, apply_rules, fit_rules, parse_rules
from modelloop.data.quality_config import CleanConfig, QualityConfig
from modelloop.errors import ConfigError, DataError


def _one(df, rule, target=None):
    out, (change,) = apply_rules(df, [rule], target=target)
    assert set(change) == {"index", "action", "columns", "rows_changed", "cells_changed", "rows_dropped", "details"}
    assert change["action"] == rule["action"] and change["index"] == 0
    return out, change


def test_empty_configs_are_valid() -> None:
    assert CleanConfig().rules == [] and QualityConfig().gate.forbid == []
    df = pl.DataFrame({"a": [1]})
    out, changes = apply_rules(df, CleanConfig())
    assert out.equals(df) and changes == []


def test_drop_duplicates_subset_and_keep() -> None:
    df = pl.DataFrame({"_row_id": [1, 2, 3, 4, 5], "a": [1, 1, 2, 2, 3], "b": ["x", "x", "y", "z", "w"]})
    out, ch = _one(df, {"action": "drop_duplicates"})  # _row_id is bookkeeping, not compared
    assert ch["rows_dropped"] == 1 and out["_row_id"].to_list() == [1, 3, 4, 5]
    out, ch = _one(df, {"action": "drop_duplicates", "subset": ["a"], "keep": "last"})
    assert out["_row_id"].to_list() == [2, 4, 5] and ch["rows_dropped"] == 2 and ch["columns"] == ["a"]
    out, ch = _one(df, {"action": "drop_duplicates", "subset": ["a"], "keep": "none"})
    assert out["_row_id"].to_list() == [5] and ch["rows_dropped"] == 4


def test_merge_duplicates_takes_first_non_missing() -> None:
    df = pl.DataFrame({"id": [1, 1, 2, None], "email": [None, "a@x", "b@x", "c@x"], "age": [30, 31, None, 5]})
    out, ch = _one(df, {"action": "merge_duplicates", "keys": ["id"]})
    assert out.sort("id", nulls_last=True).rows() == [(1, "a@x", 30), (2, "b@x", None), (None, "c@x", 5)]
    assert ch["rows_dropped"] == 1 and ch["cells_changed"] == 1  # id 1's missing email filled from its twin
    assert ch["details"]["groups_merged"] == 1 and ch["details"]["conflicting_values"] == {"age": 1}


def test_impute_strategies_and_indicator() -> None:
    df = pl.DataFrame({"n": [1.0, None, 3.0, 10.0], "i": [1, 2, None, 2], "c": ["a", None, "b", "b"],
                       "y": [0, 1, None, 1]})
    out, ch = _one(df, {"action": "impute", "columns": ["n"], "strategy": "median", "indicator": True})
    assert out["n"].to_list() == [1.0, 3.0, 3.0, 10.0] and out["n__missing"].to_list() == [0, 1, 0, 0]
    assert ch["cells_changed"] == 1 and ch["rows_changed"] == 1 and ch["details"]["values"] == {"n": 3.0}
    out, ch = _one(df, {"action": "impute"}, target="y")  # every column with gaps but the target
    assert out["i"].to_list() == [1, 2, 2, 2] and out["c"].to_list() == ["a", "b", "b", "b"]
    assert out["y"].null_count() == 1 and ch["details"]["strategies"] == {"n": "median", "i": "median", "c": "mode"}
    assert ch["cells_changed"] == 3 and ch["rows_changed"] == 2
    out, ch = _one(df, {"action": "impute", "columns": ["c"], "strategy": "constant", "value": "?"})
    assert out["c"].to_list() == ["a", "?", "b", "b"] and ch["cells_changed"] == 1
    with pytest.raises(ConfigError, match=r"clean.rules\[0\].*median needs a numeric column, 'c'"):
        _one(df, {"action": "impute", "columns": ["c"], "strategy": "median"})
    with pytest.raises(ConfigError, match="needs a value"):
        _one(df, {"action": "impute", "strategy": "constant"})


def test_clip_and_drop_outliers() -> None:
    x = [*range(1, 21), 1000]  # one far outlier
    df = pl.DataFrame({"x": x, "f": [float(v) for v in x], "s": ["a"] * 21})
    out, ch = _one(df, {"action": "clip_outliers", "columns": ["x"]})
    lo, hi = ch["details"]["bounds"]["x"]
    assert out["x"].max() == hi < 1000 and out["x"].dtype == pl.Int64
    assert ch["cells_changed"] == 1 and ch["rows_dropped"] == 0
    out, ch = _one(df, {"action": "clip_outliers", "method": "quantile", "lower": 0.1, "upper": 0.9})
    assert ch["columns"] == ["x", "f"] and ch["cells_changed"] == ch["details"]["per_column"]["x"] * 2
    out, ch = _one(df, {"action": "drop_outliers", "columns": ["f"]})
    assert ch["rows_dropped"] == 1 and out.height == 20 and out["f"].max() == 20.0
    with pytest.raises(ConfigError, match="'s' is String, not numeric"):
        _one(df, {"action": "clip_outliers", "columns": ["s"]})


def test_normalize_text() -> None:
    df = pl.DataFrame({"s": ["  Ｈｅｌｌｏ   World ", "ok", "   ", None], "t": ["A", "B", "C", "D"]})
    out, ch = _one(df, {"action": "normalize_text", "columns": ["s"], "case": "lower"})
    assert out["s"].to_list() == ["hello world", "ok", None, None] and out["t"].to_list() == ["A", "B", "C", "D"]
    assert ch["cells_changed"] == 2 and ch["rows_changed"] == 2
    out, ch = _one(df, {"action": "normalize_text", "case": "upper", "unicode": None})
    assert out["s"][0] == "ＨＥＬＬＯ WORLD" and ch["columns"] == ["s", "t"]


def test_coerce_types_reports_failures_with_examples() -> None:
    df = pl.DataFrame({"n": ["1", " 2 ", "x", "", None], "f": ["1.5", "2", "3", "4", "5"],
                       "d": ["2024-01-02", "2024-02-03", "soon", None, "2024-03-04"],
                       "b": ["yes", "No", "1", "maybe", "f"]})
    out, ch = _one(df, {"action": "coerce_types", "columns": {"n": "numeric", "f": "numeric", "d": "datetime",
                                                              "b": "bool"}})
    assert out["n"].to_list() == [1, 2, None, None, None] and out["n"].dtype == pl.Int64
    assert out["f"].dtype == pl.Float64
    assert out["d"].dtype == pl.Datetime("us") and out["d"].null_count() == 2
    assert out["b"].to_list() == [True, False, True, None, False]
    per = ch["details"]["per_column"]
    assert per["n"]["failed"] == 1 and per["n"]["examples"] == ["x"] and per["n"]["blank_to_missing"] == 1
    assert per["d"]["failed"] == 1 and per["d"]["examples"] == ["soon"]
    assert per["b"]["failed"] == 1 and "maybe" in per["b"]["message"]
    assert per["f"]["failed"] == 0


def test_drop_columns_and_drop_rows() -> None:
    df = pl.DataFrame({"a": [1, -2, 3, None], "leak": [0, 1, 0, 1], "y": [0, 1, 0, 1]})
    out, ch = _one(df, {"action": "drop_columns", "columns": ["leak"]}, target="y")
    assert out.columns == ["a", "y"] and ch["columns"] == ["leak"]
    with pytest.raises(ConfigError, match="must not drop the target"):
        _one(df, {"action": "drop_columns", "columns": ["y"]}, target="y")
    out, ch = _one(df, {"action": "drop_rows", "expr": "a < 0"})
    assert out["a"].to_list() == [1, 3, None] and ch["rows_dropped"] == 1 and ch["columns"] == ["a"]


def _noisy_labels(seed: int = 7):
    rng = np.random.default_rng(seed)
    n = 1000
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    flipped = rng.choice(n, 20, replace=False)
    y[flipped] = 1 - y[flipped]
    df = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": np.where(y == 1, "yes", "no")})
    return df, flipped


def test_drop_and_relabel_label_issues() -> None:
    df, flipped = _noisy_labels()
    out, ch = _one(df, {"action": "drop_label_issues", "max_share": 0.03, "folds": 3}, target="label")
    assert 15 <= ch["rows_dropped"] <= 30 and out.height == df.height - ch["rows_dropped"]
    hit = {e["row"] for e in ch["details"]["examples"]}
    assert hit <= set(flipped.tolist())  # the surest suspects are planted flips
    out, ch = _one(df, {"action": "relabel_label_issues", "folds": 3, "min_confidence": 0.9}, target="label")
    changed = np.flatnonzero(out["label"].to_numpy() != df["label"].to_numpy())
    assert len(changed) == ch["cells_changed"] >= 10
    assert len(set(changed.tolist()) & set(flipped.tolist())) >= 0.8 * len(changed)
    with pytest.raises(ConfigError, match="needs the target column"):
        _one(df, {"action": "drop_label_issues"})


def test_unknown_column_names_rule_index_and_lists_columns() -> None:
    df = pl.DataFrame({"a": [1], "b": [2]})
    rules = [{"action": "drop_columns", "columns": ["b"]}, {"action": "impute", "columns": ["b"]}]
    with pytest.raises(ConfigError, match=r"clean.rules\[1\] \(impute\): column 'b' is not in the data; "
                                          r"available columns: a$"):
        apply_rules(df, rules)
    with pytest.raises(ConfigError, match=r"clean.rules\[0\]\.colums: Extra inputs are not permitted"):
        apply_rules(df, [{"action": "drop_columns", "columns": ["a"], "colums": 1}])
    with pytest.raises(ConfigError, match=r"clean.rules\[0\]: .*'shred'.*'drop_duplicates'"):
        parse_rules([{"action": "shred"}])


def test_plan_replays_on_new_records() -> None:
    train = pl.DataFrame({"age": [20.0, None, 40.0, 60.0, 1000.0], "city": [" paris ", "PARIS", "Lyon", None, "lyon"],
                          "n": ["1", "2", "3", "4", "5"], "leak": [1, 0, 1, 0, 1], "y": [1, 0, 1, 0, 1]})
    rules = [{"action": "drop_columns", "columns": ["leak"]},
             {"action": "coerce_types", "columns": {"n": "numeric"}},
             {"action": "impute", "columns": ["age", "city"], "strategy": "mode", "indicator": True},
             {"action": "normalize_text", "columns": ["city"], "case": "lower"},
             {"action": "clip_outliers", "columns": ["age"], "method": "quantile", "lower": 0.0, "upper": 0.75},
             {"action": "drop_duplicates"}]
    cleaned, changes, plan = fit_rules(train, rules, target="y")
    assert [c["action"] for c in changes] == [r["action"] for r in rules]
    assert plan.training_only == ["5:drop_duplicates"]
    restored = CleaningPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    live = pl.DataFrame({"age": [None, 5000.0], "city": [None, "  LYON "], "n": ["7", "x"], "leak": [0, 0]})
    out = restored.apply_inference(live)
    assert out.columns == [c for c in cleaned.columns if c != "y"] == plan.output_columns
    age_fill = changes[2]["details"]["values"]["age"]
    hi = changes[4]["details"]["bounds"]["age"][1]
    assert out["age"].to_list() == [min(age_fill, hi), hi]
    assert out["age__missing"].to_list() == [1, 0] and out["city__missing"].to_list() == [1, 0]
    assert out["city"].to_list() == [changes[2]["details"]["values"]["city"].strip().lower(), "lyon"]
    assert out["n"].to_list() == [7, None] and out["n"].dtype == cleaned["n"].dtype
    pdf = restored.apply_inference(live.to_pandas())
    assert isinstance(pdf, pd.DataFrame) and list(pdf.columns) == out.columns
    with pytest.raises(DataError, match=r"column 'age' is missing from the records"):
        restored.apply_inference(live.drop("age"))


def test_pandas_in_pandas_out() -> None:
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0], "s": ["x ", "y", None]})
    out, ch = apply_rules(df, [{"action": "impute", "columns": ["a"]}, {"action": "normalize_text"}])
    assert isinstance(out, pd.DataFrame) and out["a"].tolist() == [1.0, 2.0, 3.0]
    assert out["s"].tolist()[:2] == ["x", "y"] and ch[1]["cells_changed"] == 1


def test_every_action_has_a_model_and_an_implementation() -> None:
    import typing

    from modelloop.data._clean_rules import RULES
    from modelloop.data.quality_config import CLEAN_ACTIONS, CleanRule

    models = typing.get_args(typing.get_args(CleanRule)[0])
    tags = tuple(typing.get_args(m.model_fields["action"].annotation)[0] for m in models)
    assert tags == CLEAN_ACTIONS and set(RULES) == set(CLEAN_ACTIONS)
