"""Ingest computes the profile's column facts as it reads a Parquet source; `modelloop profile` reuses them.

The facts stored with a version must be exactly those the profile would compute from the version's
snapshot, and a profile that reuses them must not read those columns again (counted by the kernel, as in
test_ingest_reads.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelloop import Project, parse_config
from modelloop.data._profile import FACTS_FILE, profile_columns
from modelloop.data.quality_config import OutliersConfig
from modelloop.data.snapshot import snapshot_file


def _source(path: Path, n: int = 3_000, missing_target: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    y = rng.integers(0, 2, n).astype(float)
    if missing_target:
        y[:7] = np.nan
    df = pl.DataFrame({"id": [f"r{i}" for i in range(n)], "x": x, "k": rng.integers(0, 50, n),
                       "c": rng.choice(["a", "b", "c"], n), "amount": [str(v) for v in rng.integers(0, 9, n)],
                       "when": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1) + pl.duration(
                           hours=n - 1), "1h", eager=True),
                       "flag": rng.random(n) < 0.3, "y": y}, nan_to_null=False)
    # several row groups: the snapshot's (16,384 rows) differ from the source's, and the facts must not care
    df.write_parquet(path, row_group_size=700)
    return df


def _project(root: Path, **quality) -> Project:
    cfg = {"name": "f", "data": {"source": "t.parquet", "target": "y", "id": "id"}}
    if quality:
        cfg["quality"] = quality
    return Project(parse_config(cfg, root=root))


def _report(p: Project) -> dict:
    r = p.profile()
    r.pop("duration_s", None)
    r.pop("report", None)
    return r


def _facts_path(p: Project) -> Path:
    from modelloop.data.ingest import dataset_row

    return Path(dataset_row(p.workspace, None)["path"]) / FACTS_FILE


def test_ingest_stores_the_profiles_column_facts_and_the_profile_equals_one_without_them(tmp_path):
    _source(tmp_path / "t.parquet")
    p = _project(tmp_path)
    p.ingest()
    stored = json.loads(_facts_path(p).read_text())
    assert stored["rows"] == 3_000 and list(stored["columns"]) == ["id", "x", "k", "c", "amount", "when", "flag", "y"]
    assert stored["columns"]["amount"]["dtype"] == "Int64"  # the checked column (text of numbers), as stored

    with_facts = _report(p)
    _facts_path(p).unlink()
    without = _report(p)
    assert with_facts == without  # every figure, to the last digit

    # and the stored facts are those of the snapshot's columns, read from the snapshot
    schema = p.workspace.catalog.latest_dataset("f")["schema"]["columns"]
    snap = pl.read_parquet(snapshot_file(_facts_path(p).parent)).drop("_row_id").fill_nan(None)
    assert json.loads(json.dumps(profile_columns(snap, schema, OutliersConfig()))) == stored["columns"]


def test_a_profile_after_ingest_does_not_read_the_columns_again(tmp_path):
    """The version's snapshot is opened once per batch of columns fewer when its stored facts are given
    (the profile alone, on the version as ``modelloop profile`` scans it; without the split shift, whose
    threads open the file a varying number of times)."""
    from test_ingest_reads import FileOpens

    from modelloop.data._tables import column_batches
    from modelloop.data.quality import profile
    from modelloop.data.schema import Schema
    from modelloop.data.stages import _stored_facts

    _source(tmp_path / "t.parquet")
    p = _project(tmp_path)
    p.ingest()
    row = p.workspace.catalog.latest_dataset("f")
    snapshot = snapshot_file(row["path"])
    schema, cfg = Schema.from_dict(row["schema"]), p.workspace.config.quality
    opens = FileOpens(snapshot)
    try:
        opens.count()
        with_facts = profile(pl.scan_parquet(snapshot).drop("_row_id"), schema, cfg, facts=_stored_facts(row)).to_dict()
        reads_with = opens.count()
        without = profile(pl.scan_parquet(snapshot).drop("_row_id"), schema, cfg).to_dict()
        reads_without = opens.count()
    finally:
        opens.close()
    batches = column_batches(pl.read_parquet_schema(snapshot), list(schema.columns))
    assert reads_without - reads_with == len(batches) == 3, (reads_with, reads_without)
    assert {**with_facts, "duration_s": 0} == {**without, "duration_s": 0}


def test_facts_are_recomputed_when_the_outlier_settings_differ(tmp_path, monkeypatch):
    import modelloop.data.quality as quality

    _source(tmp_path / "t.parquet")
    _project(tmp_path).ingest()
    p = _project(tmp_path, outliers={"method": "zscore"})
    computed: list[str] = []
    real = quality.profile_columns

    def counted(df, *args):
        computed.extend(df.columns)
        return real(df, *args)

    monkeypatch.setattr(quality, "profile_columns", counted)
    r = _report(p)
    assert sorted(computed) == sorted(["id", "x", "k", "c", "amount", "when", "flag", "y"])
    assert r["columns"]["x"]["outliers"]["method"] == "zscore"
    computed.clear()
    _report(_project(tmp_path))  # the ingest's settings: nothing computed again
    assert computed == []


def test_no_facts_are_stored_when_ingest_drops_rows_and_a_text_column_of_many_values_is_left_to_the_profile(
        tmp_path, monkeypatch):
    import modelloop.data._checked as checked

    _source(tmp_path / "t.parquet", missing_target=True)
    p = _project(tmp_path)
    assert p.ingest()["rows"] == 2_993
    assert not _facts_path(p).exists()  # the pass read the 7 dropped rows too
    assert _report(p)["columns"]["x"]["rows"] == 2_993

    (tmp_path / "many").mkdir()
    _source(tmp_path / "many" / "t.parquet")
    monkeypatch.setattr(checked, "_FEW_DISTINCT", 100)  # "id" has 3,000 distinct values, "c" 3
    p = _project(tmp_path / "many")
    p.ingest()
    stored = json.loads(_facts_path(p).read_text())["columns"]
    assert "id" not in stored and "c" in stored
    with_facts = _report(p)
    _facts_path(p).unlink()
    assert with_facts == _report(p)


def test_mean_and_std_do_not_depend_on_how_the_column_is_chunked():
    rng = np.random.default_rng(3)
    values = pl.Series("v", rng.lognormal(0, 2, 50_000))
    chunked = pl.concat([values.slice(i, 777) for i in range(0, len(values), 777)], rechunk=False)
    assert chunked.n_chunks() > 1
    whole = profile_columns(values.to_frame(), {}, OutliersConfig())["v"]
    parts = profile_columns(chunked.to_frame(), {}, OutliersConfig())["v"]
    assert whole == parts
    assert whole["mean"] == pytest.approx(float(np.mean(values.to_numpy())), rel=1e-12)
    assert whole["std"] == pytest.approx(float(np.std(values.to_numpy(), ddof=1)), rel=1e-12)


@pytest.mark.parametrize("values", [
    ["yes", "no", None, "YES"] * 50,
    [str(v) for v in range(200)] + ["n/a"] * 3,
    [f"2024-01-{d % 28 + 1:02d}" for d in range(300)] + [None],
    ["the card was paid online late at night"] * 120 + ["x"],
    [f"user{i}@mail.org" for i in range(300)],
    ["a", "b", "c"] * 100,
    [None] * 10,
])
def test_a_text_column_counted_by_polars_gets_the_kind_pandas_gives_it(values):
    from modelloop.data.sources import _counted_text_kind, _infer_kind

    column = pl.Series("col", values, dtype=pl.String)
    assert _counted_text_kind(column) == _infer_kind(column.to_pandas())
    assert _counted_text_kind(column.cast(pl.Categorical)) == _infer_kind(pd.Series(values, name="col").astype("category"))


def test_the_key_check_is_read_from_the_facts_of_a_key_whose_values_are_all_distinct():
    from modelloop.data._checks import key_checks
    from modelloop.data.quality import profile
    from modelloop.data.schema import Schema

    n = 400
    ids = pl.Series("id", [f"r{i}" if i % 9 else None for i in range(n)])
    df = pl.DataFrame({"id": ids, "x": np.arange(n, dtype=float), "y": np.arange(n) % 2})
    report = profile(df, Schema(columns={"id": "identifier", "x": "numeric", "y": "categorical"}, target="y", id="id"))
    checks = [c for c in report.checks if c["name"] == "key_agreement:id"]
    expected, findings = key_checks(df, ["id"], "quality.keys")
    assert not findings and [(c["checked"], c["failed"]) for c in checks] == [(e.checked, e.failed) for e in expected]
    assert checks[0]["checked"] == n - len(range(0, n, 9))


if not sys.platform.startswith("linux"):  # the read count is inotify's
    test_a_profile_after_ingest_does_not_read_the_columns_again = pytest.mark.skip(  # type: ignore[assignment]
        reason="inotify is Linux's")(test_a_profile_after_ingest_does_not_read_the_columns_again)
