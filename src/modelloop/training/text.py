"""The text train stage: dataset version -> tokens -> (search over) fine-tuning -> registered model.

Mirrors :func:`modelloop.training.train.train` (same return keys, same catalog and registry
records) for ``task: text_classification``:

1. the frozen train/test split of the dataset version; texts that are empty are counted and left
   out (``describe()["text_stats"]``); ``model.validation_size`` of the train split is held out
   (stratified, seeded) for early stopping and the search; augmentation (opt-in) touches only the
   rest;
2. the backbone's fast tokenizer, grown by the characters it does not know (``extend_vocab``);
   token ids are cached per dataset version in ``.modelloop/cache/tok-{dataset}-{key}.npz``, and
   for ``method: head`` the frozen encoder's embeddings in ``emb-{dataset}-{key}.npz``;
3. trials (Optuna, like the tabular search: storage URL, study name, ``load_if_exists`` resume,
   the configured values as the first trial): ``head`` fits a logistic regression on standardised
   embeddings; ``lora`` / ``full`` start the classification layer from that same regression
   (linear probing, then fine-tuning) and fine-tune with AdamW, warmup + linear/cosine decay,
   gradient accumulation, class weights, early stopping on the validation score and, on CUDA, autocast.
   Each epoch writes a checkpoint, so a trial interrupted by a kill resumes at its next epoch;
4. the best trial becomes a :class:`~modelloop.models.text.TextModel` (head refitted on train +
   validation; LoRA merged), is scored on the test split, logged to MLflow and registered.

**Budget.** With ``model.search: true`` the search runs within ``train.budget`` seconds (over all
runs of a resumed search) and ``train.trials`` (for ``head``, 30 trials when ``train.trials`` is
unset); a trial past the deadline stops after its current epoch. With ``search: false`` one trial
with the configured values runs its epochs in full.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from ..errors import ConfigError, DataError, ModelloopError
from ..evaluation.metrics import check_metric, direction, score
from ..models.tabular import encode_labels
from ..models.text import (
    TextModel,
    _texts,
    backbone_fingerprint,
    effective_max_length,
    extend_vocabulary,
    init_new_embeddings,
    length_batches,
    load_encoder,
    load_tokenizer,
    network,
    pad_batch,
    require_torch,
    resolve_backbone,
    tokenize,
)
from ..models.text_config import TextModelConfig
from .tune import SearchResult, TrialRecord

__all__ = ["HEAD_TRIALS", "fit_text_model", "run_text_search", "text_settings", "text_study_name", "train_text",
           "validation_split"]

_SPENT_KEY = "modelloop_spent_s"
_STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
_EMBED_BATCH = 64
HEAD_TRIALS = 30  # trial cap of a head search when train.trials is not set


# --------------------------------------------------------------------------- settings and data
def text_settings(cfg: Any) -> TextModelConfig:
    """The ``model:`` section of a config (defaults when the config has none)."""
    section = getattr(cfg, "model", None)
    if section is None:
        return TextModelConfig()
    return section if isinstance(section, TextModelConfig) else TextModelConfig.model_validate(section)


def validation_split(y: pd.Series, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) positions: stratified when every class has two rows, else random."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    n_val = max(1, int(round(size * len(y))))
    if len(y) < 4 or n_val >= len(y):
        raise DataError(f"the train split has {len(y)} rows; text models need at least 4 to hold out "
                        f"model.validation_size ({size}) for early stopping")
    labels = y.astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    strat = labels if counts.min() >= 2 and n_val >= len(counts) else None
    fit, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=strat)
    return np.sort(fit), np.sort(val)


@dataclass
class _Job:
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


def default_params(settings: TextModelConfig) -> dict[str, Any]:
    """The configured values, in search-space names: the first trial of every search."""
    if settings.method == "head":
        return {"head_c": settings.head_c}
    params: dict[str, Any] = {"learning_rate": settings.resolved_learning_rate(), "epochs": settings.epochs,
                              "batch_size": settings.batch_size}
    if settings.method == "lora":
        params.update(lora_r=settings.lora_r, lora_alpha=settings.lora_alpha)
    return params


def _suggest(trial: optuna.Trial, settings: TextModelConfig) -> dict[str, Any]:
    """The search space of the method; each range contains the configured value."""
    if settings.method == "head":
        return {"head_c": trial.suggest_float("head_c", min(1e-3, settings.head_c),
                                              max(1e2, settings.head_c), log=True)}
    lr = settings.resolved_learning_rate()
    low, high = (1e-4, 3e-3) if settings.method == "lora" else (1e-5, 1e-4)
    params = {
        "learning_rate": trial.suggest_float("learning_rate", min(low, lr), max(high, lr), log=True),
        "epochs": trial.suggest_int("epochs", 1, max(2, 2 * settings.epochs)),
        "batch_size": trial.suggest_categorical("batch_size", sorted({8, 16, 32, settings.batch_size})),
    }
    if settings.method == "lora":
        params["lora_r"] = trial.suggest_categorical("lora_r", sorted({4, 8, 16, settings.lora_r}))
        params["lora_alpha"] = trial.suggest_categorical("lora_alpha", sorted({8, 16, 32, settings.lora_alpha}))
    return params


# --------------------------------------------------------------------------- networks
def _new_token_ids(job: _Job) -> list[int]:
    return [int(i) for i in job.tokenizer.convert_tokens_to_ids(job.added)]


def _network_for(job: _Job, params: dict[str, Any]) -> Any:
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


def _with_lora(encoder: Any, job: _Job, params: dict[str, Any]) -> Any:
    from peft import LoraConfig, get_peft_model

    s = job.settings
    extra: dict[str, Any] = {}
    if job.added:  # new characters' embeddings train too (only those rows, not the whole matrix)
        extra["trainable_token_indices"] = _new_token_ids(job)
    config = LoraConfig(r=int(params["lora_r"]), lora_alpha=int(params["lora_alpha"]),
                        lora_dropout=s.lora_dropout, target_modules=s.lora_target_modules, **extra)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_peft_model(encoder, config)
    except ValueError as exc:
        raise ConfigError(f"model.lora_target_modules: PEFT cannot choose LoRA targets for this backbone "
                          f"({exc}); list the attention projection names, e.g. [query, value]") from None


def _merged(net: Any) -> Any:
    """The network with LoRA adapters folded into the encoder weights (a plain transformers model)."""
    if hasattr(net.encoder, "merge_and_unload"):
        net.encoder = net.encoder.merge_and_unload()
    return net


def _trainable(net: Any) -> dict[str, Any]:
    return {n: p.detach().cpu().clone() for n, p in net.named_parameters() if p.requires_grad}


def _probabilities(net: Any, ids: list[list[int]], pad_id: int, device: str, precision: str) -> np.ndarray:
    torch = require_torch()
    out = None
    net.eval()
    with torch.inference_mode(), _autocast(device, precision):
        for rows in length_batches(ids, _EMBED_BATCH):
            input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
            logits = net(torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device))
            proba = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            out = np.zeros((len(ids), proba.shape[1])) if out is None else out
            out[rows] = proba
    return out if out is not None else np.zeros((0, 0))


def embed(net: Any, ids: list[list[int]], pad_id: int, device: str = "cpu") -> np.ndarray:
    """Pooled encoder outputs ``[n, hidden]`` (float32), in batches sorted by length."""
    torch = require_torch()
    out = np.zeros((len(ids), net.head.in_features), dtype=np.float32)
    net.eval()
    with torch.inference_mode():
        for rows in length_batches(ids, _EMBED_BATCH):
            input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
            out[rows] = net.embed(torch.from_numpy(input_ids).to(device),
                                  torch.from_numpy(mask).to(device)).float().cpu().numpy()
    return out


# --------------------------------------------------------------------------- one configuration
def _head_features(job: _Job) -> dict[str, np.ndarray]:
    if not job.features:
        net = _network_for(job, {}).to(job.device)
        job.features = {"fit": embed(net, job.fit_ids, job.pad_id, job.device),
                        "val": embed(net, job.val_ids, job.pad_id, job.device)}
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


def _run_head(job: _Job, params: dict[str, Any]) -> dict[str, Any]:
    feats = _head_features(job)
    W, b = _fit_head(feats["fit"], job.y_fit, job.n_classes, c=float(params["head_c"]),
                     class_weight=job.class_weight, seed=job.seed)
    logits = feats["val"] @ W.T + b
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    value = score(job.metric, job.y_val, z / z.sum(axis=1, keepdims=True))
    return {"value": value, "payload": {"W": W, "b": b}, "epochs_run": 0, "best_epoch": 0, "history": [],
            "precision": "fp32", "resumed_from_epoch": 0}


def _class_weights(job: _Job) -> np.ndarray:
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


def _params_key(job: _Job, params: dict[str, Any]) -> str:
    blob = json.dumps([params, job.method, job.seed, len(job.fit_ids)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_finetune(job: _Job, params: dict[str, Any], *, checkpoint: Path | None, deadline: float,
                  trial: optuna.Trial | None) -> dict[str, Any]:
    """Train ``params`` with early stopping; returns the best epoch's trainable weights and its score."""
    torch = require_torch()
    s = job.settings
    net = _network_for(job, params).to(job.device)
    precision = _precision(job.device, s.mixed_precision)
    batch_size, epochs = int(params["batch_size"]), int(params["epochs"])
    n_batches = math.ceil(len(job.fit_ids) / batch_size)
    total = math.ceil(n_batches / s.grad_accum) * epochs
    opt = _optimizer(net, float(params["learning_rate"]), s.weight_decay)
    sched = _scheduler(opt, s.schedule, int(round(s.warmup_ratio * total)), total)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_score": None, "best_epoch": 0, "bad": 0,
                             "history": []}
    key = _params_key(job, params)
    resumed = _load_checkpoint(checkpoint, key, net, opt, sched, scaler, state)
    if not resumed and s.init_head:
        _probe_head(net, job)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(_class_weights(job), dtype=torch.float32,
                                                            device=job.device))
    for epoch in range(state["epoch"], epochs):
        t0 = time.monotonic()
        loss = _train_epoch(net, job, epoch, batch_size, opt, sched, scaler, loss_fn, precision)
        value = score(job.metric, job.y_val, _probabilities(net, job.val_ids, job.pad_id, job.device, precision))
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
            if trial.should_prune():
                raise optuna.TrialPruned()
        if state["bad"] >= s.early_stopping_patience or time.monotonic() > deadline:
            break
    if state["best"] is None:
        raise DataError(f"the validation {job.metric} is not defined on these rows (NaN every epoch)")
    return {"value": state["best_score"], "payload": state["best"], "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"], "history": state["history"], "precision": precision,
            "resumed_from_epoch": resumed}


def _probe_head(net: Any, job: _Job) -> None:
    """Start the classification layer from a logistic regression on the encoder's embeddings as they
    are before fine-tuning ("linear probing, then fine-tuning": the encoder is not pushed around by
    a random head in the first steps). LoRA adapters start at zero, so this is the frozen encoder."""
    torch = require_torch()
    W, b = _fit_head(embed(net, job.fit_ids, job.pad_id, job.device), job.y_fit, job.n_classes,
                     c=job.settings.head_c, class_weight=job.class_weight, seed=job.seed)
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(W).float())
        net.head.bias.copy_(torch.from_numpy(b).float())


def _optimizer(net: Any, lr: float, weight_decay: float) -> Any:
    torch = require_torch()
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def _scheduler(opt: Any, schedule: str, warmup: int, total: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    fn = get_cosine_schedule_with_warmup if schedule == "cosine" else get_linear_schedule_with_warmup
    return fn(opt, num_warmup_steps=warmup, num_training_steps=max(total, 1))


def _train_epoch(net: Any, job: _Job, epoch: int, batch_size: int, opt: Any, sched: Any, scaler: Any,
                 loss_fn: Any, precision: str) -> float:
    """One pass over the fit rows. The shuffle and dropout are seeded by (seed, epoch), so an epoch
    replayed after a resume is the epoch an uninterrupted run would have had."""
    torch = require_torch()
    s = job.settings
    torch.manual_seed(job.seed * 1009 + epoch)
    order = np.random.default_rng([job.seed, epoch]).permutation(len(job.fit_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    params = [p for p in net.parameters() if p.requires_grad]
    net.train()
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for i, rows in enumerate(batches):
        input_ids, mask = pad_batch([job.fit_ids[j] for j in rows], job.pad_id)
        target = torch.from_numpy(job.y_fit[rows]).to(job.device)
        with _autocast(job.device, precision):
            logits = net(torch.from_numpy(input_ids).to(job.device), torch.from_numpy(mask).to(job.device))
        loss = loss_fn(logits.float(), target)
        scaler.scale(loss / s.grad_accum).backward()
        total += float(loss.detach()) * len(rows)
        if (i + 1) % s.grad_accum == 0 or i == len(batches) - 1:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
            scaler.step(opt)
            scaler.update()
            sched.step()
            opt.zero_grad(set_to_none=True)
    return total / max(len(job.fit_ids), 1)


def _save_checkpoint(path: Path | None, key: str, net: Any, opt: Any, sched: Any, scaler: Any,
                     state: dict[str, Any]) -> None:
    """Trainable weights, optimizer, schedule and early-stopping state after an epoch (write + rename)."""
    if path is None:
        return
    torch = require_torch()
    blob = {"key": key, "weights": _trainable(net), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "state": state}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path | None, key: str, net: Any, opt: Any, sched: Any, scaler: Any,
                     state: dict[str, Any]) -> int:
    """Restore a checkpoint of the same trial parameters; returns the epoch it resumes after (0: none)."""
    if path is None or not path.is_file():
        return 0
    torch = require_torch()
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: start the trial over
        return 0
    if blob.get("key") != key:
        return 0
    net.load_state_dict(blob["weights"], strict=False)
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    scaler.load_state_dict(blob["scaler"])
    state.update(blob["state"])
    return int(state["epoch"])


def run_params(job: _Job, params: dict[str, Any], *, checkpoint: Path | None = None,
               deadline: float = math.inf, trial: optuna.Trial | None = None) -> dict[str, Any]:
    """Train one configuration: ``{"value", "payload", "epochs_run", "best_epoch", "history", ...}``."""
    if job.method == "head":
        return _run_head(job, params)
    return _run_finetune(job, params, checkpoint=checkpoint, deadline=deadline, trial=trial)


def _final_network(job: _Job, params: dict[str, Any], payload: dict[str, Any]) -> Any:
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


# --------------------------------------------------------------------------- TextModel.fit
def _prepare(model: TextModel, texts: list[str], y: pd.Series) -> tuple[_Job, dict[str, Any]]:
    settings = model.settings()
    check_metric(model.metric, "multiclass")
    keep = np.array([bool(t.strip()) for t in texts])
    if not keep.any():
        raise DataError(f"every text in column '{model.text_column}' is empty")
    texts = [t for t, k in zip(texts, keep, strict=True) if k]
    y = y[keep].reset_index(drop=True)
    target, classes = encode_labels(y, "multiclass")
    fit, val = validation_split(y, settings.validation_size, model.seed)
    source = resolve_backbone(settings.backbone, root=model.root or ".")
    tokenizer = load_tokenizer(source)
    max_length = effective_max_length(tokenizer, source, settings.max_length)
    fit_texts = [texts[i] for i in fit]
    added = extend_vocabulary(tokenizer, fit_texts) if settings.extend_vocab else []
    ids, cut = tokenize(tokenizer, texts, max_length)
    job = _Job(settings, source, tokenizer, max_length, added, list(classes or []), [ids[i] for i in fit],
               target[fit], [ids[i] for i in val], target[val], model.metric, model.class_weight, model.seed,
               _device(settings.device))
    stats = {"rows": len(keep), "skipped_empty": int((~keep).sum()), "truncated": int(cut.sum()),
             "max_length": max_length, "added_tokens": len(added)}
    return job, stats


def fit_text_model(model: TextModel, X: Any, y: Any) -> TextModel:
    """``TextModel.fit``: one trial with the configured values (no search, no tracking), in place."""
    model.settings()  # bad settings fail before any data is read
    texts = _texts(X, model.text_column)
    labels = pd.Series(np.asarray(y, dtype=object))
    if len(labels) != len(texts):
        raise DataError(f"X has {len(texts)} texts but y has {len(labels)} labels")
    job, stats = _prepare(model, texts, labels)
    params = default_params(job.settings)
    result = run_params(job, params)
    built = _build_model(job, params, result, text_column=model.text_column, target=None,
                         description={"text_stats": stats})
    model.__dict__.update({k: v for k, v in built.__dict__.items() if k not in model.get_params()})
    return model


def _build_model(job: _Job, params: dict[str, Any], result: dict[str, Any], *, text_column: str,
                 target: str | None, description: dict[str, Any]) -> TextModel:
    net = _final_network(job, params, result["payload"])
    info = {"params": params, "validation_score": result["value"], "epochs_run": result["epochs_run"],
            "best_epoch": result["best_epoch"], "precision": result["precision"], "device": job.device,
            "backbone_source": job.source, "backbone_fingerprint": backbone_fingerprint(job.source),
            "added_tokens": len(job.added), **description}
    return TextModel.from_network(network=net, tokenizer=job.tokenizer, classes=job.classes,
                                  text_column=text_column, target=target,
                                  config=job.settings.model_dump(mode="json"), max_length=job.max_length,
                                  seed=job.seed,
                                  class_weight=job.class_weight, metric=job.metric, description=info)


# --------------------------------------------------------------------------- the search
def text_study_name(ws: Any, dataset_id: str) -> str:
    """Resumable while the dataset and everything but the budget (and ``model.search``) stay the same."""
    from ..config import config_hash

    cfg = ws.config
    model = text_settings(cfg).model_dump(mode="json", exclude={"search"})
    key = json.dumps([model, cfg.metric, cfg.train.class_weight, cfg.split.model_dump(), cfg.seed,
                      config_hash(cfg, "data")], sort_keys=True, default=str)
    return f"{cfg.name}-text-{dataset_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _fingerprint(job: _Job) -> str:
    h = hashlib.sha256(repr((job.method, job.metric, job.classes, len(job.added))).encode())
    for part in (job.y_fit, job.y_val):
        h.update(np.ascontiguousarray(part).tobytes() + b"|")
    h.update(repr([len(x) for x in job.val_ids]).encode())
    return h.hexdigest()


def _open_study(job: _Job, storage: str, study_name: str) -> optuna.Study:
    maximize = direction(job.metric) == "maximize"
    study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                direction="maximize" if maximize else "minimize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    known, fingerprint = study.user_attrs.get("modelloop_fingerprint"), _fingerprint(job)
    if known is None:
        study.set_user_attr("modelloop_fingerprint", fingerprint)
    elif known != fingerprint:
        raise ConfigError(f"study '{study_name}' was started with other data or settings; resume with the "
                          "same data and config, or change model/train settings to start a new study")
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a killed run: fail the trial and queue its parameters again, so its checkpoint resumes
        study.tell(stale.number, state=TrialState.FAIL, skip_if_finished=True)
        if stale.params:
            study.enqueue_trial(dict(stale.params))
    study.sampler = optuna.samplers.TPESampler(seed=job.seed + len(study.trials), multivariate=True)
    return study


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in done or (t.state == TrialState.FAIL and "duration_s" in t.user_attrs)]


def _record_of(t: optuna.trial.FrozenTrial, method: str) -> TrialRecord:
    value = t.value if t.state == TrialState.COMPLETE else None
    return TrialRecord(t.number, method, dict(t.params), value, _STATE_NAMES[t.state],
                       float(t.user_attrs.get("duration_s", 0.0)), t.user_attrs.get("best_epoch"),
                       t.user_attrs.get("error"))


def _trial_file(work_dir: Path, number: int) -> Path:
    return work_dir / f"trial_{number}.pt"


def _save_payload(path: Path, payload: dict[str, Any]) -> None:
    torch = require_torch()
    tensors = {k: (torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v) for k, v in payload.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(tensors, tmp)
    os.replace(tmp, path)


def _load_payload(path: Path, method: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    torch = require_torch()
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in blob.items()} if method == "head" else blob


def _ranked(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=lambda t: (sign * float(t.value or 0.0), t.number))


@dataclass
class _SearchSettings:
    budget: float | None
    n_trials: int | None
    search: bool
    warm_start: list[dict[str, Any]] = field(default_factory=list)


def _warm_params(warm_start: list[dict[str, Any]] | None, settings: TextModelConfig) -> list[dict[str, Any]]:
    """Warm-start sets of this method, reduced to the search-space names."""
    names = set(default_params(settings))
    return [{k: v for k, v in w.items() if k in names} for w in warm_start or []
            if w.get("family", settings.method) == settings.method and names <= set(w)]


def _run_trial(study: optuna.Study, job: _Job, work_dir: Path, deadline: float) -> tuple[TrialRecord, dict]:
    trial = study.ask()
    t0 = time.monotonic()
    params = _suggest(trial, job.settings)
    checkpoint = work_dir / f"ckpt-{_params_key(job, params)}.pt"
    state, value, info = TrialState.COMPLETE, None, {}
    try:
        info = run_params(job, params, checkpoint=checkpoint, deadline=deadline, trial=trial)
        value = float(info["value"])
        _keep_if_best(study, job, work_dir, trial.number, value, info["payload"])
        checkpoint.unlink(missing_ok=True)
        for k in ("epochs_run", "best_epoch", "precision", "resumed_from_epoch"):
            trial.set_user_attr(k, info[k])
        trial.set_user_attr("history", info["history"])
    except KeyboardInterrupt:
        # leave the checkpoint; the next run fails this trial and queues its parameters again
        raise
    except optuna.TrialPruned:
        state = TrialState.PRUNED
        checkpoint.unlink(missing_ok=True)
    except ModelloopError:
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # a failed fit is recorded, the search goes on
        state = TrialState.FAIL
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
    trial.set_user_attr("duration_s", time.monotonic() - t0)
    frozen = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    return _record_of(frozen, job.method), {"history": info.get("history", []),
                                            "precision": info.get("precision")}


def _keep_if_best(study: optuna.Study, job: _Job, work_dir: Path, number: int, value: float,
                  payload: dict[str, Any]) -> None:
    """Keep the weights of the best trial so far on disk (only that one: full models are large)."""
    ranked = _ranked(study)
    best = ranked[0] if ranked else None
    if best is not None and not _better(value, best.value, job.metric):
        return
    _save_payload(_trial_file(work_dir, number), payload)
    for t in ranked:
        _trial_file(work_dir, t.number).unlink(missing_ok=True)


def run_text_search(job: _Job, *, storage: str, study_name: str, work_dir: Path, settings: _SearchSettings,
                    on_trial: Callable[[TrialRecord, dict], None] | None = None,
                    progress: Callable[[int, float], None] | None = None) -> tuple[dict, SearchResult]:
    """Trials of ``job`` in an Optuna study (resumed when it exists); returns the best trial's
    (params, run_params result) and a SearchResult-shaped summary (``model`` filled in by the caller)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _open_study(job, storage, study_name)
        resumed = len(_finished(study))
        _search_loop(study, job, work_dir, settings, on_trial, progress)
        return _conclude(study, job, work_dir, resumed)
    finally:
        optuna.logging.set_verbosity(level)


def _search_loop(study: optuna.Study, job: _Job, work_dir: Path, settings: _SearchSettings,
                 on_trial: Callable | None, progress: Callable | None) -> None:
    defaults = default_params(job.settings)
    if not settings.search:
        if any(t.params == defaults for t in _ranked(study)):
            return
        if not _queued(study, defaults):  # (a killed run's trial is queued again by _open_study)
            study.enqueue_trial(defaults)
        budget: float | None = None
        n_trials: int | None = 1
        n_done = 0
    else:
        for params in [defaults, *settings.warm_start]:
            study.enqueue_trial(params, skip_if_exists=True)
        budget, n_trials, n_done = settings.budget, settings.n_trials, len(_finished(study))
    spent_before = float(study.user_attrs.get(_SPENT_KEY, 0.0))
    start = time.monotonic()
    deadline = start + budget - spent_before if budget is not None else math.inf
    while (n_trials is None or n_done < n_trials) and time.monotonic() < deadline:
        may_stop = bool(_ranked(study))
        record, extra = _run_trial(study, job, work_dir, deadline if may_stop else math.inf)
        n_done += 1
        spent = spent_before + time.monotonic() - start
        study.set_user_attr(_SPENT_KEY, spent)
        if on_trial is not None:
            on_trial(record, extra)
        if progress is not None:
            progress(n_done, spent)


def _queued(study: optuna.Study, params: dict[str, Any]) -> bool:
    return any(t.system_attrs.get("fixed_params") == params
               for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _conclude(study: optuna.Study, job: _Job, work_dir: Path, resumed: int) -> tuple[dict, SearchResult]:
    records = sorted((_record_of(t, job.method) for t in _finished(study)), key=lambda r: r.number)
    ranked = _ranked(study)
    if not ranked:
        first = next((r.error for r in records if r.error), "no trial finished within the budget")
        raise ModelloopError(f"no text-model trial completed; first error: {first}. Fix the data or raise "
                             "train.budget / train.trials and run again")
    best = ranked[0]
    params = _suggest(optuna.trial.FixedTrial(best.params), job.settings)  # type: ignore[arg-type]
    payload = _load_payload(_trial_file(work_dir, best.number), job.method)
    if job.method == "head" or payload is None:  # head refits in milliseconds; lost weights: train again
        result = run_params(job, params)
    else:
        attrs = best.user_attrs
        result = {"value": best.value, "payload": payload, "epochs_run": attrs.get("epochs_run", 0),
                  "best_epoch": attrs.get("best_epoch", 0), "history": attrs.get("history", []),
                  "precision": attrs.get("precision", "fp32"), "resumed_from_epoch": 0}
    best_record = next(r for r in records if r.number == best.number)
    summary = SearchResult(model=None, metric=job.metric, direction=direction(job.metric),  # type: ignore[arg-type]
                           validation_score=float(best.value or 0.0), best_single=best_record, ensemble=None,
                           threshold=None, trials=records, resumed_trials=resumed)
    return {"params": params, "result": result}, summary


# --------------------------------------------------------------------------- the stage
def train_text(ws: Any, *, budget: float | None = None, trials: int | None = None, dataset: str | None = None,
               kind: str = "train", progress: Callable[[int, float], None] | None = None,
               register_as_production: bool | None = None,
               warm_start: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Tokenize, search/fine-tune, evaluate on the frozen test split, register. Returns the same
    JSON-ready summary as the tabular train stage (``best_family`` is the method). ``warm_start``
    (parameter sets, e.g. the champion's, as the retrain stage passes them) are tried first when
    ``model.search`` is on; sets of another method are ignored."""
    from ..data.ingest import ensure_split, load_dataset
    from ..data.stages import cleaning_plan
    from ..evaluation.evaluate import evaluate_model
    from ..registry import tracker_for
    from .train import _record

    cfg, started = ws.config, time.time()
    settings = text_settings(cfg)
    row, df, schema = load_dataset(ws, dataset)
    side = ensure_split(ws, row, df).to_numpy()
    text, target = _text_column(cfg, schema), cfg.data.target
    job, parts, stats = _stage_job(ws, row, df, side, text, target, settings)
    study = text_study_name(ws, row["id"])
    tracker = tracker_for(ws)
    n_trials = trials if trials is not None else cfg.train.trials
    if n_trials is None and settings.method == "head":
        n_trials = HEAD_TRIALS  # a one-dimensional search (C) has converged long before the budget ends
    search = _SearchSettings(budget if budget is not None else cfg.train.budget, n_trials, settings.search,
                             _warm_params(warm_start, settings))
    if search.search and search.budget is None and search.n_trials is None:
        raise ConfigError("train: set a time budget or trials (or both); with neither the search never ends")
    tags = {"modelloop.dataset": row["id"], "modelloop.kind": kind, "modelloop.study": study,
            "modelloop.task": "text_classification"}
    with tracker.run(f"{kind}-{row['id']}", tags=tags) as run_id:
        chosen, summary = run_text_search(job, storage=ws.optuna_url, study_name=study,
                                          work_dir=ws.study_dir(study), settings=search,
                                          on_trial=_trial_logger(tracker, run_id, job), progress=progress)
        model = _build_model(job, chosen["params"], chosen["result"], text_column=text, target=target,
                             description={"text_stats": stats, "augment": parts["augment"]})
        model.cleaning_plan_ = cleaning_plan(ws, row)
        summary.model = model
        evaluation = evaluate_model(model, parts["test"], target=target, task=model.task)
        tracker.log(run_id, params=_run_params_log(cfg, row, model, chosen, stats, parts["augment"]),
                    metrics={**{f"test_{k}": v for k, v in evaluation["metrics"].items()},
                             f"valid_{cfg.metric}": summary.validation_score})
        version = int(tracker.log_model(run_id, model, name=cfg.name))
    return _record(ws, row, run_id, version, model, summary, evaluation, model.task, kind, started,
                   parts["test"], register_as_production)


def _text_column(cfg: Any, schema: Any) -> str:
    if cfg.data.text:
        return str(cfg.data.text)
    found = [c for c, k in schema.columns.items() if k == "text" and c not in (schema.target, schema.id)]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(schema.columns)
    if not found:
        raise ConfigError(f"data.text: no column looks like free text; set data.text to the column holding "
                          f"the texts (columns: {listed})")
    raise ConfigError(f"data.text: several text columns ({', '.join(found)}); set data.text to the one to use")


def _stage_job(ws: Any, row: dict, df: pd.DataFrame, side: np.ndarray, text: str, target: str,
               settings: TextModelConfig) -> tuple[_Job, dict[str, Any], dict[str, Any]]:
    """Split, skip empty texts, hold out validation rows, augment, tokenize (cached) -> the job."""
    from ..data.snapshot import ROW_ID

    cfg = ws.config
    texts = pd.Series(_texts(df, text))
    empty = (texts.str.strip() == "").to_numpy()
    stats: dict[str, Any] = {"skipped_empty": {"train": int((empty & (side == "train")).sum()),
                                               "test": int((empty & (side == "test")).sum())}}
    train_df = df[(side == "train") & ~empty].reset_index(drop=True)
    test_df = df[(side == "test") & ~empty].reset_index(drop=True)
    if train_df.empty:
        raise DataError(f"column '{text}' has no non-empty text in the train split")
    _, classes = encode_labels(df.loc[~empty, target], "multiclass")
    index = {str(c): i for i, c in enumerate(classes or [])}
    fit, val = validation_split(train_df[target], settings.validation_size, cfg.seed)
    fit_df, val_df = train_df.iloc[fit].reset_index(drop=True), train_df.iloc[val].reset_index(drop=True)
    aug_df, aug_report = _augment(settings, fit_df, text, cfg)
    source = resolve_backbone(settings.backbone, root=ws.root)
    tokenizer = load_tokenizer(source)
    max_length = effective_max_length(tokenizer, source, settings.max_length)
    fit_texts = _texts(fit_df, text) + _texts(aug_df, text)
    added = extend_vocabulary(tokenizer, fit_texts) if settings.extend_vocab else []
    key = _cache_key(source, added, max_length)
    by_row, cut_by_row = _cached_tokens(ws, row["id"], key, df, text, tokenizer, max_length)
    aug_ids, _ = tokenize(tokenizer, _texts(aug_df, text), max_length)
    fit_ids = [by_row[r] for r in fit_df[ROW_ID]] + aug_ids
    stats["truncated"] = {part: int(sum(cut_by_row[r] for r in frame[ROW_ID]))
                          for part, frame in (("train", train_df), ("test", test_df))}
    stats.update(max_length=max_length, added_tokens=len(added),
                 rows={"fit": len(fit_df), "validation": len(val_df), "augmented": len(aug_df),
                       "test": len(test_df)})
    y = lambda frame: frame[target].map(lambda v: index[str(v)]).to_numpy(dtype=np.int64)  # noqa: E731
    job = _Job(settings, source, tokenizer, max_length, added, list(classes or []), fit_ids,
               np.r_[y(fit_df), y(aug_df)].astype(np.int64), [by_row[r] for r in val_df[ROW_ID]], y(val_df),
               cfg.metric, cfg.train.class_weight, cfg.seed, _device(settings.device))
    if settings.method == "head":
        job.features = _cached_embeddings(ws, row["id"], key, job, df, by_row, fit_df, val_df, aug_ids)
    return job, {"test": test_df, "augment": aug_report}, stats


def _augment(settings: TextModelConfig, fit_df: pd.DataFrame, text: str, cfg: Any) -> tuple[pd.DataFrame, dict]:
    a = settings.augment
    if not a.enabled:
        return fit_df.iloc[0:0], {"enabled": False}
    from ..data.augment import augment_frame, load_synonyms

    synonyms = load_synonyms(a.synonyms, root=cfg.root)
    rows, report = augment_frame(fit_df, text, n_per_example=a.n_per_example, p=a.p, synonyms=synonyms,
                                 ops=list(a.ops) if synonyms else [o for o in a.ops if o != "synonym"] or ["swap"],
                                 seed=cfg.seed)
    source = a.synonyms if isinstance(a.synonyms, str) else ("inline" if a.synonyms else None)
    return rows, {"enabled": True, "synonyms": source, **report}


def _cache_key(source: str, added: list[str], max_length: int) -> str:
    blob = json.dumps([backbone_fingerprint(source), added, max_length], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _cache_dir(ws: Any) -> Path:
    path = ws.state / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def _cached_tokens(ws: Any, dataset_id: str, key: str, df: pd.DataFrame, text: str, tokenizer: Any,
                   max_length: int) -> tuple[dict[int, list[int]], dict[int, bool]]:
    """Token ids (and truncation flags) of every row of the dataset version, by ``_row_id``."""
    from ..data.snapshot import ROW_ID

    path = _cache_dir(ws) / f"tok-{dataset_id}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            rows, flat, offsets, cut = z["row_id"], z["flat"], z["offsets"], z["truncated"]
    else:
        ids, cut = tokenize(tokenizer, _texts(df, text), max_length)
        rows = df[ROW_ID].to_numpy(dtype=np.int64)
        offsets = np.r_[0, np.cumsum([len(x) for x in ids])].astype(np.int64)
        flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
        _write_npz(path, row_id=rows, flat=flat, offsets=offsets, truncated=cut)
    by_row = {int(r): flat[offsets[i]:offsets[i + 1]].tolist() for i, r in enumerate(rows)}
    return by_row, {int(r): bool(c) for r, c in zip(rows, cut, strict=True)}


def _cached_embeddings(ws: Any, dataset_id: str, key: str, job: _Job, df: pd.DataFrame,
                       by_row: dict[int, list[int]], fit_df: pd.DataFrame, val_df: pd.DataFrame,
                       aug_ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Frozen-encoder embeddings of every row (cached per dataset version) and of augmented rows."""
    from ..data.snapshot import ROW_ID

    s = job.settings
    ekey = f"{key}-{s.pooling}-s{job.seed if job.added else 0}"
    path = _cache_dir(ws) / f"emb-{dataset_id}-{ekey}.npz"
    net: Any = None
    if path.is_file():
        with np.load(path) as z:
            rows, emb = z["row_id"], z["emb"]
    else:
        net = _network_for(job, {}).to(job.device)
        rows = df[ROW_ID].to_numpy(dtype=np.int64)
        emb = embed(net, [by_row[int(r)] for r in rows], job.pad_id, job.device)
        _write_npz(path, row_id=rows, emb=emb)
    where = {int(r): i for i, r in enumerate(rows)}
    fit = emb[[where[int(r)] for r in fit_df[ROW_ID]]]
    if aug_ids:
        digest = hashlib.sha256(json.dumps(aug_ids).encode()).hexdigest()[:10]
        apath = _cache_dir(ws) / f"emb-{dataset_id}-{ekey}-aug-{digest}.npz"
        if apath.is_file():
            with np.load(apath) as z:
                aug = z["emb"]
        else:
            net = net if net is not None else _network_for(job, {}).to(job.device)
            aug = embed(net, aug_ids, job.pad_id, job.device)
            _write_npz(apath, emb=aug)
        fit = np.vstack([fit, aug])
    return {"fit": fit, "val": emb[[where[int(r)] for r in val_df[ROW_ID]]]}


def _trial_logger(tracker: Any, parent: str, job: _Job) -> Callable[[TrialRecord, dict], None]:
    def log(rec: TrialRecord, extra: dict) -> None:
        from mlflow.entities import Metric

        with tracker.run(f"trial-{rec.number}-{rec.family}", parent=parent,
                         tags={"modelloop.state": rec.state}) as trial_run:
            metrics = {f"valid_{job.metric}": rec.value, "seconds": rec.duration_s}
            tracker.log(trial_run, params={"method": rec.family, **rec.params,
                                           "precision": extra.get("precision")},
                        metrics={k: v for k, v in metrics.items() if v is not None})
            now = int(time.time() * 1000)
            curve = [Metric(f"epoch_{k}", float(v), now, int(h["epoch"]))
                     for h in extra.get("history") or [] for k, v in h.items()
                     if k != "epoch" and v is not None and np.isfinite(v)]
            if curve:
                tracker.client.log_batch(trial_run, metrics=curve)
    return log


def _run_params_log(cfg: Any, row: dict, model: TextModel, chosen: dict, stats: dict, augment: dict) -> dict:
    d = model.describe()
    return {"metric": cfg.metric, "task": model.task, "dataset": row["id"], "method": d["method"],
            "backbone": d["backbone"], "backbone_fingerprint": d["backbone_fingerprint"],
            "precision": d["precision"], "device": d["device"], "best_params": chosen["params"],
            "text_stats": stats, "augment": augment, "max_length": d["max_length"]}
