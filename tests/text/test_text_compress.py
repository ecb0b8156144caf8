"""The ``pruned`` and ``distilled`` text variants: a structurally smaller network (fewer feed-forward
neurons, fewer layers), fine-tuned on the teacher's logits, exported, pickled and served."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from modelloop.data.ingest import ensure_split, load_dataset
from modelloop.optimization.optimize import optimize
from modelloop.families.text.compress import CompressSettings, drop_layers
from modelloop.families.text.variants import SkipVariant, TextVariantBuilder
from modelloop.registry import load_model, resolve_model
from modelloop.serving.runtime import load_runtime

TEXTS = pd.DataFrame({"message": ["please refund my money", "my card was stolen", "where is my package", ""]})
FAST = CompressSettings(epochs={"pruned": 1, "distilled": 2}, seconds=30, importance_texts=64)


@pytest.fixture(scope="module")
def trained(trained_text):
    """A tiny fully fine-tuned model (every weight trained, as a compressed network must be)."""
    ws = trained_text("text-compress", method="full", epochs=3, learning_rate=1e-3, classical=False)
    teacher = load_model(ws, resolve_model(ws, "intents:1"))
    row, df, _ = load_dataset(ws)
    side = ensure_split(ws, row, df)
    return ws, teacher, df[side == "train"].reset_index(drop=True), df[side == "test"].reset_index(drop=True)


@pytest.fixture(scope="module")
def built(trained, tmp_path_factory):
    _, teacher, train, _ = trained
    builder = TextVariantBuilder(teacher, train, target="intent", seed=0, folder=tmp_path_factory.mktemp("v"),
                                 compress=FAST)
    return {name: builder.build(name) for name in ("onnx", "pruned", "distilled")}


def test_pruned_network_is_smaller_agrees_with_the_teacher_and_pickles(trained, built):
    _, teacher, _, test = trained
    pruned = built["pruned"].model
    encoder = pruned.network_.encoder
    assert encoder.config.intermediate_size < teacher.network_.encoder.config.intermediate_size
    assert encoder.encoder.layer[0].intermediate.dense.out_features == encoder.config.intermediate_size
    assert pruned.n_parameters() < teacher.n_parameters()
    assert teacher.network_.encoder.config.intermediate_size == 64  # the teacher is left as it was
    assert built["pruned"].size_bytes < built["onnx"].size_bytes
    info = pruned.describe()["compression"]
    assert info["kind"] == "pruned" and info["fine_tune"]["epochs"] >= 1
    agreement = np.mean(built["pruned"].proba(test).argmax(1) == teacher.predict_proba(test).argmax(1))
    assert agreement >= 0.8

    again = pickle.loads(pickle.dumps(pruned))  # packed weights rebuild the pruned shapes
    assert np.allclose(again.predict_proba(test), pruned.predict_proba(test), atol=1e-5)
    assert again.network_.encoder.config.intermediate_size == encoder.config.intermediate_size


def test_distilled_student_has_fewer_layers_and_pickles(trained, built):
    _, teacher, _, test = trained
    student = built["distilled"].model
    assert student.network_.encoder.config.num_hidden_layers == 1
    assert len(student.network_.encoder.encoder.layer) == 1
    assert len(teacher.network_.encoder.encoder.layer) == 2
    assert student.describe()["compression"]["layers_kept"] == [1]
    assert built["distilled"].size_bytes < built["onnx"].size_bytes
    again = pickle.loads(pickle.dumps(student))
    assert np.allclose(again.predict_proba(test), student.predict_proba(test), atol=1e-5)


def test_drop_layers_keeps_every_other_layer_from_the_top(trained):
    import copy

    net = copy.deepcopy(trained[1].network_)
    net.encoder.encoder.layer.extend([copy.deepcopy(layer) for layer in net.encoder.encoder.layer] * 2)  # 6
    net.encoder.config.num_hidden_layers = 6
    assert drop_layers(net)["layers_kept"] == [1, 3, 5]
    assert net.encoder.config.num_hidden_layers == 3


@pytest.mark.slow
def test_optimize_reports_both_and_serves_the_chosen_one(trained):
    """Slow (16 s): optimize -> register -> serve is covered in the default run by
    test_text_optimize.py::test_text_variants_are_built_checked_and_the_best_registered, and the
    compressed networks (build, agreement, pickled shapes) by the builder tests above."""
    ws, teacher, _, _ = trained
    ws.config.optimize.target = "size"
    ws.config.optimize.max_metric_drop = 1.0  # keep both: the test is about the plumbing, not the budget
    try:
        out = optimize(ws, variants=["pruned", "distilled"])
    finally:
        ws.config.optimize.target, ws.config.optimize.max_metric_drop = "latency", 0.01
    by = {v["name"]: v for v in out["variants"]}
    for name in ("pruned", "distilled"):
        assert by[name]["metric"] is not None and 0.0 <= by[name]["agreement"] <= 1.0
        assert by[name]["latency_p50_ms"] > 0 and by[name]["kept"]
    assert out["chosen"] in ("pruned", "distilled")

    row = resolve_model(ws, f"intents:{out['model']['version']}")
    assert row["info"]["variant"] == out["chosen"]
    assert row["info"]["description"]["compression"]["kind"] == out["chosen"]
    runtime = load_runtime(ws, f"intents:{row['version']}")
    assert runtime.variant in ("onnx", "onnx_int8") and "ONNX Runtime" in runtime.reason
    served = runtime.predict(TEXTS.to_dict("records"))
    registered = load_model(ws, row)
    assert registered.n_parameters() < teacher.n_parameters()
    assert [p["label"] for p in served][:3] == list(registered.predict(TEXTS.iloc[:3]))


def _gpt2_model(tiny_backbone):
    """A TextModel whose encoder is GPT-2: none of the BERT-style modules the variants need."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    from modelloop.families.text.backbone import network
    from modelloop.families.text.model import TextModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    encoder = GPT2Model(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=64))
    return TextModel.from_network(network=network(encoder, 3), tokenizer=tokenizer,
                                  classes=["delivery", "lost_card", "refund"], text_column="message",
                                  target="intent", config={"backbone": str(tiny_backbone)}, max_length=32)


def test_a_non_bert_encoder_is_skipped_with_the_reason(tiny_backbone, texts, tmp_path):
    builder = TextVariantBuilder(_gpt2_model(tiny_backbone), texts, target="intent", seed=0, folder=tmp_path)
    for name in ("pruned", "distilled"):
        with pytest.raises(SkipVariant, match=r"the encoder \(gpt2\) has none of the BERT-style modules"):
            builder.build(name)
    assert not list(tmp_path.iterdir())


def test_a_failure_while_building_is_a_one_line_skip_and_writes_nothing(trained, tmp_path, monkeypatch):
    from modelloop.families.text import compress as text_compress

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(text_compress, "fine_tune", broken)
    _, teacher, train, _ = trained
    builder = TextVariantBuilder(teacher, train, target="intent", seed=0, folder=tmp_path, compress=FAST)
    with pytest.raises(SkipVariant) as info:
        builder.build("pruned")
    assert str(info.value) == "building the pruned network failed: RuntimeError: out of memory"
    assert not list(tmp_path.iterdir())
