"""Chinese-aware cleaning and augmentation (issue 26 part 5): full-width/half-width folding and
traditional -> simplified folding replayed by the cleaning plan at inference, and augmentation that
edits Chinese without breaking it (character edits, punctuation back and forth, a bundled synonym list)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from modelloop.data.augment import augment_frame, augment_text, load_synonyms
from modelloop.data.cleaning import CleaningPlan, fit_rules


def test_width_and_traditional_folding_are_learned_and_replayed():
    df = pl.DataFrame({"t": ["這個產品很好！ＯＫ　ｇｏｏｄ", "这个产品很好!OK good", None], "y": [1, 1, 0]})
    rule = {"action": "normalize_text", "unicode": None, "width": "half", "traditional_to_simplified": True}
    out, _, plan = fit_rules(df, [rule], target="y")
    assert out["t"].to_list()[:2] == ["这个产品很好!OK good"] * 2  # one text, whichever script and width
    replayed = CleaningPlan.from_dict(plan.to_dict()).apply_records([{"t": "退款很慢，服務很差！"}])
    assert replayed == [{"t": "退款很慢,服务很差!"}]  # the served request goes through the same steps
    wide = fit_rules(pl.DataFrame({"t": ["OK 1!"]}), [{"action": "normalize_text", "unicode": None,
                                                      "width": "full", "collapse_whitespace": False}])[0]
    assert wide["t"].to_list() == ["ＯＫ　１！"]


def test_default_normalisation_is_unchanged():
    """Plans written before the Chinese options replay as they did (no width step, no folding)."""
    out, _, plan = fit_rules(pl.DataFrame({"t": ["這個 ＯＫ"]}), [{"action": "normalize_text"}])
    assert out["t"].to_list() == ["這個 OK"]  # NFKC folds the width, traditional characters stay
    assert plan.steps[0]["width"] == "none" and plan.steps[0]["traditional_to_simplified"] is False


def test_chinese_augmentation_keeps_words_whole():
    rng = np.random.default_rng(0)
    syn = load_synonyms("zh")  # the bundled list
    assert "非常" in syn["很"] and "很" in syn["非常"]
    text = "这个东西质量很好，快递也很快！"
    for _ in range(20):
        swapped = augment_text(text, "swap", rng=rng, p=0.3, synonyms=syn)
        assert sorted(swapped) == sorted(text)  # the same characters: whole words moved, never one alone
        for word in ("东西", "质量", "快递"):
            assert word in swapped
    plain = "我的卡被扣了两次钱"  # no word from the list: swap and delete leave its characters alone
    assert augment_text(plain, "swap", rng=rng, p=0.5) == plain
    assert augment_text(plain, "delete", rng=rng, p=0.5) == plain
    edited = augment_text(plain, "char", rng=rng, p=0.2)
    assert edited != plain and set(edited) == set(plain) and len(edited) - len(plain) in (0, 1)
    assert augment_text("退款很慢，谢谢！", "punct", rng=rng, p=1.0) == "退款很慢,谢谢!"
    assert augment_text("refund, please.", "punct", rng=rng, p=1.0) == "refund， please。"
    assert augment_text(text, "synonym", rng=rng, p=0.5, synonyms=syn) != text


def test_augment_frame_takes_the_new_operations(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"m": ["快递太慢了，很失望！", "质量很好，推荐购买。"], "y": ["neg", "pos"]})
    rows, report = augment_frame(df, "m", n_per_example=4, p=0.3, synonyms=load_synonyms("zh"),
                                 ops=["char", "punct", "synonym"], seed=0)
    assert len(rows) == report["rows_added"] > 0 and set(report["by_op"]) == {"char", "punct", "synonym"}
    assert not set(rows["m"]) & set(df["m"])
    from modelloop.errors import ConfigError
    from modelloop.families.text.config import parse_text_config

    assert parse_text_config({"augment": {"ops": ["char", "punct"], "synonyms": "zh"}}).augment.ops == ["char", "punct"]
    with pytest.raises(ConfigError, match="model.augment.ops"):
        parse_text_config({"augment": {"ops": ["shuffle"]}})
