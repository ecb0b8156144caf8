"""Text data: folders of .txt files per class, EDA augmentation, and the ``model:`` config section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelloop.data.augment import augment_frame, augment_text, load_synonyms
from modelloop.data.text_folder import read_text_folder
from modelloop.errors import ConfigError, DataError
from modelloop.families.text.config import TextModelConfig, parse_text_config


# --------------------------------------------------------------------------- text folders
def test_reads_one_folder_per_class(tmp_path):
    (tmp_path / "pos" / "more").mkdir(parents=True)
    (tmp_path / "neg").mkdir()
    (tmp_path / "pos" / "1.txt").write_text("great phone\n", encoding="utf-8")
    (tmp_path / "pos" / "more" / "2.txt").write_text("\ufeff质量很好", encoding="utf-8")
    (tmp_path / "neg" / "1.txt").write_text("电池太差了，不推荐", encoding="gb18030")   # not UTF-8
    (tmp_path / "neg" / "2.txt").write_text("   ", encoding="utf-8")                   # empty: skipped
    (tmp_path / "neg" / "notes.md").write_text("ignored", encoding="utf-8")
    (tmp_path / "neg" / ".hidden.txt").write_text("ignored", encoding="utf-8")
    (tmp_path / "README.txt").write_text("not in a class folder", encoding="utf-8")
    report: dict = {}
    df = read_text_folder(tmp_path, report=report)
    assert list(df.columns) == ["text", "label"]
    assert df.to_dict("records") == [{"text": "电池太差了，不推荐", "label": "neg"},
                                     {"text": "great phone", "label": "pos"},
                                     {"text": "质量很好", "label": "pos"}]
    assert report["classes"] == {"neg": 1, "pos": 2} and report["encodings"] == {"gb18030": 1, "utf-8": 2}
    assert {s["reason"] for s in report["skipped_files"]} == {"empty", "not .txt"}
    assert report["ignored_top_level_files"] == ["README.txt"]


def test_text_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        read_text_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no class sub-folders"):
        read_text_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no non-empty .txt files"):
        read_text_folder(tmp_path)


# --------------------------------------------------------------------------- augmentation
def test_synonyms_are_symmetric_groups_from_a_file_or_a_mapping(tmp_path):
    path = tmp_path / "syn.json"
    path.write_text(json.dumps({"Refund": ["reimbursement"], "退款": "退钱"}, ensure_ascii=False), encoding="utf-8")
    syn = load_synonyms("syn.json", root=tmp_path)
    assert syn == {"refund": ["reimbursement"], "reimbursement": ["refund"], "退款": ["退钱"], "退钱": ["退款"]}
    assert load_synonyms(None) == {}
    with pytest.raises(ConfigError, match="file not found"):
        load_synonyms("missing.json", root=tmp_path)
    with pytest.raises(ConfigError, match="list of strings"):
        load_synonyms({"a": [1, 2]})


def test_each_operation():
    rng = np.random.default_rng(0)
    syn = load_synonyms({"refund": ["reimbursement"], "退款": ["退钱"]})
    text = "I want a refund for my order, please!"
    swapped = augment_text(text, "swap", rng=rng, p=0.2)
    assert sorted(swapped.replace(",", "").replace("!", "").split()) == \
        sorted(text.replace(",", "").replace("!", "").split())
    assert swapped != text and swapped.count(",") == 1 and swapped.endswith("!")
    deleted = augment_text(text, "delete", rng=rng, p=0.3)
    assert 0 < len(deleted.split()) < len(text.split())
    assert augment_text(text, "synonym", rng=rng, p=0.1, synonyms=syn) == \
        "I want a reimbursement for my order, please!"
    assert augment_text("Refund now", "synonym", rng=rng, synonyms=syn) == "Reimbursement now"
    assert augment_text("我想要退款，谢谢", "synonym", rng=rng, synonyms=syn) == "我想要退钱，谢谢"
    assert augment_text("hello", "swap", rng=rng) == "hello"        # one word: unchanged
    assert augment_text("no synonyms here", "synonym", rng=rng, synonyms=syn) == "no synonyms here"
    with pytest.raises(ConfigError, match="not allowed"):
        augment_text(text, "insert", rng=rng)


def test_augment_frame_is_seeded_and_reported():
    df = pd.DataFrame({"m": ["please refund my money now", "where is my package today", "", "hi"],
                       "y": ["refund", "delivery", "refund", "other"]})
    syn = load_synonyms({"refund": ["reimbursement"]})
    rows, report = augment_frame(df, "m", n_per_example=3, p=0.25, synonyms=syn, seed=1)
    again, _ = augment_frame(df, "m", n_per_example=3, p=0.25, synonyms=syn, seed=1)
    pd.testing.assert_frame_equal(rows, again)
    assert list(rows.columns) == ["m", "y"] and len(rows) == report["rows_added"] <= 6
    assert set(rows["y"]) <= {"refund", "delivery"}            # empty and one-word texts add nothing
    assert not set(rows["m"]) & set(df["m"])                    # copies differ from their source
    assert sum(report["by_op"].values()) == len(rows) and report["synonyms_sha256"]
    with pytest.raises(DataError, match="text column 'x'"):
        augment_frame(df, "x")


# --------------------------------------------------------------------------- config
def test_text_config_defaults():
    cfg = TextModelConfig()
    assert (cfg.backbone, cfg.method, cfg.max_length, cfg.search, cfg.augment.enabled, cfg.classical) == \
        ("auto", "head", 128, False, False, True)
    assert cfg.resolved_learning_rate() == 5e-5 and cfg.resolved_learning_rate("lora") == 1e-3
    assert TextModelConfig(learning_rate=2e-5).resolved_learning_rate("lora") == 2e-5


def test_text_config_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        parse_text_config({"method": "bert", "epochs": 0, "lora_rank": 8, "augment": {"p": 0.9, "x": 1}})
    lines = str(err.value).splitlines()
    assert "model.method: must be 'head', 'lora' or 'full', got \"bert\"" in lines
    assert any(line.startswith("model.epochs: ") and line.endswith("got 0") for line in lines)
    assert any(line.startswith("model.lora_rank: unknown key; allowed: backbone, method") for line in lines)
    assert any(line.startswith("model.augment.p: ") for line in lines)
    assert any(line.startswith("model.augment.x: unknown key; allowed: enabled, synonyms") for line in lines)
