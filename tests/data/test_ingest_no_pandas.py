"""Ingest of a Parquet source reads its columns with Polars from end to end: the schema's rules, the
target's checks and the frozen split give what pandas gives, and pandas is never imported (its import was
42 MiB of the 1M-row ingest's peak, issue 18 item 6)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelloop.data.sources import _column_kind, _pandas_dtype, infer_schema
from modelloop.data.snapshot import ROW_ID
from modelloop.data.split import check_target, make_split
from modelloop.errors import DataError

N = 3_000
RNG = np.random.default_rng(0)


def _columns(n: int = N) -> dict[str, pl.Series]:
    """Columns of every kind, and the edges of the rules: gaps, all missing, shares near the bars."""
    rng = np.random.default_rng(1)
    gaps = rng.random(n) < 0.1
    ints = rng.integers(0, 50, n)
    numbers_as_text = np.where(rng.random(n) < 0.9, rng.integers(0, 99, n).astype(str), "n/a")
    day = dt.datetime(2024, 1, 1)
    return {
        "x": pl.Series(rng.normal(size=n)), "x32": pl.Series(rng.normal(size=n), dtype=pl.Float32),
        "k": pl.Series(ints), "k_gap": pl.Series([None if g else int(v) for g, v in zip(gaps, ints, strict=True)]),
        "user_id": pl.Series(np.arange(n)), "order_id": pl.Series(np.arange(n) % (n - 1)),
        "u8": pl.Series(ints.astype(np.uint8)), "flag": pl.Series(rng.random(n) < 0.3),
        "flag_gap": pl.Series([None if g else bool(v) for g, v in zip(gaps, rng.random(n) < 0.5, strict=True)]),
        "flag_none": pl.Series([None] * n, dtype=pl.Boolean),
        "cat": pl.Series(rng.choice(["L0_1", "L0_2", "L0_3"], n)),
        "cat_enum": pl.Series(rng.choice(["p", "q"], n)).cast(pl.Categorical),
        "yes_no": pl.Series(rng.choice(["Yes", "no", "Y"], n)),
        "amount": pl.Series(numbers_as_text), "amount_low": pl.Series(np.where(gaps, "x", numbers_as_text)),
        "code": pl.Series([f"m{i % 25:02d}" for i in range(n)]), "month": pl.Series(rng.choice(["may", "jun"], n)),
        "city": pl.Series([f"City{v:04d}" for v in rng.integers(0, 5000, n)]),
        "email": pl.Series([f"user{(i * 7919) % 100_000}@mail.org" for i in range(n)]),
        "words": pl.Series([" ".join(rng.choice(["a", "card", "paid", "late\u3000night"], 5)) for _ in range(n)]),
        "sep": pl.Series([f"a\x1cb c{i % 7}" for i in range(n)]),
        "dates_text": pl.Series([(day + dt.timedelta(days=int(d))).strftime("%d/%m/%Y") for d in rng.integers(0, 400, n)]),
        "iso_text": pl.Series([(day + dt.timedelta(hours=int(d))).isoformat() for d in rng.integers(0, 9000, n)]),
        "when": pl.Series([day + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 10**6, n)]),
        "when_utc": pl.Series([day + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 10**6, n)]).dt.replace_time_zone("UTC"),
        "when_paris": pl.Series([day + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 10**6, n)],
                                dtype=pl.Datetime("ms")).dt.replace_time_zone("Europe/Paris"),
        "day": pl.Series([day.date() + dt.timedelta(days=int(d)) for d in rng.integers(0, 400, n)]),
        "wait": pl.Series([dt.timedelta(seconds=int(s)) for s in rng.integers(0, 100, n)]),
        "text_gap": pl.Series([None if g else f"t{i % 40}" for i, g in enumerate(gaps)]),
    }


def test_polars_reads_every_kind_and_dtype_as_pandas_does():
    """Each column's kind and dtype from Polars (no pandas unless a rule needs it) is pandas' reading."""
    long_text = {"note": pl.Series([f"note {i % 900} of the day" for i in range(60_000)]),
                 "ids": pl.Series([f"T{i}" for i in range(60_000)])}  # sampled: past 2 x _SAMPLE_ROWS
    for name, column in {**_columns(), **long_text}.items():
        column = column.alias(name)
        assert _column_kind(column) == _column_kind(column.to_pandas()), name
        assert _pandas_dtype(column) == str(column.to_pandas().dtype), name
    frame = pl.DataFrame(_columns())
    polars_schema = infer_schema(frame.lazy(), target="k", id="user_id")
    assert polars_schema == infer_schema(frame.to_pandas(), target="k", id="user_id")
    assert polars_schema.columns["city"] == "categorical" and polars_schema.columns["dates_text"] == "datetime"
    assert polars_schema.datetime_formats == {"dates_text": "%d/%m/%Y"}


@pytest.mark.parametrize("strategy, roles", [
    ("stratified", {"target": "k"}), ("stratified", {"target": "cat"}), ("stratified", {"target": "flag"}),
    ("stratified", {"target": "cat_enum"}), ("stratified", {"target": "rare"}), ("random", {"target": "k"}),
    ("group", {"target": "k", "group": "text_gap"}), ("group", {"target": "k", "group": "k_gap"}),
    ("time", {"target": "k", "time": "when"}), ("time", {"target": "k", "time": "day"}),
    ("time", {"target": "k", "time": "iso_text"}), ("user", {"target": "k", "user": "code", "time": "when"}),
])
def test_the_split_of_a_polars_frame_is_the_pandas_split(strategy, roles):
    columns = _columns()
    rare = columns["cat"].to_list()
    rare[7] = "only once"  # a class with one row trains
    frame = pl.DataFrame({ROW_ID: RNG.integers(-2**62, 2**62, N), **columns, "rare": pl.Series(rare)})
    for seed in (0, 5):
        got = make_split(frame, strategy=strategy, test_size=0.2, seed=seed, **roles)
        want = make_split(frame.to_pandas(), strategy=strategy, test_size=0.2, seed=seed, **roles)
        assert isinstance(got, pl.DataFrame) and got[ROW_ID].to_list() == want[ROW_ID].tolist()
        assert got["split"].cast(pl.String).to_list() == want["split"].tolist()


@pytest.mark.parametrize("values, task", [
    ([3, 3, None], "classification"), (["a", "a"], "classification"), ([True, True], "classification"),
    (["a", "b"], "regression"), ([True, None, False], "regression"), ([None, None], "classification"),
    ([1.5, float("nan")], "classification"), ([1, 2], "regression"), (["a", "b"], "classification"),
])
def test_the_target_check_says_what_pandas_says(values, task):
    y = pl.Series("y", values)
    errors = []
    for given in (y, y.to_pandas()):
        try:
            check_target(given, task, "y")
            errors.append(None)
        except DataError as exc:
            errors.append(str(exc))
    assert errors[0] == errors[1]


_INGEST = textwrap.dedent("""
    import json, sys
    from modelloop import Project, parse_config
    p = Project(parse_config(json.loads(sys.argv[1]), root=sys.argv[2]))
    row = p.ingest()
    print(json.dumps({"pandas": "pandas" in sys.modules, "id": row["id"], "rows": row["rows"]}))
""")


def _ingest_in_a_new_process(tmp_path, config) -> dict:
    done = subprocess.run([sys.executable, "-c", _INGEST, json.dumps(config), str(tmp_path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_PANDAS_READS = ("dates_text", "iso_text", "wait", "flag_none")  # text of dates, durations, all missing


def _parquet_project(tmp_path) -> pl.DataFrame:
    frame = pl.DataFrame({k: v for k, v in _columns().items() if k not in _PANDAS_READS})
    frame = frame.with_columns(y=pl.Series(RNG.integers(0, 3, N)), x=pl.col("x").fill_nan(None))
    frame.with_columns(pl.when(pl.int_range(N) == 5).then(None).otherwise(pl.col("y")).alias("y")).write_parquet(
        tmp_path / "t.parquet")
    return frame


def test_a_parquet_ingest_never_imports_pandas_and_freezes_pandas_split(tmp_path):
    _parquet_project(tmp_path)
    config = {"name": "np", "task": "classification", "data": {"source": "t.parquet", "target": "y"}}
    got = _ingest_in_a_new_process(tmp_path, config)
    assert not got["pandas"] and got["rows"] == N - 1  # the row without a target is dropped
    # the stored split reads back in pandas as the split pandas made of the same role columns did
    from modelloop import Project, parse_config
    from modelloop.data.ingest import split_key

    p = Project(parse_config(config, root=tmp_path))
    stored = p.workspace.catalog.get_split(got["id"], split_key(p.config))
    roles = pd.read_parquet(tmp_path / ".modelloop" / "datasets" / got["id"] / "data.parquet", columns=[ROW_ID, "y"])
    want = make_split(roles, strategy="stratified", test_size=0.2, seed=p.config.split.seed, target="y")
    pd.testing.assert_frame_equal(pd.read_parquet(stored["path"]), want)
    assert stored["counts"] == {k: int(v) for k, v in want["split"].value_counts().items()}
    assert list(stored["counts"]) == ["train", "test"]


def test_a_parquet_ingest_that_infers_the_task_never_imports_pandas(tmp_path):
    _parquet_project(tmp_path)
    got = _ingest_in_a_new_process(tmp_path, {"name": "np", "data": {"source": "t.parquet", "target": "y"}})
    assert not got["pandas"]
