"""``train.ddp_processes`` for the image family: a 2-process fine-tune (gloo on CPU) whose last global
batch is too short to split (3 rows: rank 0 takes it, rank 1 steps with weight 0) runs its epochs, every
rank leaves the epoch loop together, rank 0 alone checkpoints, and the network built from its weights
classifies images. (The resume path is the text family's test, tests/compute/test_ddp.py.) (Its steps equal one process's only with
batch norm frozen, checked by hand: on CPU each rank's batch norm sees its own rows, see docs/design.md.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import modelloop.families.image.fit as F
from modelloop.examples.images import draw_part
from modelloop.families.image.config import ImageModelConfig

torch.set_num_threads(1)  # each rank on one thread


def test_two_processes_fine_tune_and_stop_together(tmp_path: Path):
    rng = np.random.default_rng(0)
    kinds = ("bolt", "nut", "washer")
    x = np.stack([np.asarray(draw_part(kinds[i % 3], 16, rng)) for i in range(36)])
    y = np.arange(36) % 3
    settings = ImageModelConfig(
        image_size=16, method="last_blocks", trainable_blocks=1, early_stopping_patience=5
    )
    job = F.ImageJob(
        settings,
        list(kinds),
        x[:27],
        y[:27],
        x[27:],
        y[27:],
        "f1_macro",
        "balanced",
        0,
        "cpu",
        root=tmp_path,
        ddp_processes=2,
    )
    # 27 rows in batches of 8: three batches split 4 + 4, the fourth (3 rows, under 2 a rank) goes to rank 0
    params = {"learning_rate": 1e-3, "epochs": 2, "batch_size": 8, "augment": 0.3}
    ckpt = tmp_path / "ckpt.pt"
    result = F.run_params(job, params, checkpoint=ckpt)  # both ranks leave the loop after epoch 2
    assert result["epochs_run"] == 2 and [h["epoch"] for h in result["history"]] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) for h in result["history"]) and ckpt.is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # one writer
    net = F.network_from(job, result["payload"])
    proba = F.probabilities(net, job.x_val)
    assert proba.shape == (9, 3) and np.allclose(proba.sum(axis=1), 1.0)
