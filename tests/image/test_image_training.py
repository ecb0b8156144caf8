"""The image train stage: fine-tuning with augmentation, resume after a kill, a transformers backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from image_toy import write_project

import modelloop.families.image.fit as F
from modelloop.project import Project


def _project(root: Path, parts: Path, **model) -> Project:
    write_project(root, str(parts), model={"image_size": 32, **model}, train={"trials": None})
    project = Project.load(root / "modelloop.yaml")
    project.ingest()
    return project


def test_augmentation_strength_changes_pixels_and_zero_is_none():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert F.augmenter(0.0, 32, seed=0) is None
    strong = F.augmenter(1.0, 32, seed=0)
    out = strong(image=image)["image"]
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)
    again = F.augmenter(1.0, 32, seed=0)(image=image)["image"]
    assert np.array_equal(out, again)  # seeded: a replayed epoch sees the same images


def _job(tmp_path: Path, size: int = 32, **settings) -> F.ImageJob:
    """A fine-tuning job on generated images (no project, no MLflow: the loop alone)."""
    from modelloop.examples.images import draw_part
    from modelloop.families.image.config import ImageModelConfig

    rng = np.random.default_rng(0)
    kinds = ("bolt", "nut", "washer")
    x = np.stack([np.asarray(draw_part(kinds[i % 3], size, rng)) for i in range(36)])
    y = np.arange(36) % 3
    return F.ImageJob(ImageModelConfig(image_size=size, **settings), list(kinds), x[:27], y[:27], x[27:], y[27:],
                      "f1_macro", "balanced", 0, "cpu", root=tmp_path)


def test_last_blocks_trains_only_the_tail_and_a_killed_trial_resumes_at_its_next_epoch(tmp_path: Path,
                                                                                         monkeypatch):
    job = _job(tmp_path, 16, method="last_blocks", trainable_blocks=1, early_stopping_patience=5)
    params = {"learning_rate": 1e-3, "epochs": 3, "batch_size": 32, "augment": 0.5}
    trained: list[set[str]] = []
    real = F._train_epoch

    def dies_in_epoch_two(net, job, epoch, *args, **kwargs):
        trained.append({n for n, p in net.named_parameters() if p.requires_grad})
        if len(trained) == 2:
            raise KeyboardInterrupt
        return real(net, job, epoch, *args, **kwargs)

    monkeypatch.setattr(F, "_train_epoch", dies_in_epoch_two)
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        F.run_params(job, params, checkpoint=checkpoint)
    names = trained[0]
    assert "fc.weight" in names and any(n.startswith("body._blocks.15.") for n in names)
    assert not any(n.startswith(("body._blocks.0.", "body._conv_stem")) for n in names)
    assert checkpoint.is_file()
    monkeypatch.setattr(F, "_train_epoch", real)
    resumed = F.run_params(job, params, checkpoint=checkpoint)
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs_run"] == 3
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    other = F.run_params(job, {**params, "learning_rate": 2e-3}, checkpoint=checkpoint)
    assert other["resumed_from_epoch"] == 0  # another trial's checkpoint is not taken


def test_class_weights_balance_the_loss():
    from modelloop.families.text.fit import class_weights

    job = _job(Path("."), method="full")
    job.y_fit = np.array([0] * 20 + [1] * 5 + [2] * 2)
    w = class_weights(job)
    assert w[2] > w[1] > w[0]
    job.class_weight = "none"
    assert np.allclose(class_weights(job), 1.0)


@pytest.mark.slow  # the same loop through the whole train stage (MLflow, Optuna); the test above is fast
def test_a_killed_train_stage_resumes_its_trial(parts: Path, tmp_path: Path, monkeypatch):
    project = _project(tmp_path / "p", parts, method="last_blocks", epochs=3, batch_size=16, search=False,
                       augment=0.5, early_stopping_patience=5, trainable_blocks=1)
    real = F._train_epoch
    calls: list[int] = []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "_train_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        project.train()
    monkeypatch.setattr(F, "_train_epoch", real)
    res = project.train()
    ws = project.workspace
    from modelloop.families.image.stage import image_study_name

    study = optuna.load_study(study_name=image_study_name(ws, res["dataset"]), storage=ws.optuna_url)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert study.trials[1].user_attrs["resumed_from_epoch"] == 1
    assert res["family"] == "image" and res["best_family"] == "last_blocks"
    assert not list(ws.study_dir(image_study_name(ws, res["dataset"])).glob("ckpt-*"))  # cleaned up


def _tiny_resnet(folder: Path) -> Path:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5)
    ResNetForImageClassification(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5],
                                                                 "image_std": [0.25, 0.25, 0.25]}))
    return folder


def test_a_transformers_backbone_fine_tunes_exports_and_survives_pickling(tmp_path: Path):
    import pickle

    import torch

    from modelloop.families.image.export import export_image_onnx, image_session
    from modelloop.families.image.model import ImageModel

    backbone = _tiny_resnet(tmp_path / "tiny-resnet")
    job = _job(tmp_path, backbone=str(backbone), method="full")
    result = F.run_params(job, {"learning_rate": 1e-3, "epochs": 1, "batch_size": 16, "augment": 0.3})
    net = F.network_from(job, result["payload"])
    assert net.kind == "transformers" and net.fc.in_features == 16
    assert torch.allclose(net.mean.flatten(), torch.tensor([127.5] * 3))  # the processor's mean, in 0-255
    model = ImageModel.from_network(net, classes=job.classes, config=job.settings.model_dump(), target="label",
                                    description={})
    again = pickle.loads(pickle.dumps(model))  # rebuilt from its config: the folder is not needed
    np.testing.assert_allclose(again.scores_of_pixels(job.x_val), model.scores_of_pixels(job.x_val), atol=1e-6)
    report = export_image_onnx(again, tmp_path / "m.onnx", pixels=job.x_val)
    assert report["max_abs_diff"] < 1e-4
    served = again.scores_of_pixels(job.x_val, session=image_session(tmp_path / "m.onnx"))
    np.testing.assert_allclose(served, model.scores_of_pixels(job.x_val), atol=1e-4)
