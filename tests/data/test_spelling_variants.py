"""The profile's spelling_variants finding: one category spelt several ways, and a clean rule that merges them.

Found walking an exported loans table whose target held 'yes', 'no' and ' yes ' (padded): the profile
reported ' yes ' only as a tiny class of its own, and nothing proposed the fix.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from modelloop.data.cleaning import fit_rules
from modelloop.data.quality import QualityReport, profile
from modelloop.data.quality_config import QualityConfig
from modelloop.data.schema import Schema

CFG = {"label_issues": {"enabled": False}, "leakage": {"enabled": False}}


def _loans() -> pl.DataFrame:
    deny = ["no"] * 200 + ["yes"] * 80 + [" yes "] * 16
    return pl.DataFrame({"deny": deny, "income": [float(i % 37) for i in range(len(deny))]})


def _variants(report: QualityReport, column: str) -> dict:
    found = [f for f in report.findings if f.kind == "spelling_variants" and f.column == column]
    assert len(found) == 1, [f.message for f in report.findings]
    return found[0].to_dict()


def test_padded_target_class_is_named_with_the_rule_that_merges_it() -> None:
    df = _loans()
    report = profile(df, Schema(columns={"deny": "categorical", "income": "numeric"}, target="deny"), CFG)
    f = _variants(report, "deny")
    assert f["severity"] == "warning" and f["count"] == 16
    assert f["message"].startswith("target 'deny': ' yes ' (16 rows) is 'yes' (80 rows) but for spaces")
    assert "the clean rule {action: normalize_text, columns: [deny], strip: true} (under clean.rules) merges them" in f["message"]
    assert f["details"]["rule"] == {"action": "normalize_text", "columns": ["deny"], "strip": True}
    imbalance = next(x for x in report.findings if x.kind == "class_imbalance")
    assert "' yes ' is 'yes' spelt differently" in imbalance.message

    # the suggested rule, as the finding gives it, merges the classes (the target is not skipped)
    cleaned, changes, plan = fit_rules(df, [f["details"]["rule"]], target="deny")
    assert changes[0]["cells_changed"] == 16
    assert cleaned.get_column("deny").value_counts().sort("deny").rows() == [("no", 200), ("yes", 96)]
    again = profile(cleaned, Schema(columns={"deny": "categorical", "income": "numeric"}, target="deny"), CFG)
    assert not again.findings_of("spelling_variants")
    assert [c["value"] for c in again.target["classes"]] == ["no", "yes"]
    # serving's records carry no target: the plan's step on it is skipped, not an error
    assert plan.apply_records([{"income": 3.0}]) == [{"income": 3.0}]


@pytest.mark.parametrize(("values", "setting", "reason", "merged"), [
    (["Yes"] * 40 + ["YES"] * 4 + ["yes "] * 3 + ["No"] * 53, {"strip": True, "case": "lower"},
     "spaces and letter case", {"yes", "no"}),
    (["PARIS"] * 40 + ["Paris"] * 3 + ["LYON"] * 57, {"case": "upper"}, "letter case", {"PARIS", "LYON"}),
    (["ＡＢＣ"] * 3 + ["ABC"] * 40 + ["DEF"] * 57, {"unicode": "NFKC"}, "character width", {"ABC", "DEF"}),
    (["New  York"] * 3 + ["New York"] * 40 + ["Boston"] * 57, {"collapse_whitespace": True}, "spaces",
     {"New York", "Boston"}),
])
def test_feature_spellings_are_grouped_and_the_rule_merges_them(values, setting, reason, merged) -> None:
    df = pl.DataFrame({"c": values})
    f = _variants(profile(df, Schema(columns={"c": "categorical"}), CFG), "c")
    assert f["details"]["rule"] == {"action": "normalize_text", "columns": ["c"], **setting}
    assert f["details"]["groups"][0]["differs_by"] == reason.split(" and ")
    assert f["severity"] == "warning" and f["message"].startswith("column 'c': ")
    cleaned, _, _ = fit_rules(df, [f["details"]["rule"]])
    assert set(cleaned.get_column("c").unique()) == merged


def test_traditional_and_simplified_spellings_are_one_city() -> None:
    pytest.importorskip("opencc")
    df = pl.DataFrame({"city": ["東京"] * 5 + ["东京"] * 45 + ["上海"] * 50})
    f = _variants(profile(df, Schema(columns={"city": "categorical"}), CFG), "city")
    assert "'東京' (5 rows) is '东京' (45 rows) but for traditional/simplified characters" in f["message"]
    cleaned, _, _ = fit_rules(df, [f["details"]["rule"]])
    assert set(cleaned.get_column("city").unique()) == {"东京", "上海"}


def test_a_rare_feature_spelling_is_info_and_everything_else_is_quiet() -> None:
    notes = [f"Customer {i} said the order was late" for i in range(500)]
    df = pl.DataFrame({
        "grade": ["A"] * 600 + ["B"] * 399 + ["a"],      # 0.1% of the rows: info
        "clean": ["x", "y"] * 500,                        # one spelling each: nothing
        "note": [t.upper() for t in notes[:10]] + notes[10:] + notes,  # free text, not categories: not looked at
    })
    report = profile(df, None, CFG)
    assert report.columns["note"]["inferred_kind"] == "text"
    f = _variants(report, "grade")
    assert f["severity"] == "info" and f["count"] == 1
    assert {x.column for x in report.findings_of("spelling_variants")} == {"grade"}


def test_the_finding_is_in_the_json_the_html_and_the_gate() -> None:
    report = profile(_loans(), Schema(columns={"deny": "categorical", "income": "numeric"}, target="deny"),
                     {**CFG, "gate": {"forbid": [{"kind": "spelling_variants", "severity": "warning"}]}})
    d = json.loads(report.to_json())
    assert any(f["kind"] == "spelling_variants" for f in d["findings"])
    assert all(not k.startswith("_") for c in d["columns"].values() for k in c)  # working facts are dropped
    assert QualityReport.from_dict(d).to_dict() == d
    assert "spelling_variants" in report.to_html() and "' yes ' (16 rows)" in report.to_html().replace("&#x27;", "'")
    assert not report.passed
    assert QualityConfig(gate={"forbid": [{"kind": "spelling_variants"}]}).gate.forbid[0].kind == "spelling_variants"


def test_type_mismatch_examples_are_distinct_values() -> None:
    df = pl.DataFrame({"when": ["2023-01-01"] * 20 + ["not a date"] * 10 + ["soon"] + ["not a date"] * 5})
    report = profile(df, Schema(columns={"when": "datetime"}), CFG)
    f = next(x for x in report.findings if x.kind == "type_mismatch")
    assert f.details["examples"] == ["not a date", "soon"]
    assert "(e.g. 'not a date', 'soon')" in f.message


def test_the_cli_table_shows_the_rule_as_written(monkeypatch) -> None:
    import io

    from rich.console import Console

    from modelloop import ui

    report = profile(_loans(), Schema(columns={"deny": "categorical", "income": "numeric"}, target="deny"),
                     {**CFG, "gate": {"forbid": [{"kind": "spelling_variants"}]}}).to_dict()
    buf = io.StringIO()
    monkeypatch.setattr(ui, "out", Console(file=buf, width=400, color_system=None))
    ui.render_profile({**report, "dataset": {"version": 1, "id": "x", "rows": 296}})
    text = buf.getvalue()
    # '[deny]' is the rule's columns list, not rich markup to swallow
    assert "the clean rule {action: normalize_text, columns: [deny], strip: true} (under clean.rules) merges them" in text
    assert text.count("columns: [deny]") == 2  # the table and the failed gate's line
