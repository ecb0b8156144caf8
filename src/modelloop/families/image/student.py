"""The ``distilled`` variant: a smaller network trained to imitate the registered image model.

Only one pretrained backbone size is installed (EfficientNet-Lite0), so the student of an EfficientNet
model is a shallower one (``studentnet.TruncatedEfficientNet``): the teacher's stem and first ``studentnet.TRUNCATE`` of
its 16 blocks (to stride 16, 80 channels; about a third of its multiply-adds), starting from the
teacher's own weights, average-pooled into a new linear layer. A model on a transformers backbone gets a
plain CNN instead (``studentnet.StudentCNN``: seven 3x3 convolutions with batch norm and ReLU, four of them
stride 2, ~0.28 M weights), trained from scratch, which needs far more images to come near its teacher.

The student is trained on ``VIEWS`` views of each training image (as given, mirrored, and augmented as
fine-tuning augments), each labelled by the teacher's probabilities softened by ``TEMPERATURE`` (Hinton
et al.'s knowledge distillation, the KL term scaled by T^2) mixed with the true labels (``ALPHA``),
AdamW with a cosine schedule (shortened, after the first epoch's time, to the epochs that fit
``MAX_SECONDS``, so the learning rate reaches its end); the last epoch is kept (a validation share of a small image set chose worse
epochs than the schedule's end; the optimize stage judges the student on the test split). It becomes an
:class:`~modelloop.families.image.model.ImageModel` of its own (its network packs and exports like the
teacher's: pixels 0-255 in, normalisation inside), so the native model and the served graph of a
registered student agree. ``modelloop optimize`` scores and times it beside the teacher's graphs; its
summary shows the student's metric and latency against the teacher's.

A truncated EfficientNet student keeps its stem and first ``FROZEN`` blocks as the teacher has them (frozen,
batch norm in inference mode): they hold most of its multiply-adds (the high-resolution stages), so their
outputs are computed once per view (kept as float16 while they fit ``CACHE_BYTES``, else recomputed per
batch without gradients) and each epoch trains only the last blocks and the new layer. At 224 px a full
student took ~1,000 s an epoch on two busy cores and learnt for one epoch inside ``MAX_SECONDS`` (0.40
accuracy against the teacher's 1.00); training the tail alone fits its epochs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...data.images import IMAGE_COLUMN
from ...errors import DataError
from .backbone import ImageNetwork, to_tensor
from .studentnet import TruncatedEfficientNet, student_network

__all__ = ["ALPHA", "AUGMENT", "CACHE_BYTES", "EPOCHS", "FROZEN", "MAX_VIEWS", "TEMPERATURE", "VIEWS",
           "distil_student"]

TEMPERATURE = 4.0
ALPHA = 0.7          # weight of the teacher's soft targets; 1 - ALPHA: the true labels
VIEWS = 8            # per training image: as given, mirrored and 6 augmented, each labelled by the teacher
MAX_VIEWS = 16_000   # fewer views per image (at least 2) on a large set: the teacher labels every view
AUGMENT = 0.5        # strength of those augmentations (fit.augmenter)
EPOCHS = 10
MAX_SECONDS = 300.0  # the student's epochs stop starting after this (the teacher's labelling is not counted)
FROZEN = 7           # of a truncated EfficientNet student's 8 blocks: the stem and these stay the teacher's
CACHE_BYTES = 1 << 30  # the frozen blocks' outputs (float16) are kept for all views up to this size


def distil_student(teacher: Any, train: pd.DataFrame, *, target: str, seed: int, epochs: int | None = None,
                   max_seconds: float = MAX_SECONDS) -> tuple[Any, dict[str, Any]]:
    """The student :class:`ImageModel` distilled from ``teacher`` on ``train``'s images (``epochs``: default
    ``EPOCHS``), and what happened."""
    epochs = EPOCHS if epochs is None else epochs
    from ..text.fit import make_optimizer
    from .fit import probabilities
    from .model import ImageModel

    started = time.time()
    classes = [str(c) for c in teacher.classes_]
    known = train[train[target].astype(str).isin(classes)].reset_index(drop=True)
    if len(known) < 4:
        raise DataError(f"distillation needs at least 4 training images of the model's classes, got {len(known)}")
    pixels = teacher.pixels(known[[IMAGE_COLUMN]])
    labels = known[target].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    views = int(np.clip(MAX_VIEWS // len(pixels), 2, VIEWS))
    x = _views(pixels, teacher.image_size_, seed, views)
    y = np.tile(labels, views)
    teacher_proba = teacher.scores_of_pixels(x)
    soft = _softened(teacher_proba)
    teacher._rebuild()
    net = student_network(len(classes), seed=seed, teacher=teacher.network_)
    frozen = FROZEN if isinstance(net.body, TruncatedEfficientNet) else 0
    inputs = _frozen_inputs(net, x, frozen)
    opt = make_optimizer(net, 1e-3 if isinstance(net.body, TruncatedEfficientNet) else 3e-3, 1e-4)
    per_epoch = math.ceil(len(x) / 32)
    planned = [max(1, epochs)]  # the cosine schedule's length in epochs, shortened to what fits max_seconds
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, planned[0] * per_epoch) / (planned[0] * per_epoch))))
    ran, training = 0, time.time()
    for epoch in range(1, epochs + 1):
        if epoch > planned[0] or (epoch > 1 and time.time() - training > max_seconds):  # one epoch at least
            break
        _epoch(net, opt, schedule, inputs, y, soft, np.random.default_rng([seed, epoch]), frozen)
        ran = epoch
        if epoch == 1:  # the schedule ends (learning rate near 0) at the last epoch that fits the time
            planned[0] = max(1, min(planned[0], int(max_seconds / max(time.time() - training, 1e-9))))
    net.requires_grad_(True)
    agreement = float((probabilities(net, x).argmax(1) == teacher_proba.argmax(1)).mean())
    spec = net.body.spec
    config = {**dict(teacher.config or {}), "method": "distilled",
              "backbone": f"{spec['name']}[:{spec['blocks']} blocks]" if spec["arch"] == "efficientnet" else "student-cnn"}
    model = ImageModel.from_network(net, classes=list(teacher.classes_), config=config, target=teacher.target,
                                    description={"teacher": {"method": (teacher.config or {}).get("method"),
                                                             "backbone": (teacher.config or {}).get("backbone")},
                                                 "student": net.body.spec})
    model.cleaning_plan_ = getattr(teacher, "cleaning_plan_", None)
    info = {"epochs_run": ran, "epochs_planned": planned[0], "views": len(x), "train_agreement": agreement, "frozen_blocks": frozen,
            "parameters": int(sum(p.numel() for p in net.parameters())), "seconds": round(time.time() - started, 2)}
    return model, info


def _views(pixels: np.ndarray, size: int, seed: int, views: int) -> np.ndarray:
    """``views`` views of each image (seeded): a small network learns from few images only with many views,
    and the teacher labels each view, so an augmentation that changes the class changes its target too."""
    from .fit import augmenter

    aug = augmenter(AUGMENT, size, seed=seed)
    out = [pixels, pixels[:, :, ::-1]]
    out += [np.stack([aug(image=np.ascontiguousarray(im))["image"] for im in pixels]) for _ in range(views - 2)]
    return np.ascontiguousarray(np.concatenate(out))


def _softened(proba: np.ndarray) -> Any:
    """The teacher's probabilities at ``TEMPERATURE`` (softmax of its logits / T), as a tensor."""
    soft = np.clip(proba, 1e-12, None) ** (1.0 / TEMPERATURE)
    return torch.from_numpy((soft / soft.sum(axis=1, keepdims=True)).astype(np.float32))


def _loss(logits: Any, soft: Any, y: Any) -> Any:
    """KL to the softened teacher (x T^2) mixed with cross-entropy on the true labels."""
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / TEMPERATURE, dim=1), soft,
                                    reduction="batchmean") * TEMPERATURE ** 2
    return ALPHA * kl + (1 - ALPHA) * torch.nn.functional.cross_entropy(logits, y)


def _prefix(net: ImageNetwork, pixels: np.ndarray, frozen: int) -> Any:
    """The frozen part's output for ``pixels`` (normalisation, stem and the first ``frozen`` blocks)."""
    body = net.body
    x = (to_tensor(pixels) - net.mean) / net.std
    x = body.swish(body.bn0(body.stem(x)))
    for block in body.blocks[:frozen]:
        x = block(x)
    return x


def _tail(net: ImageNetwork, x: Any, frozen: int) -> Any:
    """Logits from the frozen part's output: the trained blocks, pooling and the new layer."""
    for block in net.body.blocks[frozen:]:
        x = block(x)
    return net.fc(x.mean(dim=(2, 3)))


def _frozen_inputs(net: ImageNetwork, x: np.ndarray, frozen: int) -> Any:
    """What each epoch feeds the trained part: the views' pixels (nothing frozen), or the frozen part's
    outputs as float16 when they fit ``CACHE_BYTES`` (else the pixels, and the prefix runs per batch)."""
    if not frozen:
        return x
    for module in (net.body.stem, net.body.bn0, *net.body.blocks[:frozen]):
        module.requires_grad_(False)
    with torch.no_grad():
        first = _prefix(net.eval(), x[:1], frozen)
        if first.numel() * 2 * len(x) > CACHE_BYTES:
            return x
        return torch.cat([_prefix(net, x[i:i + 32], frozen).half() for i in range(0, len(x), 32)])


def _epoch(net: ImageNetwork, opt: Any, schedule: Any, inputs: Any, y: np.ndarray, soft: Any,
           rng: np.random.Generator, frozen: int = 0) -> None:
    """One shuffled pass over the training views (``_loss``); with ``frozen`` blocks, ``inputs`` are their
    cached outputs (a tensor) or the pixels, and only the rest trains (the frozen batch norms stay in
    inference mode, as the cache was made)."""
    net.train()
    if frozen:
        for module in (net.body.bn0, *net.body.blocks[:frozen]):
            module.eval()
    order = rng.permutation(len(inputs))
    for i in range(0, len(order), 32):
        rows = order[i:i + 32]
        if len(rows) < 2:  # batch norm cannot train on one image
            continue
        if not frozen:
            logits = net(to_tensor(np.ascontiguousarray(inputs[rows])))
        elif isinstance(inputs, torch.Tensor):
            logits = _tail(net, inputs[torch.from_numpy(rows)].float(), frozen)
        else:
            with torch.no_grad():
                start = _prefix(net, np.ascontiguousarray(inputs[rows]), frozen)
            logits = _tail(net, start, frozen)
        loss = _loss(logits, soft[rows], torch.from_numpy(y[rows]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    net.eval()
