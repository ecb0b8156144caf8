"""modelloop optimize on an image model: the fp32 graph with the normalisation inside, static int8
calibrated on training images, each timed; the chosen variant served through its graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

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


def test_a_student_distilled_from_the_model_imitates_it_and_serves_through_its_own_graph(trained_parts: Path,
                                                                                         tmp_path: Path, monkeypatch):
    import pickle

    import modelloop.families.image.student as S
    from modelloop.families.image.fit import probabilities
    from modelloop.families.image.studentnet import student_network

    monkeypatch.setattr(S, "EPOCHS", 3)  # a few epochs over a few views tell a trained student from an untrained one
    monkeypatch.setattr(S, "VIEWS", 4)

    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    teacher = family_of(row).load(ws, row)
    _, df, _ = load_dataset(ws)
    make = family_of(row).variant_maker(teacher, df, target="label", seed=0, scratch=tmp_path, max_drop=0.01,
                                        threads=1)
    student = make("distilled")
    model = student.model
    assert model.network_.kind == "student" and model.describe()["method"] == "distilled"
    assert model.network_.body.spec == {"arch": "efficientnet", "name": "efficientnet-lite0", "blocks": 8}
    params = [sum(p.numel() for p in m.network_.parameters()) for m in (model, teacher)]
    assert params[0] * 10 < params[1]
    graph = onnx.load_from_string(student.onnx_bytes)
    assert [i.name for i in graph.graph.input] == ["pixels"] and student.onnx_format == "onnx"
    served = student.fn(df)
    np.testing.assert_allclose(served, model.predict_proba(df), atol=1e-4)  # its graph is its own network
    again = pickle.loads(pickle.dumps(model))  # registered as its own model: packs and rebuilds the student
    np.testing.assert_allclose(again.predict_proba(df), model.predict_proba(df), atol=1e-6)
    # it learnt to imitate the teacher: it agrees with it more than the same student as initialised
    said = teacher.predict_proba(df).argmax(1)
    untrained = probabilities(student_network(len(teacher.classes_), seed=0, teacher=teacher.network_),
                              teacher.pixels(df))
    assert model.description_["distillation"]["epochs_run"] == 3
    assert (served.argmax(1) == said).mean() > (untrained.argmax(1) == said).mean()
    # the stem and first FROZEN blocks are the teacher's, untouched (batch norm statistics included); the rest learnt
    assert model.description_["distillation"]["frozen_blocks"] == S.FROZEN
    body, original = model.network_.body, teacher.network_.body
    for ours, theirs in [(body.stem, original._conv_stem), (body.bn0, original._bn0),
                         *zip(body.blocks[:S.FROZEN], list(original._blocks)[:S.FROZEN], strict=True)]:
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    tail = list(original._blocks)[S.FROZEN:len(body.blocks)]
    assert any(not torch.equal(a, b) for ours, theirs in zip(body.blocks[S.FROZEN:], tail, strict=True)
               for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True))


def test_a_student_whose_frozen_outputs_do_not_fit_the_cache_trains_the_same_way(trained_parts: Path, monkeypatch):
    """Past CACHE_BYTES the frozen blocks run per batch (no gradients) instead of once: same training, within
    the float16 rounding of the cached outputs."""
    import modelloop.families.image.student as S

    monkeypatch.setattr(S, "EPOCHS", 1)
    monkeypatch.setattr(S, "VIEWS", 2)
    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    teacher = family_of(row).load(ws, row)
    _, df, _ = load_dataset(ws)
    cached, _ = S.distil_student(teacher, df, target="label", seed=0)
    monkeypatch.setattr(S, "CACHE_BYTES", 0)
    streamed, info = S.distil_student(teacher, df, target="label", seed=0)
    assert info["frozen_blocks"] == S.FROZEN and info["epochs_run"] == 1
    np.testing.assert_allclose(streamed.predict_proba(df), cached.predict_proba(df), atol=2e-2)
    # a student whose first epoch already used its time trains that epoch, on a schedule cut to end there
    _, short = S.distil_student(teacher, df, target="label", seed=0, epochs=3, max_seconds=0.0)
    assert short["epochs_run"] == short["epochs_planned"] == 1
    assert info["epochs_planned"] == 1


@pytest.mark.slow  # the optimize stage's timing loops (~50 s here); the student itself is built and checked by the
# fast test above, and optimize's summary of any variant by the other families' optimize tests
def test_the_optimize_summary_shows_the_student_against_the_teacher(trained_parts: Path, capsys):
    from modelloop.ui import render_optimize

    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    result = optimize(ws, model="parts:1", variants=["distilled"], promote=False)
    native, distilled = result["variants"]
    assert native["name"] == "native" and distilled["name"] == "distilled"
    for v in (native, distilled):
        assert v["latency_p50_ms"] > 0 and v["metric"] is not None and v["size_bytes"] > 0, v
    assert distilled["metric_delta"] == round(distilled["metric"] - native["metric"], 6)
    render_optimize(result)
    table = capsys.readouterr().out
    line = next(line for line in table.splitlines() if line.strip().startswith("distilled"))
    speed = f"{native['latency_p50_ms'] / distilled['latency_p50_ms']:.1f}×"
    assert speed in line and f"{distilled['metric_delta']:+.4f}" in line


def test_a_transformers_models_student_is_a_small_cnn_that_packs_and_exports(tmp_path: Path):
    import pickle

    from modelloop.families.image.export import export_image_onnx, image_session
    from modelloop.families.image.model import ImageModel
    from modelloop.families.image.studentnet import student_network

    net = student_network(3, seed=0)  # no EfficientNet teacher: the plain CNN
    assert net.body.spec["arch"] == "cnn"
    model = ImageModel.from_network(net, classes=["a", "b", "c"], config={"image_size": 32, "method": "distilled"},
                                    target="label", description={})
    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.scores_of_pixels(pixels), model.scores_of_pixels(pixels), atol=1e-6)
    path = Path(export_image_onnx(again, tmp_path / "s.onnx", pixels=pixels)["path"])
    np.testing.assert_allclose(again.scores_of_pixels(pixels, session=image_session(path)),
                               model.scores_of_pixels(pixels), atol=1e-4)
