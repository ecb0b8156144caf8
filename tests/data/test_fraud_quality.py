"""The quality report on the bundled fraud example: what it reports must be what a user should act on.

A leak that is not a clean copy of the target is still reported (and the gate can refuse it), and
label suspects that are really overlapping classes are not offered for deletion.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from modelloop.data.quality import QualityReport, profile
from modelloop.data.schema import Schema
from modelloop.examples.fraud import generate_transactions

TARGET = "is_fraud"
SCHEMA = Schema(columns={"transaction_id": "identifier", "customer_id": "identifier", TARGET: "categorical"},
                target=TARGET)


@pytest.fixture(scope="module")
def fraud() -> pl.DataFrame:
    """4000 generated transactions (~80 fraud rows)."""
    return pl.from_pandas(generate_transactions(4000, seed=1))


def _with_flag_copy(df: pl.DataFrame) -> pl.DataFrame:
    """A 0/1 column that agrees with the label on 99% of rows: 85% of the fraud and 1% of the rest are
    flagged, as a chargeback flag filled in after the fact would be. Out of fold it scores an AUC of
    about 0.92: under the 0.95 that flags a column on its own, well above every honest column."""
    rng = np.random.default_rng(0)
    y = df.get_column(TARGET).to_numpy()
    flag = np.where(y == 1, rng.random(len(y)) < 0.85, rng.random(len(y)) < 0.01).astype(np.int64)
    assert (flag == y).mean() >= 0.99
    return df.with_columns(fraud_flag_copy=pl.Series(flag))


def _leaks(report: QualityReport) -> dict[str, dict]:
    return {f.column: {"severity": f.severity, "message": f.message, **f.details}
            for f in report.findings_of("target_leakage")}


def test_a_column_far_ahead_of_the_rest_is_reported_as_possible_leakage(fraud: pl.DataFrame) -> None:
    leaky = _with_flag_copy(fraud)
    report = profile(leaky, SCHEMA, {"label_issues": {"enabled": False}})
    score = report.leakage["fraud_flag_copy"]["score"]
    honest = max(r["score"] for c, r in report.leakage.items() if c != "fraud_flag_copy")
    assert 0.9 <= score < 0.95 and score - honest >= 0.05, report.leakage  # the case the dominance rule is for
    leak = _leaks(report)["fraud_flag_copy"]
    assert leak["severity"] == "warning" and leak["score"] == score and leak["threshold"] == 0.9
    assert leak["next_score"] == honest and leak["next_column"] in leak["message"]
    assert "fraud_flag_copy" in leak["message"] and "possible target leakage" in leak["message"]
    assert report.passed  # reported, not refused, unless the gate asks for it
    assert "fraud_flag_copy" in report.to_html()

    refused = profile(leaky, SCHEMA, {"label_issues": {"enabled": False}, "gate": {"fail_on_leakage": True}})
    (failed,) = refused.gate["failed"]
    assert (failed["check"], failed["column"], failed["value"]) == ("fail_on_leakage", "fraud_flag_copy", score)
    assert "fail_on_leakage" in failed["message"]


def test_honest_columns_are_not_reported_as_leakage(fraud: pl.DataFrame) -> None:
    report = profile(fraud, SCHEMA, {"label_issues": {"enabled": False}, "gate": {"fail_on_leakage": True}})
    assert _leaks(report) == {} and report.passed


def test_a_dominant_column_of_a_regression_target_is_reported(fraud: pl.DataFrame) -> None:
    """R² 0.86 from a noisy copy of the amount, against 0.3 for the best honest column."""
    rng = np.random.default_rng(0)
    amount = fraud.get_column("amount").to_numpy()
    df = fraud.drop(TARGET).with_columns(amount_billed=pl.Series(amount + rng.normal(0, 0.4 * amount.std(),
                                                                                     len(amount))))
    report = profile(df, Schema(columns={"transaction_id": "identifier", "customer_id": "identifier"},
                                target="amount"), {"label_issues": {"enabled": False}}, task="regression")
    assert list(_leaks(report)) == ["amount_billed"]
    assert 0.8 <= _leaks(report)["amount_billed"]["score"] < 0.95


def test_suspects_are_counted_per_class_and_an_overlapping_class_is_not_offered_for_deletion(
        fraud: pl.DataFrame) -> None:
    """About a fifth of the ~80 fraud rows look genuine to the out-of-fold model: 0.8% of all rows, but
    far too many of the minority class to be wrong labels. The report says the classes overlap and
    does not suggest the clean rules that would delete them."""
    report = profile(fraud, SCHEMA)
    (found,) = report.findings_of("label_issues")
    per_class = {c["label"]: c for c in found.details["per_class"]}
    fraud_rows = int(fraud.get_column(TARGET).sum())
    assert per_class[1]["rows"] == fraud_rows and per_class[0]["rows"] == fraud.height - fraud_rows
    assert sum(c["suspects"] for c in per_class.values()) == found.count
    assert per_class[1]["share"] > 0.1 > per_class[0]["share"] and per_class[1]["suggested"] == 0
    assert found.details["overlapping_classes"] == [1]
    assert "overlap" in found.message and f"of {fraud_rows} (" in found.message
    assert "drop_label_issues" not in found.message and "relabel_label_issues" not in found.message
    assert "Label suspects per class" in report.to_html()


@pytest.mark.parametrize("action", ["drop_label_issues", "relabel_label_issues"])
def test_label_rules_refuse_to_remove_a_large_share_of_a_class(fraud: pl.DataFrame, action: str) -> None:
    from modelloop.data.cleaning import apply_rules
    from modelloop.errors import DataError

    data = fraud.drop("transaction_id", "customer_id")
    with pytest.raises(DataError, match=rf"clean.rules\[0\] \({action}\): would \w+ \d+ of the \d+ rows labelled 1 "
                                        r"\(\d+\.\d%\), more than max_class_share = 0.1.*set max_class_share: "):
        apply_rules(data, [{"action": action}], target=TARGET)
    out, (change,) = apply_rules(data, [{"action": action, "max_class_share": 1}], target=TARGET)
    fraud_rows = int(fraud.get_column(TARGET).sum())
    assert change["rows_dropped"] + change["rows_changed"] == change["details"]["acted_on"] > 0.1 * fraud_rows
