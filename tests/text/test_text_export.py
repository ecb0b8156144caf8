"""ONNX export of text models: dynamic axes, PyTorch parity, transformer fusion, int8, sessions."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from modelloop.families.text.backbone import ort_session
from modelloop.families.text.model import TextModel
from modelloop.families.text.export import CHECK_TEXTS, export_text_onnx, int8_path


@pytest.fixture(scope="module")
def lora_model(tiny_backbone, texts) -> TextModel:
    model = TextModel({"backbone": str(tiny_backbone), "method": "lora", "epochs": 3, "learning_rate": 1e-2,
                       "batch_size": 8}, text_column="message")
    return model.fit(texts, texts["intent"])


@pytest.fixture(scope="module")
def exported(lora_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return path, export_text_onnx(lora_model, path, quantize=True, optimize=True)


def test_fp32_graph_matches_pytorch_with_dynamic_axes(lora_model, exported, texts):
    path, report = exported
    fp32 = report["fp32"]
    assert fp32["path"] == str(path) and path.is_file() and fp32["size_bytes"] == path.stat().st_size
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["agreement"] == 1.0
    proto = onnx.load(str(path))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["modelloop.classes"]) == lora_model.classes_
    assert meta["modelloop.text_column"] == "message"
    session = lora_model.onnx_session("fp32", path=path)
    for batch in (texts["message"][:1], texts["message"][:7], list(CHECK_TEXTS)):
        got = lora_model.predict_proba_onnx(list(batch), session=session)
        np.testing.assert_allclose(got, lora_model.predict_proba(list(batch)), atol=1e-4)


def test_transformer_optimizer_fused_the_graph(exported):
    fp32 = exported[1]["fp32"]
    assert fp32["optimized"] is True
    assert fp32["fusions"].get("Attention") == 2 and fp32["fusions"].get("LayerNormalization")
    assert "SkipLayerNormalization" not in fp32["fusions"]  # slower than the Add + LayerNorm it fuses


def test_int8_variant_is_smaller_and_agrees(lora_model, exported, texts):
    path, report = exported
    int8 = report["int8"]
    assert int8["path"] == str(int8_path(path)) and int8["size_bytes"] < report["fp32"]["size_bytes"]
    ops = {n.op_type for n in onnx.load(int8["path"]).graph.node}
    assert ops & {"DynamicQuantizeLinear", "QAttention", "MatMulInteger", "DynamicQuantizeMatMul"}
    assert int8["agreement"] >= 0.85
    session = lora_model.onnx_session("int8", path=int8["path"])
    got = lora_model.predict_proba_onnx(texts, session=session)
    assert np.mean(got.argmax(1) == lora_model.predict_index(texts)) >= 0.9


def test_plain_export_without_optimizer(lora_model, tmp_path):
    report = export_text_onnx(lora_model, tmp_path / "plain.onnx", quantize=False, optimize=False)
    assert report["fp32"]["optimized"] is False and report["int8"] is None
    assert report["fp32"]["max_abs_diff"] <= 1e-4
    assert not int8_path(tmp_path / "plain.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.onnx"]  # no temp files left


def test_onnx_session_exports_on_demand(lora_model, texts):
    session = lora_model.onnx_session("int8")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert lora_model.onnx_session("int8") is session
    proba = lora_model.predict_proba_onnx(texts, "int8")
    assert proba.shape == (len(texts), 3)


def test_text_sessions_leave_slow_fusions_out(lora_model, tmp_path):
    """ONNX Runtime's own default folds the int8 graph's residual Add + LayerNorm into
    SkipLayerNormalization (a slower kernel); the sessions modelloop opens keep the pair."""
    int8 = export_text_onnx(lora_model, tmp_path / "plain.onnx", quantize=True)["int8"]["path"]

    def ops_run(**options) -> set[str]:
        out = tmp_path / f"run-{len(options)}.onnx"
        ort_session(int8, 1, optimized_path=str(out), **options)
        return {n.op_type for n in onnx.load(str(out)).graph.node}

    assert "SkipLayerNormalization" in ops_run(disabled=())  # the fusion applies to this graph
    ours = ops_run()
    assert "SkipLayerNormalization" not in ours and "LayerNormalization" in ours
    assert ours & {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"}  # the other fusions still run
