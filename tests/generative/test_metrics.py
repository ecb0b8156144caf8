"""The text scores against their definitions, on cases worked by hand."""

from __future__ import annotations

import pytest

from modelloop.families.generative.metrics import chrf, exact_match, is_label_set, perplexity, rouge_l, text_metrics


def test_exact_match_folds_case_space_and_final_punctuation():
    assert exact_match("  Returns within 30 DAYS. ", "returns within 30 days") == 1.0
    assert exact_match("30天内可以退货。", "30天内可以退货") == 1.0
    assert exact_match("yes", "no") == 0.0


def test_rouge_l_is_the_lcs_f1_with_cjk_characters_as_tokens():
    # LCS of "a b c d" and "a c d e" is "a c d": P = R = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    # 30 天 内 可 以 退 货 (7) vs 30 天 内 退 货 (5): LCS 5 -> P 5/7, R 1 -> F1 = 10/12
    assert rouge_l("30天内可以退货", "30天内退货") == pytest.approx(10 / 12)
    assert rouge_l("", "x") == 0.0


def test_chrf_by_hand():
    assert chrf("abc", "abc") == pytest.approx(1.0)
    # "ab" vs "abc": n=1 P 2/2 R 2/3; n=2 P 1/1 R 1/2; n>=3 has no prediction n-grams (skipped)
    p, r = 1.0, (2 / 3 + 1 / 2) / 2
    assert chrf("ab", "abc") == pytest.approx(5 * p * r / (4 * p + r))
    assert chrf("xyz", "abc") == 0.0


def test_label_accuracy_only_when_the_answers_are_labels():
    labels = ["refund", "delivery", "refund", "delivery"]
    scored = text_metrics(labels, ["refund", "refund", "refund", "delivery"])
    assert scored["label_accuracy"] == scored["exact_match"] == 0.75
    assert is_label_set(labels) and not is_label_set(["one long free answer here", "another one"])
    assert "label_accuracy" not in text_metrics(["a b c d e f"], ["a b c"])


def test_perplexity_is_exp_of_mean_nll():
    assert perplexity(0.0, 10) == 1.0
    assert perplexity(10 * 2.0, 10) == pytest.approx(7.389056, rel=1e-6)
    assert perplexity(1.0, 0) is None
