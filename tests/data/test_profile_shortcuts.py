"""Shortcuts of the profile and of ingest's kind inference that must give what the long way gives.

A whole text column's kind is counted by Polars (pandas sees only its distinct values); a key column
whose facts show every present value distinct skips the key search; the numeric facts read integers and
floats without a float copy per expression.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest


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
    as_categories = pd.Series(values, name="col").astype("category")
    assert _counted_text_kind(column.cast(pl.Categorical)) == _infer_kind(as_categories)


def test_a_long_text_column_between_sampled_shares_is_counted_whole_with_the_same_schema():
    """e-mail addresses, a third of them distinct: neither few nor nearly all distinct, so the kind rules
    read the whole column (``_kind_values``); counted by Polars now, the same kind as read by pandas."""
    from modelloop.data.sources import _infer_kind, _kind_values, infer_schema

    n = 60_000
    email = pl.Series("email", [f"user{(i * 7919) % (n // 3)}@mail.org" for i in range(n)])
    assert _kind_values(email, whole=False) is None  # not sampled: read whole
    frame = pl.DataFrame({"email": email, "y": np.arange(n) % 2})
    schema = infer_schema(frame.lazy(), target="y")
    assert schema.columns["email"] == _infer_kind(email.to_pandas()) == "categorical"


def test_the_key_check_is_read_from_the_facts_of_a_key_whose_values_are_all_distinct(monkeypatch):
    import modelloop.data.quality as quality
    from modelloop.data._checks import key_checks
    from modelloop.data.schema import Schema

    n = 400
    ids = pl.Series("id", [f"r{i}" if i % 9 else None for i in range(n)])
    df = pl.DataFrame({"id": ids, "x": np.arange(n, dtype=float), "y": np.arange(n) % 2})
    schema = Schema(columns={"id": "identifier", "x": "numeric", "y": "categorical"}, target="y", id="id")
    searched: list[list[str]] = []
    monkeypatch.setattr(quality, "key_checks", lambda data, keys, where: searched.append(keys) or key_checks(
        data, keys, where))
    report = quality.profile(df, schema)
    assert searched == []  # every present id is distinct: no search
    checks = [(c["checked"], c["failed"]) for c in report.checks if c["name"] == "key_agreement:id"]
    expected, findings = key_checks(df, ["id"], "quality.keys")
    assert not findings and checks == [(e.checked, e.failed) for e in expected] == [(n - 45, 0)]

    repeated = df.with_columns(pl.when(pl.col("x") == 5).then(pl.lit("r1")).otherwise(pl.col("id")).alias("id"))
    report = quality.profile(repeated, schema)
    assert searched == [["id"]]  # a repeated id: searched, and found
    assert any(f.kind == "duplicate_keys" for f in report.findings)


def test_numeric_facts_of_integers_and_floats_are_those_of_their_float_copy():
    from modelloop.data._profile import profile_columns
    from modelloop.data.quality_config import OutliersConfig

    rng = np.random.default_rng(5)
    n = 3_000
    floats = rng.normal(size=n)
    floats[:4] = [np.inf, -np.inf, 0.0, -0.0]
    df = pl.DataFrame({
        "i": rng.integers(-(2**62), 2**62, n), "u": rng.integers(0, 2**63, n).astype(np.uint64),
        "small": rng.integers(-3, 3, n).astype(np.int8), "gap": pl.Series(rng.integers(0, 9, n)).scatter([2, 5], None),
        "f": floats, "f32": rng.normal(size=n).astype(np.float32),
    })
    facts = profile_columns(df, {}, OutliersConfig())
    for c in df.columns:
        x = df.get_column(c).cast(pl.Float64)
        expected = {"min": x.min(), "max": x.max(), "mean": x.mean(), "std": x.std(), "zeros": int((x == 0).sum()),
                    "negatives": int((x < 0).sum()), "infinite": int(x.is_infinite().sum())}
        expected = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in expected.items()}
        assert {k: facts[c][k] for k in expected} == expected, c


@pytest.mark.parametrize("case", ["distinct", "distinct_with_missing", "one_repeat", "few_values"])
def test_a_text_columns_distinct_count_from_its_hashes_is_the_exact_count(case, monkeypatch):
    """Every value distinct is proved by as many distinct hashes (no hash table of the strings); a repeat
    (or a collision) falls back to the exact count. Same figure either way."""
    import modelloop.data._profile as profile_module
    from modelloop.data.quality_config import OutliersConfig

    n = 12_000
    values: list[str | None] = [f"user{i}@mail.org" for i in range(n)]
    if case == "distinct_with_missing":
        values[::7] = [None] * len(values[::7])
    elif case == "one_repeat":
        values[-1] = values[0]
    elif case == "few_values":
        values = [f"v{i % 40}" for i in range(n)]
    column = pl.Series("c", values, dtype=pl.String)
    hashed: list[int | None] = []
    real = profile_module._all_distinct
    monkeypatch.setattr(profile_module, "_all_distinct", lambda s: hashed.append(real(s)) or hashed[-1])
    facts = profile_module.profile_columns(column.to_frame(), {}, OutliersConfig())["c"]
    assert facts["distinct"] == column.drop_nulls().n_unique()
    assert (hashed[0] is not None) == case.startswith("distinct")  # the shortcut where it proves something
