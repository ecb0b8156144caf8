"""profile(): planted problems are found, scores move the right way, the gate names its failures,
and the JSON/HTML outputs keep their contract."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import polars as pl
import pytest

from modelloop.data.quality import QualityReport, profile
from modelloop.data.quality_config import SEVERITIES, QualityConfig
from modelloop.data.schema import Schema
from modelloop.errors import ConfigError, DataError

N = 1000
FLIPPED = 20
DUPES = 10


@pytest.fixture(scope="module")
def planted() -> tuple[pl.DataFrame, Schema, np.ndarray]:
    """1000 separable rows + 10 exact duplicates, with one planted problem per column."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(N, 4))
    y_true = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    flipped = rng.choice(np.arange(100, N), FLIPPED, replace=False)  # rows < 100 are the duplicated ones
    y = y_true.copy()
    y[flipped] = 1 - y[flipped]
    m = rng.normal(size=N)
    m[rng.choice(np.arange(100, N), 50, replace=False)] = np.nan  # 5% missing, none in duplicated rows
    df = pl.DataFrame({
        "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "x4": x[:, 3], "m": m,
        "const": ["EUR"] * N,
        "leak": y + rng.normal(0, 0.05, N),  # the given label plus noise
        "code": [f"{i:05d}" for i in range(N)],
        "email": [f"user{i}@example.com" for i in range(N)],
        "y": y,
    })
    df = pl.concat([df, df.head(DUPES)])
    schema = Schema(columns={"x1": "numeric", "x2": "numeric", "x3": "numeric", "x4": "numeric", "m": "numeric",
                             "const": "categorical", "leak": "numeric", "code": "identifier",
                             "email": "identifier", "y": "categorical"}, target="y")
    return df, schema, flipped


@pytest.fixture(scope="module")
def report(planted: tuple[pl.DataFrame, Schema, np.ndarray]) -> QualityReport:
    df, schema, _ = planted
    return profile(df, schema, QualityConfig(label_issues={"top": 50}))


def _kinds(report: QualityReport, kind: str) -> list:
    return [f for f in report.findings if f.kind == kind]


def test_planted_problems_are_found(report: QualityReport) -> None:
    missing = {f.column: f for f in _kinds(report, "missing_values")}
    assert set(missing) == {"m"}
    assert missing["m"].count == 50
    assert report.columns["m"]["missing_share"] == pytest.approx(50 / (N + DUPES))

    dup = _kinds(report, "duplicate_rows")
    assert len(dup) == 1 and dup[0].count == DUPES and report.duplicates["rows"] == DUPES

    assert [f.column for f in _kinds(report, "constant_column")] == ["const"]

    leak = {f.column: f for f in _kinds(report, "target_leakage")}
    assert set(leak) == {"leak"} and leak["leak"].severity == "error"
    assert report.leakage["leak"]["score"] > 0.99
    assert report.leakage["x1"]["score"] < 0.9  # a useful feature is not a leak


def test_flipped_labels_lead_the_suspects(report: QualityReport, planted) -> None:
    _, _, flipped = planted
    top = [s["row"] for s in report.label_issues]
    assert len(top) <= 50
    assert len(set(top) & set(flipped.tolist())) >= 15
    first = report.label_issues[0]
    assert {"row", "given_label", "suggested_label", "confidence"} <= set(first)
    assert first["given_label"] != first["suggested_label"] and first["confidence"] > 0.5
    assert [s["confidence"] - s["given_label_prob"] for s in report.label_issues] == sorted(
        (s["confidence"] - s["given_label_prob"] for s in report.label_issues), reverse=True)
    (finding,) = _kinds(report, "label_issues")
    assert finding.column == "y" and finding.count >= 15
    # 2% of each class flipped: label noise, not overlapping classes, so the clean rules are offered
    assert [c["label"] for c in finding.details["per_class"]] == [0, 1]
    assert all(c["share"] < 0.1 for c in finding.details["per_class"]) and not finding.details["overlapping_classes"]
    assert "drop_label_issues" in finding.message


def test_column_facts(report: QualityReport) -> None:
    x1 = report.columns["x1"]
    assert x1["inferred_kind"] == "numeric" and x1["min"] < x1["quantiles"]["p25"] < x1["quantiles"]["p75"] < x1["max"]
    assert sum(x1["histogram"]["counts"]) == N + DUPES
    assert len(x1["histogram"]["edges"]) == len(x1["histogram"]["counts"]) + 1
    code = report.columns["code"]
    assert code["patterns"]["digits"] == 1.0 and code["shapes"][0]["shape"] == "9"
    assert code["len_min"] == code["len_max"] == 5
    email = report.columns["email"]
    assert email["patterns"]["email"] == 1.0 and email["shapes"][0]["shape"] == "a9@a.a"
    assert report.columns["const"]["top"][0] == {"value": "EUR", "count": N + DUPES, "share": 1.0}
    assert report.target["task"] == "classification" and {c["value"] for c in report.target["classes"]} == {0, 1}


def test_json_contract(report: QualityReport) -> None:
    d = json.loads(report.to_json())
    assert {"rows", "columns_count", "scores", "gate", "columns", "findings", "label_issues", "shift"} <= set(d)
    assert d["rows"] == N + DUPES and d["columns_count"] == 10 and d["shift"] is None
    assert set(d["scores"]) == {"completeness", "validity", "consistency", "overall"}
    assert all(0 <= v <= 100 for v in d["scores"].values())
    assert d["gate"] == {"passed": True, "failed": []}
    for f in d["findings"]:
        assert {"kind", "column", "severity", "count", "message"} <= set(f)
        assert f["severity"] in SEVERITIES and isinstance(f["count"], int) and f["message"]
    ranks = [SEVERITIES.index(f["severity"]) for f in d["findings"]]
    assert ranks == sorted(ranks, reverse=True)
    back = QualityReport.from_dict(d)
    assert back.to_dict() == d


def test_html_is_self_contained_and_ordered(report: QualityReport) -> None:
    html = report.to_html()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("<svg") >= 5
    assert html.index("overall") < html.index("Findings") < html.index("Columns")
    assert html.index("target_leakage") < html.index("missing_values")  # error before warning

    class Check(HTMLParser):
        pass

    Check().feed(html)  # parses without error


def test_pandas_input_gives_the_same_counts(planted) -> None:
    df, schema, _ = planted
    cfg = QualityConfig(label_issues={"enabled": False}, leakage={"enabled": False})
    a = profile(df, schema, cfg)
    b = profile(df.to_pandas(), schema, cfg)
    assert a.scores == b.scores and a.duplicates == b.duplicates
    assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]


def test_empty_config_and_no_schema_work() -> None:
    df = pl.DataFrame({"a": [1, 2, 3, None], "b": ["x", "y", "x", "z"], "_row_id": [1, 2, 3, 4]})
    r = profile(df)
    assert r.passed and set(r.columns) == {"a", "b"}  # internal '_' columns are not profiled
    assert r.columns["b"]["inferred_kind"] == "categorical"
    assert profile(df, None, {}).scores == r.scores
    dup = pl.concat([df, df.head(1).with_columns(pl.lit(9, dtype=pl.Int64).alias("_row_id"))])
    assert profile(dup).duplicates["rows"] == 1  # row ids differ, the data does not


def test_label_suspects_carry_row_ids(planted) -> None:
    df, schema, flipped = planted
    with_ids = df.with_row_index("_row_id", offset=1000)
    r = profile(with_ids, schema, {"leakage": {"enabled": False}})
    assert all(s["row_id"] == s["row"] + 1000 for s in r.label_issues)


def _rules_frame() -> pl.DataFrame:
    return pl.DataFrame({
        "age": [10, 20, 130, -1, 50, None],
        "email": ["a@x.io", "bad", "c@x.io", "d@x.io", None, "e@x.io"],
        "country": ["FR", "FR", "DE", "XX", "IT", "FR"],
        "cid": [1, 2, 2, 3, 4, 5],
        "amount": ["1.5", "2", "oops", "3", "", "n/a"],
        "start": [1, 2, 3, 4, 5, 6],
        "end": [2, 2, 1, 5, None, 0],
    })


def test_declared_rules_count_violations() -> None:
    cfg = QualityConfig(rules={
        "age": {"min": 0, "max": 120, "not_null": True},
        "email": {"regex": r"[^@]+@[^@]+\.[a-z]+"},
        "country": {"allowed": ["FR", "DE", "IT"]},
        "cid": {"unique": True},
    }, label_issues={"enabled": False})
    schema = Schema(columns={"age": "numeric", "email": "categorical", "country": "categorical", "cid": "numeric",
                             "amount": "numeric", "start": "numeric", "end": "numeric"})
    r = profile(_rules_frame(), schema, cfg)
    got = {(f.column, f.details.get("rule")): f.count for f in r.findings
           if f.kind in ("rule_violation", "type_mismatch")}
    assert got == {("age", "min"): 1, ("age", "max"): 1, ("age", "not_null"): 1, ("email", "regex"): 1,
                   ("country", "allowed"): 1, ("cid", "unique"): 1, ("amount", "kind"): 2}
    mismatch = next(f for f in r.findings if f.kind == "type_mismatch")
    assert mismatch.column == "amount" and "oops" in mismatch.message and "n/a" in mismatch.message
    assert r.scores["validity"] < 90


def test_a_date_column_with_utc_offsets_is_checked_as_training_reads_dates() -> None:
    """API exports write times with their offset. Polars' reader, which the kind check used, refused to be
    evaluated lazily on them, so ``modelloop profile`` of any such column exited 2 blaming ``quality.rules``
    (none declared); and its one format guessed from the first value made a column mixing offsets and local
    times half 'not dates'. The check reads dates as training does: only the value no reader takes is one."""
    times = ["2024-03-05T10:55:00+02:00", "2024-03-06T08:00:00Z", "2024-03-07 09:00:00", "soon", None,
             "0001-01-01T02:00:01+02:01"]
    frame = pl.DataFrame({"at": times, "y": [0, 1, 0, 1, 0, 1]})
    r = profile(frame.lazy(), Schema(columns={"at": "datetime", "y": "categorical"}, target="y"),
                QualityConfig(label_issues={"enabled": False}))
    [mismatch] = [f for f in r.findings if f.kind == "type_mismatch"]
    assert mismatch.column == "at" and mismatch.count == 2
    assert "soon" in mismatch.message and "0001-01-01T02:00:01+02:01" in mismatch.message


def test_scores_move_the_right_way() -> None:
    rng = np.random.default_rng(0)
    base = pl.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "start": np.arange(500),
                         "end": np.arange(500) + 1})
    cfg = QualityConfig(rules={"a": {"min": -10, "max": 10}}, checks=[{"name": "order", "expr": "end >= start"}],
                        label_issues={"enabled": False})
    clean = profile(base, None, cfg).scores
    assert clean["completeness"] == clean["validity"] == clean["consistency"] == 100.0
    worse = base.with_columns(
        pl.when(pl.int_range(500) % 5 == 0).then(None).otherwise(pl.col("b")).alias("b"),
        pl.when(pl.int_range(500) % 10 == 0).then(99.0).otherwise(pl.col("a")).alias("a"),
        pl.when(pl.int_range(500) % 4 == 0).then(pl.col("start") - 1).otherwise(pl.col("end")).alias("end"),
    )
    bad = profile(worse, None, cfg).scores
    assert bad["completeness"] < clean["completeness"]
    assert bad["validity"] == pytest.approx(95.0)  # mean of the checks a.min (100%) and a.max (90%)
    assert bad["consistency"] == pytest.approx(75.0)
    assert bad["overall"] < clean["overall"]


def test_gate_fails_with_named_checks(planted) -> None:
    df, schema, _ = planted
    cfg = QualityConfig(
        label_issues={"enabled": False},
        gate={"min_completeness": 99.9, "max_missing_share": 0.01, "max_duplicate_share": 0.005,
              "forbid": [{"kind": "target_leakage", "severity": "warning"}]})
    r = profile(df, schema, cfg)
    failed = {(f["check"], f["column"]) for f in r.gate["failed"]}
    assert failed == {("min_completeness", None), ("max_missing_share", "m"), ("max_duplicate_share", None),
                      ("forbid:target_leakage", "leak")}
    assert not r.passed and all(f["message"] for f in r.gate["failed"])
    with pytest.raises(DataError, match="quality gate"):
        r.raise_for_gate()
    strict = profile(df, schema, QualityConfig(label_issues={"enabled": False}, gate={"fail_on_severity": "error"}))
    assert {f["column"] for f in strict.gate["failed"]} == {"leak"}


def test_cross_checks_and_keys() -> None:
    df = pl.DataFrame({"id": [1, 2, 2, 3, 3], "name": ["a", "b", "b", "c", "C"], "start": [1, 5, 5, 2, 2],
                       "end": [2, 4, 4, 3, 3]})
    r = profile(df, Schema(columns={"id": "identifier", "name": "categorical", "start": "numeric",
                                    "end": "numeric"}, id="id"),
                {"checks": [{"name": "ordered", "expr": "end >= start"}]})
    (check,) = [f for f in r.findings if f.kind == "check_failed"]
    assert check.count == 2 and check.details["rows"] == [1, 2]
    (dups,) = [f for f in r.findings if f.kind == "duplicate_keys"]
    assert dups.column == "id" and dups.count == 2
    (conflict,) = [f for f in r.findings if f.kind == "key_conflict"]
    assert conflict.column == "name" and conflict.count == 1  # id 3 is 'c' and 'C'
    assert r.scores["consistency"] < 100


def test_unknown_columns_in_config_are_config_errors() -> None:
    df = pl.DataFrame({"a": [1, 2], "b": [3, 4]})
    with pytest.raises(ConfigError, match=r"quality.rules.*'nope'.*available columns: a, b"):
        profile(df, None, {"rules": {"nope": {"min": 0}}})
    with pytest.raises(ConfigError, match=r"quality.checks\[0\].*'zzz'.*available columns: a, b"):
        profile(df, None, {"checks": [{"name": "c", "expr": "a > zzz"}]})
    with pytest.raises(ConfigError, match="not supported"):
        profile(df, None, {"checks": [{"name": "c", "expr": "__import__('os')"}]})
    with pytest.raises(ConfigError, match=r"quality.gate.nope: Extra inputs are not permitted"):
        profile(df, None, {"gate": {"nope": 1}})
    with pytest.raises(DataError, match="'ghost' is in the schema"):
        profile(df, Schema(columns={"a": "numeric", "ghost": "numeric"}))


def test_shift_against_reference() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    ref = pl.DataFrame({"moved": rng.normal(size=n), "same": rng.normal(size=n),
                        "cat": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})
    cur = pl.DataFrame({"moved": rng.normal(size=n) + 1.0, "same": rng.normal(size=n),
                        "cat": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})
    schema = Schema(columns={"moved": "numeric", "same": "numeric", "cat": "categorical", "y": "categorical"},
                    target="y")
    r = profile(cur, schema, {"label_issues": {"enabled": False}}, reference=ref)
    assert r.shift["moved"]["drifted"] and not r.shift["same"]["drifted"] and not r.shift["cat"]["drifted"]
    assert [f.column for f in r.findings if f.kind == "split_shift"] == ["moved"]
    assert "Shift against the reference" in r.to_html()
    assert r.sampled["shift"] == {"reference": {"rows": n, "of": n}, "current": {"rows": n, "of": n}}
    assert "shift on" not in r.to_html()  # every row compared: nothing sampled to mention

    small = profile(cur, schema, {"label_issues": {"enabled": False}, "shift": {"max_rows": 1000}}, reference=ref)
    assert small.sampled["shift"] == {"reference": {"rows": 1000, "of": n}, "current": {"rows": 1000, "of": n}}
    assert small.shift["moved"]["drifted"] and not small.shift["same"]["drifted"]
    assert all(abs(b["current"] * 1000 - round(b["current"] * 1000)) < 1e-6 for b in small.shift["same"]["bins"])
    assert "reference/current shift on 1,000 + 1,000 sampled rows" in small.to_html()


def test_outliers_imbalance_and_correlation() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    a = rng.normal(size=n)
    a[:20] = 50.0
    b = rng.normal(size=n)
    df = pl.DataFrame({"a": a, "b": b, "b2": b * 2 + rng.normal(0, 0.01, n),
                       "y": (rng.random(n) < 0.03).astype(int)})
    schema = Schema(columns={"a": "numeric", "b": "numeric", "b2": "numeric", "y": "categorical"}, target="y")
    r = profile(df, schema, {"label_issues": {"enabled": False}})
    (out,) = [f for f in r.findings if f.kind == "outliers" and f.column == "a"]
    assert out.count == 20
    assert [f.column for f in r.findings if f.kind == "class_imbalance"] == ["y"]
    assert [(p["a"], p["b"]) for p in r.correlations] == [("b", "b2")]


def test_leakage_auc_ranks_are_scipys() -> None:
    """The leakage check's AUC ranks ties like ``scipy.stats.rankdata`` (the profile does not import SciPy)."""
    from scipy.stats import rankdata

    from modelloop.data._checks import _average_ranks

    rng = np.random.default_rng(0)
    for a in (rng.normal(size=500), rng.integers(0, 7, 500).astype(float), np.round(rng.random(2000), 2),
              np.array([3.0])):
        assert np.array_equal(_average_ranks(a), rankdata(a))


def test_duplicate_rows_and_keys_are_exact() -> None:
    """The row hash is folded from per-column hashes and its repeats found by sorting: the counts are exact
    (``height - n_unique``), with missing values, several dtypes and as many colliding keys as rows."""
    from modelloop.data._checks import duplicate_rows, key_checks

    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 57, 400):
        df = pl.DataFrame({"a": rng.integers(0, 3, n), "f": rng.random(n) < 0.5,
                           "s": pl.Series([("x", "y", None)[i] for i in rng.integers(0, 3, n)], dtype=pl.String),
                           "k": rng.integers(0, max(n // 2, 1), n)})
        for cols in (["a"], ["a", "s"], ["a", "f", "s"], ["s", "k"]):
            assert duplicate_rows(df.select(cols)) == (df.height - df.select(cols).n_unique() if n else 0)
        checks, findings = key_checks(df, ["k"], "quality.keys")
        repeats = int(df.select((~pl.col("k").is_first_distinct()).sum()).item()) if n else 0
        assert [f.count for f in findings if f.kind == "duplicate_keys"] == ([repeats] if repeats else [])


def test_allocator_setting_is_made_before_polars_loads() -> None:
    """``import modelloop`` sets Polars' jemalloc options unless the user did; Polars' own default, which a
    parent that imported Polars passes down, is replaced."""
    import os
    import subprocess
    import sys

    code = "import modelloop, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"
    for given, expected in ((None, "dirty_decay_ms:100,muzzy_decay_ms:0"),
                            ("dirty_decay_ms:500,muzzy_decay_ms:1000", "dirty_decay_ms:100,muzzy_decay_ms:0"),
                            ("narenas:1", "narenas:1")):
        env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
        if given is not None:
            env["_RJEM_MALLOC_CONF"] = given
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"dirty_decay_ms:500,muzzy_decay_ms:1000,{expected}"


def test_arrow_allocates_from_the_c_library_unless_the_user_chose_a_pool() -> None:
    """``import modelloop`` makes pyarrow's default pool the system allocator (ingest's snapshot write then
    peaks lower, see ``modelloop/__init__.py``); a pool the user named wins."""
    import os
    import subprocess
    import sys

    code = "import modelloop, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    for given, expected in ((None, "system"), ("mimalloc", "mimalloc")):
        env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
        if given is not None:
            env["ARROW_DEFAULT_MEMORY_POOL"] = given
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_distinct_counts_and_quantiles_of_numbers_and_dates_are_those_of_the_whole_column() -> None:
    """They are read from one sorted copy of each column now; the same values as Polars' hash-based
    ``n_unique`` and its ``quantile`` of the unsorted column (NaN, missing, infinite values, integers
    with and without gaps, unsigned integers, dates)."""
    import datetime as dt

    from modelloop.data._profile import QUANTILES, profile_columns
    from modelloop.data.quality_config import OutliersConfig

    rng = np.random.default_rng(4)
    n = 5000
    floats = rng.normal(size=n)
    floats[rng.random(n) < 0.05] = np.nan
    floats[:3] = [np.inf, -np.inf, np.inf]
    df = pl.DataFrame({
        "f": floats, "f_null": pl.Series(rng.normal(size=n)).scatter(rng.choice(n, 50, replace=False), None),
        "i": rng.integers(-40, 40, n), "i_gap": pl.Series(rng.integers(0, 9, n)).scatter([1, 7], None),
        "u": rng.integers(0, 2**40, n).astype(np.uint64), "small": rng.integers(0, 3, n).astype(np.int8),
        "when": [dt.datetime(2024, 1, 1) + dt.timedelta(hours=int(h)) for h in rng.integers(0, 900, n)],
        "day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 40, n)],
    })
    facts = profile_columns(df, {}, OutliersConfig())
    for c in df.columns:
        col = df.get_column(c)
        assert facts[c]["distinct"] == col.n_unique() - (1 if col.null_count() else 0), c
        if col.dtype.is_numeric():
            expected = df.select(pl.col(c).cast(pl.Float64).quantile(list(QUANTILES))).item().to_list()
            got = list(facts[c]["quantiles"].values())
            assert [None if v != v else v for v in expected] == got, c
