"""integrate(): union and join of sources, conflicts as source_conflict findings, key errors."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

from modelloop.data.integrate import integrate
from modelloop.data.quality import profile
from modelloop.errors import ConfigError, DataError

CRM = pl.DataFrame({"cid": [1, 2, 3, 4], "email": ["a@x", "b@x", "c@x", None], "age": [30, 40, 50, 60]})
BILLING = pl.DataFrame({"cid": [2, 3, 4, 5], "email": ["b@x", "C@x", "d@x", "e@x"], "plan": ["p", "q", "r", "s"]})


def test_union_keeps_rows_and_reports_conflicts() -> None:
    out, findings = integrate({"crm": CRM, "billing": BILLING}, how="union", keys=["cid"])
    assert out.height == 8 and out["_source"].to_list() == ["crm"] * 4 + ["billing"] * 4
    assert set(out.columns) == {"cid", "email", "age", "plan", "_source"}
    (f,) = findings
    assert (f.kind, f.column, f.severity, f.count) == ("source_conflict", "email", "warning", 1)
    assert "cid=3" in f.message and "'c@x' (crm)" in f.message and "'C@x' (billing)" in f.message
    assert f.details["checked"] == 3 and f.details["sources"] == ["billing", "crm"]


def test_join_prefers_the_first_source_and_fills_its_gaps() -> None:
    out, findings = integrate({"crm": CRM, "billing": BILLING}, how="join", keys=["cid"])
    assert out.columns == ["cid", "email", "age", "plan"] and out.height == 4  # left join onto crm
    assert out.sort("cid")["email"].to_list() == ["a@x", "b@x", "c@x", "d@x"]  # 4's gap filled from billing
    (f,) = findings
    assert f.kind == "source_conflict" and f.column == "email" and f.count == 1 and f.details["checked"] == 2
    full, _ = integrate({"crm": CRM, "billing": BILLING}, how="join", keys=["cid"], join_type="full")
    assert sorted(full["cid"].to_list()) == [1, 2, 3, 4, 5]


def test_duplicate_keys_in_a_joined_source_do_not_multiply_rows() -> None:
    dup = pl.concat([BILLING, BILLING.head(1)])
    out, findings = integrate({"crm": CRM, "billing": dup}, how="join", keys=["cid"])
    assert out.height == CRM.height
    assert [(f.kind, f.count) for f in findings if f.kind == "duplicate_keys"] == [("duplicate_keys", 1)]


def test_missing_key_and_bad_arguments() -> None:
    with pytest.raises(DataError, match=r"source 'billing' has no key column 'cid'; its columns: email, plan"):
        integrate({"crm": CRM, "billing": BILLING.drop("cid")}, how="join", keys=["cid"])
    with pytest.raises(ConfigError, match="needs keys"):
        integrate({"crm": CRM, "billing": BILLING}, how="join")
    with pytest.raises(ConfigError, match="empty"):
        integrate({})
    with pytest.raises(DataError, match=r"column 'age' is Int64 in source 'crm' but String in source 'other'"):
        integrate({"crm": CRM, "other": pl.DataFrame({"cid": [9], "age": ["old"]})})


def test_conflicts_lower_the_consistency_score() -> None:
    out, findings = integrate({"crm": CRM, "billing": BILLING}, how="join", keys=["cid"])
    plain = profile(out, None, {"label_issues": {"enabled": False}})
    merged = profile(out, None, {"label_issues": {"enabled": False}}, findings=findings)
    assert plain.scores["consistency"] == 100.0 and merged.scores["consistency"] == pytest.approx(50.0)
    assert any(f.kind == "source_conflict" for f in merged.findings)


def test_pandas_in_pandas_out() -> None:
    out, findings = integrate({"a": CRM.to_pandas(), "b": BILLING.to_pandas()}, how="join", keys=["cid"])
    assert isinstance(out, pd.DataFrame) and len(findings) == 1
