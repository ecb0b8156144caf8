"""One configuration of a text model: its network (LoRA adapters, the classification layer), the
head on frozen embeddings, and the fine-tuning loop with its schedule, class weights, early
stopping, mixed precision and per-epoch checkpoints (a killed trial resumes at its next epoch).

The search (``text_search.py``) calls :func:`run_params` once per trial; the train stage
(``text.py``) builds the registered :class:`~modelloop.families.text.model.TextModel` with
  :func:`build_model`."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from ...errors import ConfigError, DataError, ModelloopError
from ...evaluation.metrics import direction, score
from ...training.checkpoint import load_checkpoint, save_checkpoint
from ...training.distributed import SINGLE, Group, report_epochs, run_ranks
from .backbone import (
    EmbeddingDeadline,
    backbone_fingerprint,
    init_new_embeddings,
    length_batches,
    load_encoder,
    mean_by_text,
    network,
    pad_batch,
    require_torch,
)
from .config import TextModelConfig

if TYPE_CHECKING:
    from .model import TextModel

__all__ = ["embed", "run_params"]

_EMBED_BATCH = 64


@dataclass
class FitJob:
    """Everything a trial needs: settings, backbone, tokenized parts, and the search's objective."""

    settings: TextModelConfig
    source: str
    tokenizer: Any
    max_length: int
    added: list[str]
    classes: list[Any]
    fit_ids: list[list[int]]
    y_fit: np.ndarray
    val_ids: list[list[int]]
    y_val: np.ndarray
    metric: str
    class_weight: str
    seed: int
    device: str
    features: dict[str, np.ndarray] = field(default_factory=dict)   # head: frozen embeddings per part
    # windows of each validation text, in order (``val_ids`` holds every window of every text): early
    # stopping and the head read each text whole, as serving does; None: one window a text
    val_counts: list[int] | None = None
    ddp_processes: int = 1  # train.ddp_processes: fine-tune in this many processes (training/distributed.py)
    ray_address: str | None = None  # compute.engine: ray: the ranks are Ray Train workers on this cluster

    def val_windows(self) -> list[int]:
        return list(self.val_counts) if self.val_counts is not None else [1] * len(self.val_ids)

    @property
    def method(self) -> str:
        return self.settings.method

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)


def _device(preference: str) -> str:
    torch = require_torch()
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device: 'cuda' was asked for but no CUDA device is visible; use auto or cpu")
    return "cuda" if preference != "cpu" and torch.cuda.is_available() else "cpu"


def _precision(device: str, enabled: bool) -> str:
    """``bf16``/``fp16`` autocast on CUDA (bf16 where supported), else ``fp32``."""
    if device != "cuda" or not enabled:
        return "fp32"
    torch = require_torch()
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _autocast(device: str, precision: str) -> Any:
    if precision == "fp32":
        return contextlib.nullcontext()
    torch = require_torch()
    return torch.autocast(device_type=device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _new_token_ids(job: FitJob) -> list[int]:
    return [int(i) for i in job.tokenizer.convert_tokens_to_ids(job.added)]


def _network_for(job: FitJob, params: dict[str, Any]) -> Any:
    """A fresh network of the backbone for one trial (LoRA adapters wrapped around the encoder)."""
    torch = require_torch()
    s = job.settings
    encoder = load_encoder(job.source)
    init_new_embeddings(encoder, len(job.added), job.seed)
    torch.manual_seed(job.seed)  # LoRA's A matrices and the head start the same in every run
    if job.method == "lora":
        encoder = _with_lora(encoder, job, params)
    elif job.method == "head":
        encoder.requires_grad_(False)
    return network(encoder, job.n_classes, pooling=s.pooling, dropout=s.dropout)


def _with_lora(encoder: Any, job: FitJob, params: dict[str, Any]) -> Any:
    """LoRA adapters around ``encoder``; the rows of the characters added to the vocabulary train too
    (only those rows): laid over the frozen table (:func:`_new_rows_class`) when they are its last
    rows, as :func:`init_new_embeddings` puts them, else by PEFT's ``trainable_token_indices``."""
    from peft import LoraConfig, get_peft_model

    s = job.settings
    extra: dict[str, Any] = {}
    new_ids = _new_token_ids(job) if job.added else []
    first = _last_rows_start(encoder, new_ids) if new_ids else None
    if new_ids and first is None:
        extra["trainable_token_indices"] = new_ids
    config = LoraConfig(r=int(params["lora_r"]), lora_alpha=int(params["lora_alpha"]),
                        lora_dropout=s.lora_dropout, target_modules=s.lora_target_modules, **extra)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = get_peft_model(encoder, config)
    except ValueError as exc:
        raise ConfigError(f"model.lora_target_modules: PEFT cannot choose LoRA targets for this backbone "
                          f"({exc}); list the attention projection names, e.g. [query, value]") from None
    if first is not None:
        base: Any = model.get_base_model()
        base.set_input_embeddings(_new_rows_class()(base.get_input_embeddings(), first))
    return model


def _last_rows_start(encoder: Any, ids: list[int]) -> int | None:
    """Where ``ids`` start when they are exactly the last rows of the input embeddings, else None."""
    rows = int(encoder.get_input_embeddings().weight.shape[0])
    first = rows - len(ids)
    return first if sorted(ids) == list(range(first, rows)) else None


@functools.cache
def _new_rows_class() -> Any:
    torch = require_torch()

    class NewTokenRows(torch.nn.Module):  # type: ignore[name-defined]
        """Input embeddings whose rows from ``first`` on are a trainable parameter laid over the frozen
        table: a gather a step. PEFT's ``trainable_token_indices`` copies the whole table into a new
        tensor every forward and back-propagates a gradient of its size: 30 ms a step against 0.6
        for MiniLM's 30,666 x 384 table and a batch of 16 (2 CPU threads)."""

        def __init__(self, base: Any, first: int):
            super().__init__()
            self.base, self.first = base, first
            self.rows = torch.nn.Parameter(base.weight[first:].detach().clone())

        def forward(self, ids: Any) -> Any:
            out = torch.nn.functional.embedding(ids, self.base.weight, self.base.padding_idx)
            new = (ids >= self.first).unsqueeze(-1)
            return torch.where(new, self.rows[(ids - self.first).clamp(min=0)], out)

        def merged(self) -> Any:
            """The plain embedding layer with the trained rows written in."""
            with torch.no_grad():
                self.base.weight[self.first:] = self.rows
            return self.base

    return NewTokenRows


def _merged(net: Any) -> Any:
    """The network with LoRA adapters and trained new-token rows folded into the encoder weights (a
    plain transformers model)."""
    if hasattr(net.encoder, "merge_and_unload"):
        net.encoder = net.encoder.merge_and_unload()
    embeddings: Any = net.encoder.get_input_embeddings()
    if isinstance(embeddings, _new_rows_class()):
        net.encoder.set_input_embeddings(embeddings.merged())
    return net


def _trainable(net: Any) -> dict[str, Any]:
    return {n: p.detach().cpu().clone() for n, p in net.named_parameters() if p.requires_grad}


def _logits(net: Any, ids: list[list[int]], pad_id: int, device: str, precision: str) -> np.ndarray:
    torch = require_torch()
    out = None
    net.eval()
    with torch.inference_mode(), _autocast(device, precision):
        for rows in length_batches(ids, _EMBED_BATCH):
            input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
            logits = net(torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device))
            got = logits.float().cpu().numpy()
            out = np.zeros((len(ids), got.shape[1])) if out is None else out
            out[rows] = got
    return out if out is not None else np.zeros((0, 0))


def _val_probabilities(net: Any, job: FitJob, precision: str) -> np.ndarray:
    """Each validation text's class probabilities from the mean of its windows' logits: the score
    early stopping and the search read is the one the served model will give (``TextModel.scores_windows``)."""
    from .pipeline import softmax

    return softmax(mean_by_text(_logits(net, job.val_ids, job.pad_id, job.device, precision), job.val_windows()))


def embed(net: Any, ids: list[list[int]], pad_id: int, device: str = "cpu", *,
          deadline: float = math.inf) -> np.ndarray:
    """Pooled encoder outputs ``[n, hidden]`` (float32), in batches sorted by length; past ``deadline``
    (``time.monotonic()``) between two batches, :class:`~.backbone.EmbeddingDeadline`."""
    torch = require_torch()
    out = np.zeros((len(ids), net.head.in_features), dtype=np.float32)
    net.eval()
    done = 0
    with torch.inference_mode():
        for rows in length_batches(ids, _EMBED_BATCH):
            if time.monotonic() > deadline:
                raise EmbeddingDeadline(done, len(ids))
            done += len(rows)
            input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
            out[rows] = net.embed(torch.from_numpy(input_ids).to(device),
                                  torch.from_numpy(mask).to(device)).float().cpu().numpy()
    return out


def _head_features(job: FitJob) -> dict[str, np.ndarray]:
    if not job.features:
        net = _network_for(job, {}).to(job.device)
        job.features = {"fit": embed(net, job.fit_ids, job.pad_id, job.device),
                        "val": mean_by_text(embed(net, job.val_ids, job.pad_id, job.device),
                                            job.val_windows()).astype(np.float32)}
    return job.features


def _fit_head(X: np.ndarray, y: np.ndarray, n_classes: int, *, c: float, class_weight: str,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on standardised embeddings, folded into one linear layer ``(W [K, H], b [K])``
    whose softmax equals the regression's ``predict_proba``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    # Directions in which the embeddings hardly vary (some are constant up to rounding) would get
    # enormous weights after scaling, which then amplify any noise (int8 rounding above all):
    # floor each scale at a tenth of the typical one.
    scaler.scale_ = np.maximum(scaler.scale_, 0.1 * float(np.median(scaler.scale_)) or 1.0)
    lr = LogisticRegression(C=c, max_iter=3000, random_state=seed,
                            class_weight="balanced" if class_weight == "balanced" else None)
    lr.fit(scaler.transform(X), y)
    coef, intercept = lr.coef_, lr.intercept_
    present = lr.classes_.astype(int)
    if len(present) == 2:  # binary: p1 = sigmoid(z) = softmax([0, z])
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    scale = scaler.scale_
    W = np.zeros((n_classes, X.shape[1]))
    b = np.full(n_classes, -30.0)  # classes absent from the fit rows: never predicted
    W[present] = coef / scale
    b[present] = intercept - (coef / scale) @ scaler.mean_
    return W, b


fit_linear_head = _fit_head  # public name: the image family's head is the same folded regression


def _run_head(job: FitJob, params: dict[str, Any]) -> dict[str, Any]:
    feats = _head_features(job)
    W, b = _fit_head(feats["fit"], job.y_fit, job.n_classes, c=float(params["head_c"]),
                     class_weight=job.class_weight, seed=job.seed)
    logits = feats["val"] @ W.T + b
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    value = score(job.metric, job.y_val, z / z.sum(axis=1, keepdims=True))
    return {"value": value, "payload": {"W": W, "b": b}, "epochs_run": 0, "best_epoch": 0, "history": [],
            "precision": "fp32", "resumed_from_epoch": 0}


def class_weights(job: FitJob) -> np.ndarray:
    counts = np.bincount(job.y_fit, minlength=job.n_classes).astype(float)
    if job.class_weight != "balanced":
        return np.ones(job.n_classes)
    weights = len(job.y_fit) / (job.n_classes * np.where(counts == 0, 1.0, counts))
    return np.where(counts == 0, 1.0, weights)


def _better(value: float, best: float | None, metric: str) -> bool:
    if not np.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if direction(metric) == "maximize" else value < best


def _params_key(job: FitJob, params: dict[str, Any]) -> str:
    blob = json.dumps([params, job.method, job.seed, len(job.fit_ids)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_finetune(job: FitJob, params: dict[str, Any], *, checkpoint: Path | None, deadline: float,
                  trial: optuna.Trial | None) -> dict[str, Any]:
    """Train ``params`` with early stopping; returns the best epoch's trainable weights and its score.
    With ``job.ddp_processes > 1`` this process is rank 0 of a data-parallel run (:func:`_ddp_worker`); on
    Ray (``job.ray_address``) every rank is a Ray Train worker, rank 0 without the trial (it does not
    pickle): the trial gets each epoch's score once the run has ended and is never pruned mid-run."""
    return run_ranks(job.ddp_processes, job.device,
                     functools.partial(_finetune, job, params, checkpoint=checkpoint), _ddp_worker,
                     (job, params, checkpoint), deadline=deadline, ray_address=job.ray_address,
                     storage=checkpoint.parent if checkpoint is not None else None,
                     preload=("transformers.modeling_utils", "peft"), in_process={"trial": trial},
                     replay=functools.partial(report_epochs, trial, metric=job.metric))


def _ddp_worker(group: Group, job: FitJob, params: dict[str, Any], checkpoint: Path | None) -> None:
    """Ranks 1..N-1 of a data-parallel fine-tune: train their rows; rank 0 decides when to stop."""
    _finetune(job, params, checkpoint=checkpoint, deadline=math.inf, trial=None, group=group)


_GO, _STOP, _PRUNE = 0, 1, 2  # rank 0's decision after an epoch, sent to every rank


def _finetune(job: FitJob, params: dict[str, Any], *, checkpoint: Path | None, deadline: float,
              trial: optuna.Trial | None, group: Group) -> dict[str, Any]:
    torch = require_torch()
    s = job.settings
    net = _network_for(job, params).to(job.device)
    precision = _precision(job.device, s.mixed_precision)
    batch_size, epochs = int(params["batch_size"]), int(params["epochs"])
    n_batches = math.ceil(len(job.fit_ids) / batch_size)
    total = math.ceil(n_batches / s.grad_accum) * epochs
    opt = make_optimizer(net, float(params["learning_rate"]), s.weight_decay)
    sched = make_scheduler(opt, s.schedule, int(round(s.warmup_ratio * total)), total)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_score": None, "best_epoch": 0, "bad": 0,
                             "history": []}
    key = _params_key(job, params)
    resumed = _load_checkpoint(checkpoint, key, net, opt, sched, scaler, state)
    if not resumed and s.init_head and group.main:  # the other ranks get rank 0's weights from wrap()
        _probe_head(net, job)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weights(job), dtype=torch.float32,
                                                            device=job.device))
    model = group.wrap(net)
    for epoch in range(state["epoch"], epochs):
        t0 = time.monotonic()
        loss = train_epoch(model, job, epoch, batch_size, opt, sched, scaler, loss_fn, precision, group=group)
        if not group.main:
            if group.decide(_GO) != _GO:
                break
            continue
        value = score(job.metric, job.y_val, _val_probabilities(net, job, precision))
        state["history"].append({"epoch": epoch + 1, "train_loss": loss, f"valid_{job.metric}": value,
                                 "seconds": round(time.monotonic() - t0, 3)})
        if _better(value, state["best_score"], job.metric):
            state.update(best=_trainable(net), best_score=float(value), best_epoch=epoch + 1, bad=0)
        else:
            state["bad"] += 1
        state["epoch"] = epoch + 1
        _save_checkpoint(checkpoint, key, net, opt, sched, scaler, state)
        if trial is not None:
            trial.report(float(value) if np.isfinite(value) else float("nan"), epoch)
        decision = _PRUNE if trial is not None and trial.should_prune() else \
            _STOP if state["bad"] >= s.early_stopping_patience or time.monotonic() > deadline else _GO
        if group.decide(decision) == _PRUNE:
            raise optuna.TrialPruned()
        if decision == _STOP:
            break
    if not group.main:
        return {}
    if state["best"] is None:
        raise DataError(f"the validation {job.metric} is not defined on these rows (NaN every epoch)")
    return {"value": state["best_score"], "payload": state["best"], "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"], "history": state["history"], "precision": precision,
            "resumed_from_epoch": resumed}


def _probe_head(net: Any, job: FitJob) -> None:
    """Start the classification layer from a logistic regression on the encoder's embeddings as they
    are before fine-tuning ("linear probing, then fine-tuning": the encoder is not pushed around by
    a random head in the first steps). LoRA adapters start at zero, so this is the frozen encoder."""
    torch = require_torch()
    W, b = _fit_head(embed(net, job.fit_ids, job.pad_id, job.device), job.y_fit, job.n_classes,
                     c=job.settings.head_c, class_weight=job.class_weight, seed=job.seed)
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(W).float())
        net.head.bias.copy_(torch.from_numpy(b).float())


def make_optimizer(net: Any, lr: float, weight_decay: float) -> Any:
    """AdamW, no decay on biases and norms; the fused kernel (one pass over each parameter group):
    full fine-tuning of MiniLM on 2 CPU threads ran 1.29x the samples/s of the default multi-tensor
    one (``benchmarks/text_train.py`` times both; LoRA, with few trainable weights, gains nothing)."""
    torch = require_torch()
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)


def make_scheduler(opt: Any, schedule: str, warmup: int, total: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    fn = get_cosine_schedule_with_warmup if schedule == "cosine" else get_linear_schedule_with_warmup
    return fn(opt, num_warmup_steps=warmup, num_training_steps=max(total, 1))


def train_epoch(net: Any, job: FitJob, epoch: int, batch_size: int, opt: Any, sched: Any, scaler: Any,
                 loss_fn: Any, precision: str, group: Group = SINGLE) -> float:
    """One pass over the fit rows. The shuffle and dropout are seeded by (seed, epoch), so an epoch
    replayed after a resume is the epoch an uninterrupted run would have had. In a data-parallel run
    each rank takes its share of every global batch, its loss scaled by its share of the batch's class
    weight times the ranks (DDP averages the gradients): the step is the one-process step."""
    torch = require_torch()
    s = job.settings
    torch.manual_seed(job.seed * 1009 + epoch)
    order = np.random.default_rng([job.seed, epoch]).permutation(len(job.fit_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    params = [p for p in net.parameters() if p.requires_grad]
    net.train()
    opt.zero_grad(set_to_none=True)
    total = 0.0
    # a class-weighted CrossEntropyLoss has its weights; compression's distillation loss is a plain function
    # whose targets are row positions (into the teacher's logits), not classes: every row weighs 1
    class_weight = getattr(loss_fn, "weight", None)
    weight = class_weight.cpu().numpy() if class_weight is not None else None
    for i, rows in enumerate(batches):
        mine, share = group.split(rows, weight[job.y_fit[rows]] if weight is not None else np.ones(len(rows)))
        input_ids, mask = pad_batch([job.fit_ids[j] for j in mine], job.pad_id)
        target = torch.from_numpy(job.y_fit[mine]).to(job.device)
        with _autocast(job.device, precision):
            logits = net(torch.from_numpy(input_ids).to(job.device), torch.from_numpy(mask).to(job.device))
        loss = loss_fn(logits.float(), target)
        scaler.scale(loss * share / s.grad_accum).backward()
        total += float(loss.detach()) * len(mine) * (share > 0)
        if (i + 1) % s.grad_accum == 0 or i == len(batches) - 1:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
            scaler.step(opt)
            scaler.update()
            sched.step()
            opt.zero_grad(set_to_none=True)
    return group.sum(total) / max(len(job.fit_ids), 1)


def _save_checkpoint(path: Path | None, key: str, net: Any, opt: Any, sched: Any, scaler: Any,
                     state: dict[str, Any]) -> None:
    """Trainable weights, optimizer, schedule and early-stopping state after an epoch."""
    save_checkpoint(path, key, {"weights": _trainable(net), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "state": state})


def _load_checkpoint(path: Path | None, key: str, net: Any, opt: Any, sched: Any, scaler: Any,
                     state: dict[str, Any]) -> int:
    """Restore a checkpoint of the same trial parameters; returns the epoch it resumes after (0: none)."""
    blob = load_checkpoint(path, key)
    if blob is None:
        return 0
    net.load_state_dict(blob["weights"], strict=False)
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    scaler.load_state_dict(blob["scaler"])
    state.update(blob["state"])
    return int(state["epoch"])


def run_params(job: FitJob, params: dict[str, Any], *, checkpoint: Path | None = None,
               deadline: float = math.inf, trial: optuna.Trial | None = None) -> dict[str, Any]:
    """Train one configuration: ``{"value", "payload", "epochs_run", "best_epoch", "history", ...}``."""
    if job.method == "head":
        return _run_head(job, params)
    return _run_finetune(job, params, checkpoint=checkpoint, deadline=deadline, trial=trial)


def _final_network(job: FitJob, params: dict[str, Any], payload: dict[str, Any]) -> Any:
    """The inference network of a trial: head refitted on fit + validation rows, or the fine-tuned
    weights loaded and LoRA merged; on the CPU in fp32, in eval mode."""
    torch = require_torch()
    net = _network_for(job, params)
    if job.method == "head":
        feats = _head_features(job)
        W, b = _fit_head(np.vstack([feats["fit"], feats["val"]]), np.r_[job.y_fit, job.y_val], job.n_classes,
                         c=float(params["head_c"]), class_weight=job.class_weight, seed=job.seed)
        with torch.no_grad():
            net.head.weight.copy_(torch.from_numpy(W).float())
            net.head.bias.copy_(torch.from_numpy(b).float())
    else:
        missing = [k for k in payload if k not in dict(net.named_parameters())]
        if missing:
            raise ModelloopError(f"saved trial weights do not fit the network (e.g. {missing[0]})")
        net.load_state_dict(payload, strict=False)
    net = _merged(net).cpu().float().eval()
    net.requires_grad_(False)
    return net


def build_model(job: FitJob, params: dict[str, Any], result: dict[str, Any], *, model_class: type[TextModel],
                text_column: str, target: str | None, description: dict[str, Any]) -> TextModel:
    """The trained network of ``params`` as a ``model_class`` (:class:`TextModel`, passed in: this
    module sits below the model object, which fits itself through it)."""
    net = _final_network(job, params, result["payload"])
    info = {"params": params, "validation_score": result["value"], "epochs_run": result["epochs_run"],
            "best_epoch": result["best_epoch"], "precision": result["precision"], "device": job.device,
            "history": result["history"], "fit_rows": len(job.fit_ids),
            "backbone_source": job.source, "backbone_fingerprint": backbone_fingerprint(job.source),
            "added_tokens": len(job.added), "ddp_processes": job.ddp_processes, **description}
    return model_class.from_network(network=net, tokenizer=job.tokenizer, classes=job.classes,
                                  text_column=text_column, target=target,
                                  config=job.settings.model_dump(mode="json"), max_length=job.max_length,
                                  seed=job.seed,
                                  class_weight=job.class_weight, metric=job.metric, description=info)
