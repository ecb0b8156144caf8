"""One configuration of an image model: the head on frozen features, or fine-tuning with augmentation.

* ``head``: a logistic regression on the standardised pooled features of the frozen backbone (the text
  family's :func:`~modelloop.families.text.fit.fit_linear_head`, folded into the network's linear layer);
* ``last_blocks`` / ``full``: the linear layer starts from that regression (linear probing, then
  fine-tuning), then AdamW trains the last ``trainable_blocks`` blocks (and the head convolution) or every
  layer, on albumentations-augmented images (random resized crop, flip, colour jitter, rotation; the
  strength is a searched parameter), with class weights, early stopping on the validation score, autocast
  on CUDA and a checkpoint after each epoch (a killed trial resumes at its next epoch).

The search (``search.py``) calls :func:`run_params` once per trial.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from ...errors import ConfigError, DataError
from ...evaluation.metrics import direction, score
from ...training.checkpoint import load_checkpoint, save_checkpoint
from ...training.distributed import SINGLE, Group, report_epochs, run_ranks
from ...training.search import early_stopping_epochs
from ..text.fit import class_weights, fit_linear_head, make_optimizer
from .backbone import ImageNetwork, load_network, to_tensor
from .config import ImageModelConfig

__all__ = ["ImageJob", "extract_features", "network_from", "probabilities", "run_params"]

_BATCH = 64  # images per forward pass outside training


@dataclass
class ImageJob:
    """Everything one trial needs: settings, the fit/validation pixels and labels, the cached features."""

    settings: ImageModelConfig
    classes: list[Any]
    x_fit: np.ndarray             # uint8 (N, S, S, 3)
    y_fit: np.ndarray             # int64 (N,)
    x_val: np.ndarray
    y_val: np.ndarray
    metric: str
    class_weight: str
    seed: int
    device: str
    root: Path | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)  # frozen-backbone features, by part
    ddp_processes: int = 1  # train.ddp_processes: fine-tune in this many processes (training/distributed.py)
    ray_address: str | None = None  # compute.engine: ray: the ranks are Ray Train workers on this cluster

    @property
    def method(self) -> str:
        return self.settings.method

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def device_for(preference: str) -> str:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device: 'cuda' was asked for but no CUDA device is visible; use auto or cpu")
    return "cuda" if preference != "cpu" and torch.cuda.is_available() else "cpu"


def fresh_network(job: ImageJob) -> ImageNetwork:
    s = job.settings
    return load_network(s.backbone, job.n_classes, image_size=s.image_size, root=job.root, seed=job.seed)


@torch.no_grad()
def extract_features(net: ImageNetwork, pixels: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Pooled backbone features (N, D) of uint8 images, in eval mode."""
    net.eval().to(device)
    out = [net.features(to_tensor(pixels[i:i + _BATCH]).to(device)).float().cpu().numpy()
           for i in range(0, len(pixels), _BATCH)]
    return np.concatenate(out) if out else np.zeros((0, net.dim), dtype=np.float32)


@torch.no_grad()
def probabilities(net: ImageNetwork, pixels: np.ndarray, device: str = "cpu") -> np.ndarray:
    net.eval().to(device)
    out = [torch.softmax(net(to_tensor(pixels[i:i + _BATCH]).to(device)).float(), dim=1).cpu().numpy()
           for i in range(0, len(pixels), _BATCH)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, net.fc.out_features))


def head_features(job: ImageJob) -> dict[str, np.ndarray]:
    if not job.features:
        net = fresh_network(job)
        job.features = {"fit": extract_features(net, job.x_fit, job.device),
                        "val": extract_features(net, job.x_val, job.device)}
    return job.features


def _set_head(net: ImageNetwork, W: np.ndarray, b: np.ndarray) -> None:
    with torch.no_grad():
        net.fc.weight.copy_(torch.from_numpy(W).float())
        net.fc.bias.copy_(torch.from_numpy(b).float())


def _run_head(job: ImageJob, params: dict[str, Any]) -> dict[str, Any]:
    feats = head_features(job)
    W, b = fit_linear_head(feats["fit"], job.y_fit, job.n_classes, c=float(params["head_c"]),
                           class_weight=job.class_weight, seed=job.seed)
    logits = feats["val"] @ W.T + b
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    value = score(job.metric, job.y_val, z / z.sum(axis=1, keepdims=True))
    return {"value": value, "payload": {"fc.weight": W.astype(np.float32), "fc.bias": b.astype(np.float32)},
            "epochs_run": 0, "best_epoch": 0, "history": [], "precision": "fp32", "resumed_from_epoch": 0}


# ---------------------------------------------------------------------------------------------- fine-tuning
def augmenter(strength: float, size: int, seed: int) -> Any:
    """albumentations pipeline of the given strength (0: none), seeded."""
    import albumentations as A

    s = float(strength)
    if s <= 0:
        return None
    return A.Compose([
        A.RandomResizedCrop(size=(size, size), scale=(max(0.3, 1.0 - 0.6 * s), 1.0), p=min(1.0, s + 0.2)),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.05 * s, p=0.8 * s),
        A.Rotate(limit=25.0 * s, p=0.7 * s),
    ], seed=seed)


def _freeze(net: ImageNetwork, method: str, trainable_blocks: int) -> None:
    """``full``: everything trains; ``last_blocks``: the last blocks, what follows them and the head."""
    if method == "full":
        for p in net.parameters():
            p.requires_grad_(True)
        return
    for p in net.body.parameters():
        p.requires_grad_(False)
    for block in net.blocks()[-trainable_blocks:]:
        for p in block.parameters():
            p.requires_grad_(True)
    if net.kind == "efficientnet":  # the 1x1 head convolution after the last block
        for p in (*net.body._conv_head.parameters(), *net.body._bn1.parameters()):
            p.requires_grad_(True)
    for p in net.fc.parameters():
        p.requires_grad_(True)


def _train_mode(net: ImageNetwork) -> None:
    """Train mode for the trained parts only: a frozen block's batch norm keeps its ImageNet statistics."""
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def _train_epoch(net: ImageNetwork, job: ImageJob, epoch: int, params: dict[str, Any], opt: Any,
                 loss_fn: Any, precision: str, group: Group = SINGLE) -> float:
    """One pass over the fit images, shuffled and augmented by (seed, epoch): an epoch replayed after a
    resume is the one an uninterrupted run would have had. Data-parallel: each rank takes its share of
    every global batch, the loss scaled as the text family's ``train_epoch`` does (batch-norm statistics
    are the rank's own rows on CPU: SyncBatchNorm needs CUDA)."""
    torch.manual_seed(job.seed * 1009 + epoch)
    rng = np.random.default_rng([job.seed, epoch])
    order = rng.permutation(len(job.x_fit))
    aug = augmenter(float(params["augment"]), job.settings.image_size, seed=job.seed * 7919 + epoch)
    bs = int(params["batch_size"])
    _train_mode(net)
    total = 0.0
    weight = loss_fn.weight.cpu().numpy() if loss_fn.weight is not None else np.ones(job.n_classes)
    for i in range(0, len(order), bs):
        every = order[i:i + bs]
        rows, share = group.split(every, weight[job.y_fit[every]], least=2)  # batch norm: 2 rows a rank
        batch = job.x_fit[rows] if aug is None else np.stack([aug(image=job.x_fit[j])["image"] for j in rows])
        target = torch.from_numpy(job.y_fit[rows]).to(job.device)
        with _autocast(job.device, precision):
            logits = net(to_tensor(batch).to(job.device))
        loss = loss_fn(logits.float(), target)
        opt.zero_grad(set_to_none=True)
        (loss * share).backward()
        opt.step()
        total += float(loss.detach()) * len(rows) * (share > 0)
    return group.sum(total) / max(len(job.x_fit), 1)


def _autocast(device: str, precision: str) -> Any:
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _precision(device: str, enabled: bool) -> str:
    if device != "cuda" or not enabled:
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def params_key(job: ImageJob, params: dict[str, Any]) -> str:
    blob = json.dumps([params, job.method, job.seed, len(job.x_fit), job.settings.backbone,
                       job.settings.image_size], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def better(value: float, best: float | None, metric: str) -> bool:
    if not np.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if direction(metric) == "maximize" else value < best


def _run_finetune(job: ImageJob, params: dict[str, Any], *, checkpoint: Path | None, deadline: float,
                  trial: optuna.Trial | None) -> dict[str, Any]:
    """With ``job.ddp_processes > 1`` this process is rank 0 of a data-parallel run (:func:`_ddp_worker`):
    it validates, checkpoints and reports; before each further epoch and at the end it tells the others.
    On Ray (``job.ray_address``) every rank is a Ray Train worker, rank 0 without the trial (it does not
    pickle): the trial gets each epoch's score once the run has ended and is never pruned mid-run."""
    return run_ranks(job.ddp_processes, job.device,
                     functools.partial(_finetune, job, params, checkpoint=checkpoint), _ddp_worker,
                     (job, params, checkpoint), deadline=deadline, ray_address=job.ray_address,
                     storage=checkpoint.parent if checkpoint is not None else None, in_process={"trial": trial},
                     replay=functools.partial(report_epochs, trial, metric=job.metric))


_GO, _STOP = 0, 1  # rank 0's word before each epoch after the first of this run, and once at the end


def _ddp_worker(group: Group, job: ImageJob, params: dict[str, Any], checkpoint: Path | None) -> None:
    """Ranks 1..N-1: train their rows each epoch until rank 0 says stop (rank 0 runs the early stopping)."""
    net, opt, state, _, loss_fn, precision = _setup(job, params, checkpoint, group)
    model = group.wrap(net)
    first = int(state["epoch"])
    for n in range(first, int(params["epochs"])):
        if n > first and group.decide(_GO) != _GO:
            return
        _train_epoch(model, job, n, params, opt, loss_fn, precision, group)
    group.decide(_GO)  # rank 0's final stop


def _setup(job: ImageJob, params: dict[str, Any], checkpoint: Path | None,
           group: Group) -> tuple[ImageNetwork, Any, dict[str, Any], int, Any, str]:
    """The network (head probed on rank 0 only: wrapping in DDP sends it to the others), its optimizer,
    the state restored from ``checkpoint``, the epoch resumed after, the loss and the precision."""
    s = job.settings
    net = fresh_network(job).to(job.device)
    if group.main:
        feats = head_features(job)
        _set_head(net, *fit_linear_head(feats["fit"], job.y_fit, job.n_classes, c=s.head_c,
                                        class_weight=job.class_weight, seed=job.seed))
    _freeze(net, job.method, s.trainable_blocks)
    precision = _precision(job.device, s.mixed_precision)
    opt = make_optimizer(net, float(params["learning_rate"]), s.weight_decay)
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_score": None, "best_epoch": 0, "bad": 0,
                             "history": []}
    key = params_key(job, params)
    resumed = _load_checkpoint(checkpoint, key, net, opt, state)
    weights = class_weights(job)  # type: ignore[arg-type]  # reads y_fit, n_classes and class_weight only
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=job.device))
    return net, opt, state, resumed, loss_fn, precision


def _finetune(job: ImageJob, params: dict[str, Any], *, checkpoint: Path | None, deadline: float,
              trial: optuna.Trial | None, group: Group) -> dict[str, Any]:
    net, opt, state, resumed, loss_fn, precision = _setup(job, params, checkpoint, group)
    model, first, key = group.wrap(net), int(state["epoch"]), params_key(job, params)

    def epoch(n: int) -> tuple[float, dict[str, Any]]:
        if n > first:
            group.decide(_GO)
        loss = _train_epoch(model, job, n, params, opt, loss_fn, precision, group)
        return score(job.metric, job.y_val, probabilities(net, job.x_val, job.device)), {"train_loss": loss}

    try:
        early_stopping_epochs(state, int(params["epochs"]), epoch, metric=job.metric,
                              patience=job.settings.early_stopping_patience, deadline=deadline,
                              snapshot=lambda: _state_numpy(net),
                              save=lambda: _save_checkpoint(checkpoint, key, net, opt, state), trial=trial)
    except optuna.TrialPruned:
        group.decide(_STOP)
        raise
    group.decide(_STOP)
    if state["best"] is None:
        raise DataError(f"the validation {job.metric} is not defined on these images (NaN every epoch)")
    return {"value": state["best_score"], "payload": state["best"], "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"], "history": state["history"], "precision": precision,
            "resumed_from_epoch": resumed}


def _state_numpy(net: ImageNetwork) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def _save_checkpoint(path: Path | None, key: str, net: ImageNetwork, opt: Any, state: dict[str, Any]) -> None:
    """Weights, optimizer and early-stopping state after an epoch."""
    save_checkpoint(path, key, {
        "weights": net.state_dict(), "optimizer": opt.state_dict(),
        "state": {**state, "best": None if state["best"] is None else
                  {k: torch.from_numpy(v) for k, v in state["best"].items()}}})


def _load_checkpoint(path: Path | None, key: str, net: ImageNetwork, opt: Any, state: dict[str, Any]) -> int:
    """Restore a checkpoint of the same trial parameters; returns the epoch it resumes after (0: none)."""
    blob = load_checkpoint(path, key)
    if blob is None:
        return 0
    net.load_state_dict(blob["weights"])
    opt.load_state_dict(blob["optimizer"])
    saved = dict(blob["state"])
    if saved.get("best") is not None:
        saved["best"] = {k: v.numpy() for k, v in saved["best"].items()}
    state.update(saved)
    return int(state["epoch"])


def run_params(job: ImageJob, params: dict[str, Any], *, checkpoint: Path | None = None,
               deadline: float = math.inf, trial: optuna.Trial | None = None) -> dict[str, Any]:
    """Train one configuration: ``{"value", "payload" (weights), "epochs_run", "best_epoch", "history", ...}``."""
    if job.method == "head":
        return _run_head(job, params)
    return _run_finetune(job, params, checkpoint=checkpoint, deadline=deadline, trial=trial)


def network_from(job: ImageJob, payload: dict[str, np.ndarray]) -> ImageNetwork:
    """The trained network of a trial: the pretrained backbone with the trial's weights (for ``head``,
    only its linear layer) loaded over it."""
    net = fresh_network(job)
    weights = {k: torch.from_numpy(np.asarray(v)) for k, v in payload.items()}
    net.load_state_dict(weights, strict=job.method != "head")
    return net.eval()
