"""modelloop optimize on an image model: the fp32 graph with the normalisation inside, static int8
calibrated on training images, each timed; the chosen variant served through its graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from modelloop.data.ingest import load_dataset
from modelloop.families import family_of
from modelloop.optimization.optimize import optimize
from modelloop.project import Project
from modelloop.serving.runtime import load_runtime


def test_the_variant_maker_builds_a_normalising_fp32_graph_and_a_calibrated_int8_one(trained_parts: Path,
                                                                                     tmp_path: Path):
    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    family = family_of(row)
    native = family.load(ws, row)
    _, df, _ = load_dataset(ws)
    make = family.variant_maker(native, df, target="label", seed=0, scratch=tmp_path, max_drop=0.01, threads=1)
    fp32, int8 = make("onnx"), make("onnx_int8_static")
    graph = onnx.load_from_string(fp32.onnx_bytes)
    assert [i.name for i in graph.graph.input] == ["pixels"]  # raw 0-255 pixels: the graph normalises
    assert json.loads({p.key: p.value for p in graph.metadata_props}["modelloop.classes"]) == ["bolt", "nut", "washer"]
    offline = native.predict_proba(df)
    np.testing.assert_allclose(fp32.fn(df), offline, atol=1e-4)
    assert int8.onnx_format == "onnx_int8" and int8.size < 0.5 * fp32.size
    quantized = int8.fn(df)
    assert (quantized.argmax(1) == offline.argmax(1)).mean() >= 0.8
    steps = np.round(quantized * 255) / 255
    assert not np.allclose(quantized, steps, atol=1e-6)  # the softmax is not quantized: no 1/255 steps
    with pytest.raises(Exception, match="convolutions"):
        make("onnx_int8_dynamic")


@pytest.fixture(scope="module")
def optimized(trained_parts: Path):
    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    return ws, optimize(ws, model="parts:1", variants=["onnx", "onnx_int8_static"], promote=False)


@pytest.mark.slow  # the optimize stage's timing loops; the variant maker above builds the same graphs fast
def test_both_graphs_are_built_checked_and_timed(optimized):
    _, result = optimized
    by_name = {v["name"]: v for v in result["variants"]}
    for name in ("onnx", "onnx_int8_static"):
        v = by_name[name]
        assert v["size_bytes"] and v["latency_p50_ms"] and v["agreement"] is not None, v
    assert by_name["onnx"]["agreement"] == 1.0
    assert by_name["onnx_int8_static"]["size_bytes"] < 0.5 * by_name["onnx"]["size_bytes"]


@pytest.mark.slow
def test_the_chosen_variant_is_registered_as_an_image_model_and_serves_its_rows(optimized):
    ws, result = optimized
    row = ws.catalog.get_model("parts", result["model"]["version"])
    assert row["family"] == "image"  # a variant keeps its parent's family
    key = "onnx_int8" if result["chosen"] == "onnx_int8_static" else "onnx"
    graph = onnx.load(row["formats"][key])
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["modelloop.classes"]) == ["bolt", "nut", "washer"] and meta["modelloop.image_size"] == "32"
    assert [i.name for i in graph.graph.input] == ["pixels"]
    runtime = load_runtime(ws, f"parts:{row['version']}")
    assert runtime.variant == key
    _, df, _ = load_dataset(ws)
    native = family_of(row).load(ws, row)
    records = runtime.validator.validate_json(json.dumps({"records": [{"image": b} for b in df["image"]]}).encode())
    served, _ = runtime.score_records(records)
    offline = native.predict_proba(df)
    agreement = (served.argmax(1) == offline.argmax(1)).mean()
    assert agreement >= (1.0 if key == "onnx" else 0.8)
    if key == "onnx":
        np.testing.assert_allclose(served, offline, atol=1e-4)
