"""profile() on a LazyFrame or a scanned Parquet file gives the eager report: same scores, findings,
column facts, duplicates and label-issue suspects (rows are positions in the whole table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from modelloop.data.quality import QualityReport, profile
from modelloop.data.quality_config import QualityConfig
from modelloop.data.schema import Schema

N = 3000


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """Numbers with NaN and missing values, categories, an id, a leak, duplicates and noisy labels."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 3))
    y = ((x[:, 0] + x[:, 1] > 0) ^ (rng.random(N) < 0.03)).astype(np.int64)
    m = rng.normal(size=N)
    m[rng.random(N) < 0.05] = np.nan
    df = pl.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "m": m,
                       "cat": rng.choice(["a", "b", "c"], N), "const": ["EUR"] * N,
                       "leak": y + rng.normal(0, 0.05, N), "id": [f"r{i}" for i in range(N)], "y": y})
    df = df.with_columns(pl.when(pl.col("x3") > 1.5).then(None).otherwise(pl.col("cat")).alias("cat"))
    return pl.concat([df, df.head(25).with_columns(pl.lit("dup").alias("id")), df.slice(100, 5)])


def _report(data: object) -> QualityReport:
    schema = Schema(columns={"x1": "numeric", "x2": "numeric", "x3": "numeric", "m": "numeric",
                             "cat": "categorical", "const": "categorical", "leak": "numeric", "id": "identifier",
                             "y": "categorical"}, target="y", id="id")
    cfg = QualityConfig(sample_rows=1000, label_issues={"max_rows": 2000, "top": 20})
    return profile(data, schema, cfg, seed=3)


def _comparable(report: QualityReport) -> dict:
    d = report.to_dict()
    d.pop("duration_s")
    for facts in d["columns"].values():  # sums in another chunk order may differ in the last bit
        for key in ("mean", "std"):
            if facts.get(key) is not None:
                facts[key] = pytest.approx(facts[key], rel=1e-12)
    return d


@pytest.mark.parametrize("source", ["lazy", "parquet_scan", "parquet_path"])
def test_lazy_profile_matches_eager(table: pl.DataFrame, tmp_path: Path, source: str) -> None:
    path = tmp_path / "t.parquet"
    table.write_parquet(path, row_group_size=500)  # several row groups: the scan really streams
    data = {"lazy": table.lazy(), "parquet_scan": pl.scan_parquet(path), "parquet_path": path}[source]
    eager, lazy = _report(table), _report(data)
    assert lazy.scores == eager.scores
    assert [f.to_dict() for f in lazy.findings] == [f.to_dict() for f in eager.findings]
    assert _comparable(lazy) == _comparable(eager)
    assert eager.duplicates["rows"] == 5 and eager.label_issues and eager.sampled["rows"] == 1000
    assert {f.kind for f in eager.findings} >= {"duplicate_rows", "duplicate_keys", "constant_column",
                                                "missing_values", "target_leakage"}
