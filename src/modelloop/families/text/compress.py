"""Smaller text networks for the optimize stage: structured pruning and layer distillation.

Both shrink the network itself: fewer rows and columns in the weight matrices, or fewer layers.
That is what makes ONNX Runtime faster; zeroed weights (unstructured pruning) would not, since a
dense MatMul multiplies zeros as fast as anything else.

* :func:`prune_ffn` removes the least important feed-forward neurons of every encoder layer, the
  same number in each layer, so the encoder config still describes the network with one
  ``intermediate_size`` (the packed model rebuilds from it). The feed-forward block holds 2/3 of a
  BERT layer's weights. A neuron's importance is what it contributes to the layer's output: its
  mean absolute activation over a sample of the training texts times the norm of its output
  weights (the norm of its input weights stands in for the activation without texts). A removed
  neuron's mean activation is folded into the output bias ("bias compensation").
  Attention heads stay: transformers 5 dropped ``prune_heads``, and a per-layer head count cannot be
  written in a BERT config either.
* :func:`drop_layers` keeps every other encoder layer, top layer included (the classification
  layer was fitted on its output), and the config's layer count.
* :func:`fine_tune` then trains the smaller network for a few epochs on the teacher's logits
  (KL divergence at temperature ``T``, times ``T²``) plus the labels (cross-entropy with the class
  weights the teacher had), reusing the train stage's epoch loop, optimizer and schedule.

:func:`compress` runs one of the two on a :class:`~modelloop.families.text.model.TextModel` and returns a
new TextModel (the teacher is left as it was). An encoder without the expected modules raises
:class:`NotApplicable` naming what is missing. Defaults (:class:`CompressSettings`) keep the work
within a few minutes on 2 CPU cores for the bundled MiniLM (6 layers, 384 hidden, 1536 FFN).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .backbone import length_batches, pad_batch, require_torch, texts_of

if TYPE_CHECKING:
    from .model import TextModel

__all__ = ["CompressSettings", "NotApplicable", "compress", "drop_layers", "fine_tune", "prune_ffn"]

COMPRESSIONS = ("pruned", "distilled")


class NotApplicable(Exception):
    """The network's architecture does not allow this compression; the message says why."""


@dataclass(frozen=True)
class CompressSettings:
    # share of each layer's feed-forward neurons removed: 1536 -> 922 for MiniLM. On the intents
    # example (96 test texts) 40 % + 3 epochs kept every test label of the teacher; 50 % changed one
    # (over the 0.01 budget) and lost 2-3 with 2 epochs; before any fine-tune 30 % changes 6 %.
    ffn_prune_share: float = 0.4
    # layers the distilled student keeps; None = half the teacher's, at least 1
    student_layers: int | None = None
    # a student that lost half its layers needs more steps than one that lost some neurons
    epochs: dict[str, int] = dataclasses.field(default_factory=lambda: {"pruned": 3, "distilled": 4})
    seconds: float = 180.0         # no new epoch starts after this many seconds of fine-tuning
    max_texts: int = 2000          # training texts per epoch (a seeded sample beyond): bounds one epoch
    learning_rate: float = 1e-4    # twice full fine-tuning's default: the network is already close
    batch_size: int = 16
    temperature: float = 2.0       # softens the teacher's logits so the runner-up classes teach too
    soft_weight: float = 0.7       # share of the loss on the teacher's logits; the rest on the labels
    importance_texts: int = 256    # training texts whose activations rank the neurons


# --------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class _Layout:
    """Where an encoder family keeps its layer stack and feed-forward weights, and their config keys."""

    stack: str          # the ModuleList of layers, from the encoder
    ffn_in: str         # Linear hidden -> intermediate, from a layer
    ffn_out: str        # Linear intermediate -> hidden, from a layer
    size_key: str       # config key of the intermediate size
    layers_key: str     # config key of the layer count


_LAYOUTS = (
    _Layout("encoder.layer", "intermediate.dense", "output.dense", "intermediate_size", "num_hidden_layers"),
    _Layout("transformer.layer", "ffn.lin1", "ffn.lin2", "hidden_dim", "n_layers"),  # DistilBERT
)
_EXPECTED = "BERT-style modules (encoder.layer[i].intermediate.dense / output.dense, as in BERT, RoBERTa, " \
            "XLM-R, ELECTRA, MPNet; or DistilBERT's transformer.layer[i].ffn)"


def _get(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part, None)
    return module


def _set(module: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    setattr(_get(module, ".".join(parents)) if parents else module, last, value)


def _layout(encoder: Any) -> _Layout:
    """The layout ``encoder`` follows, or NotApplicable naming the encoder's type."""
    torch = require_torch()
    for layout in _LAYOUTS:
        layers = _get(encoder, layout.stack)
        if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
            continue
        linear = [isinstance(_get(layer, name), torch.nn.Linear) for layer in layers
                  for name in (layout.ffn_in, layout.ffn_out)]
        config = encoder.config
        if all(linear) and hasattr(config, layout.size_key) and hasattr(config, layout.layers_key):
            return layout
    kind = getattr(encoder.config, "model_type", None) or type(encoder).__name__
    raise NotApplicable(f"the encoder ({kind}) has none of the {_EXPECTED}")


# --------------------------------------------------------------------------- pruning
def prune_ffn(net: Any, share: float, ids: list[list[int]], pad_id: int) -> dict[str, int]:
    """Remove ``share`` of each layer's feed-forward neurons from ``net`` (in place), least important
    first (see the module docstring); ``ids`` are token ids of sample texts (may be empty). With
    texts, each removed neuron's mean activation times its output weights moves into the output
    bias, so the layer's mean output stays where it was."""
    torch = require_torch()
    layout = _layout(net.encoder)
    layers = _get(net.encoder, layout.stack)
    size = int(getattr(net.encoder.config, layout.size_key))
    keep = max(1, int(round(size * (1.0 - share))))
    if keep >= size:
        raise NotApplicable(f"pruning {share:.0%} of {size} feed-forward neurons removes none")
    scores, means = _importance(net, layers, layout, ids, pad_id)            # [L, size] each
    with torch.no_grad():
        for layer, score, mean in zip(layers, scores, means, strict=True):
            kept = torch.zeros(size, dtype=torch.bool)
            kept[torch.topk(score, keep).indices] = True
            ffn_out = _get(layer, layout.ffn_out)
            shift = ffn_out.weight[:, ~kept] @ mean[~kept]                    # [hidden]
            _set(layer, layout.ffn_in, _slice(_get(layer, layout.ffn_in), rows=kept))
            _set(layer, layout.ffn_out, _slice(ffn_out, columns=kept))
            if ffn_out.bias is not None:
                _get(layer, layout.ffn_out).bias += shift
    setattr(net.encoder.config, layout.size_key, keep)
    return {"ffn_neurons_before": size, "ffn_neurons_after": keep}


def _importance(net: Any, layers: Any, layout: _Layout, ids: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """``[layers, neurons]`` twice: the importance (mean |activation|, else input-weight norm, times
    output-weight norm) and the mean activation (zeros without texts)."""
    torch = require_torch()
    out_norm = torch.stack([_get(layer, layout.ffn_out).weight.detach().norm(dim=0) for layer in layers])
    if not ids:
        in_norm = torch.stack([_get(layer, layout.ffn_in).weight.detach().norm(dim=1) for layer in layers])
        return out_norm * in_norm, torch.zeros_like(out_norm)
    sums, abs_sums = torch.zeros_like(out_norm), torch.zeros_like(out_norm)
    state: dict[str, Any] = {}

    def hook(i: int) -> Any:
        def add(_module: Any, inputs: tuple) -> None:    # inputs[0]: activations [B, T, neurons]
            x = inputs[0] * state["mask"].unsqueeze(-1).to(inputs[0].dtype)
            sums[i] += x.sum(dim=(0, 1))
            abs_sums[i] += x.abs().sum(dim=(0, 1))
        return add

    handles = [_get(layer, layout.ffn_out).register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    net.eval()
    try:
        with torch.inference_mode():
            for rows in length_batches(ids, 32):
                input_ids, mask = pad_batch([ids[i] for i in rows], pad_id)
                state["mask"] = torch.from_numpy(mask)
                net(torch.from_numpy(input_ids), state["mask"])
    finally:
        for handle in handles:
            handle.remove()
    tokens = float(sum(len(x) for x in ids))
    return abs_sums / tokens * out_norm, sums / tokens


def _slice(linear: Any, *, rows: Any = None, columns: Any = None) -> Any:
    """A new Linear with only ``rows`` (output features) or ``columns`` (input features) of ``linear``."""
    torch = require_torch()
    weight = linear.weight.detach()
    weight = weight[rows] if rows is not None else weight[:, columns]
    bias = linear.bias
    if bias is not None and rows is not None:
        bias = bias[rows]
    out = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    out.weight.copy_(weight)
    if bias is not None:
        out.bias.copy_(bias.detach())
    return out


# --------------------------------------------------------------------------- fewer layers
def drop_layers(net: Any, keep: int | None = None) -> dict[str, Any]:
    """Keep ``keep`` of the encoder's layers (default half, at least 1), every other one counted down
    from the top layer; in place."""
    torch = require_torch()
    layout = _layout(net.encoder)
    layers = _get(net.encoder, layout.stack)
    n = len(layers)
    keep = max(1, n // 2) if keep is None else int(keep)
    if n < 2 or not 1 <= keep < n:
        raise NotApplicable(f"the encoder has {n} layer{'s' * (n != 1)}: none to drop"
                            if n < 2 else f"student_layers must be between 1 and {n - 1}, got {keep}")
    step = max(1, n // keep)
    kept = sorted(range(n - 1, -1, -step))[-keep:]                     # 6 -> [1, 3, 5]
    _set(net.encoder, layout.stack, torch.nn.ModuleList([layers[i] for i in kept]))
    for new, layer in enumerate(_get(net.encoder, layout.stack)):
        for module in layer.modules():                                 # the KV-cache index of attention
            if hasattr(module, "layer_idx"):
                module.layer_idx = new
    setattr(net.encoder.config, layout.layers_key, keep)
    return {"layers_before": n, "layers_after": keep, "layers_kept": kept}


# --------------------------------------------------------------------------- the fine-tune
def fine_tune(student: Any, teacher_logits: np.ndarray, labels: np.ndarray, ids: list[list[int]], *,
              model: TextModel, epochs: int, settings: CompressSettings, seed: int) -> dict[str, Any]:
    """Train ``student`` (in place) on the teacher's logits ``[n, K]`` and ``labels`` ``[n]`` of ``ids``
    with the train stage's epoch loop: its targets are the row positions, which the loss looks up."""
    torch = require_torch()
    from .fit import class_weights, FitJob, make_optimizer, make_scheduler, train_epoch

    functional = torch.nn.functional
    job = FitJob(model.settings(), "", model.tokenizer_, model.max_length_, [], list(model.classes_), ids,
               np.arange(len(ids), dtype=np.int64), [], np.zeros(0, dtype=np.int64), model.metric,
               model.class_weight, seed, "cpu")
    weight = torch.tensor(class_weights(dataclasses.replace(job, y_fit=labels)), dtype=torch.float32)
    soft, hard, T, a = torch.from_numpy(teacher_logits).float(), torch.from_numpy(labels), \
        settings.temperature, settings.soft_weight

    def loss_fn(logits: Any, rows: Any) -> Any:                        # logits [B, K], rows [B]
        kl = functional.kl_div(functional.log_softmax(logits / T, dim=-1),
                               functional.softmax(soft[rows] / T, dim=-1), reduction="batchmean")
        return a * T * T * kl + (1 - a) * functional.cross_entropy(logits, hard[rows], weight=weight)

    student.requires_grad_(True)
    embeddings = getattr(student.encoder, "embeddings", None)
    if embeddings is not None:  # frozen: tokens absent from the sample keep their vectors (no decay)
        embeddings.requires_grad_(False)
    steps = math.ceil(len(ids) / settings.batch_size) * epochs
    opt = make_optimizer(student, settings.learning_rate, job.settings.weight_decay)
    sched = make_scheduler(opt, job.settings.schedule, int(round(job.settings.warmup_ratio * steps)), steps)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    losses: list[float] = []
    started = time.monotonic()
    for epoch in range(epochs):
        losses.append(round(train_epoch(student, job, epoch, settings.batch_size, opt, sched, scaler,
                                         loss_fn, "fp32"), 5))
        if time.monotonic() - started > settings.seconds:
            break
    student.eval().requires_grad_(False)
    return {"epochs": len(losses), "of_epochs": epochs, "train_loss": losses, "texts": len(ids),
            "seconds": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------- one TextModel
def compress(teacher: TextModel, kind: str, train: pd.DataFrame, *, target: str, seed: int = 0,
             settings: CompressSettings | None = None) -> TextModel:
    """A new TextModel: ``kind`` ``pruned`` or ``distilled`` of ``teacher``, fine-tuned on the
    non-empty texts of ``train`` (a frame with the teacher's text column and ``target``)."""
    settings = settings or CompressSettings()
    if kind not in COMPRESSIONS:
        raise ValueError(f"kind must be one of {', '.join(COMPRESSIONS)}, got {kind!r}")
    teacher._check_fitted()
    _layout(teacher.network_.encoder)                 # NotApplicable before any work
    ids, labels = _training_rows(teacher, train, target, seed, settings.max_texts)
    if not ids:
        raise NotApplicable(f"no non-empty training text in column '{teacher.text_column}' to fine-tune on")
    net = copy.deepcopy(teacher.network_)
    before = _n_parameters(net)
    if kind == "pruned":
        sample = ids[: settings.importance_texts]      # already a seeded shuffle
        info: dict[str, Any] = prune_ffn(net, settings.ffn_prune_share, sample, _pad_id(teacher))
    else:
        info = drop_layers(net, settings.student_layers)
    logits = teacher._run(ids, teacher._torch_logits)                  # probabilities, [n, K]
    logits = np.log(np.clip(logits, 1e-9, None)).astype(np.float32)   # log-probabilities: logits up to a constant
    info["fine_tune"] = fine_tune(net, logits, labels, ids, model=teacher, epochs=settings.epochs[kind],
                                  settings=settings, seed=seed)
    info.update(kind=kind, parameters_before=before, parameters_after=_n_parameters(net))
    return _student(teacher, net, info)


def _training_rows(teacher: TextModel, train: pd.DataFrame, target: str, seed: int,
                   cap: int) -> tuple[list[list[int]], np.ndarray]:
    """Token ids and class indices of up to ``cap`` non-empty, labelled training texts (seeded order)."""
    texts = texts_of(teacher.clean_inputs(train), teacher.text_column)
    index = {str(c): i for i, c in enumerate(teacher.classes_)}
    y = train[target].map(lambda v: index.get(str(v), -1)).to_numpy(dtype=np.int64) if target in train \
        else np.full(len(texts), -1, dtype=np.int64)
    rows = [i for i, t in enumerate(texts) if t.strip() and y[i] >= 0]
    rows = list(np.random.default_rng(seed).permutation(rows)[:cap])
    ids, _ = teacher.encode([texts[i] for i in rows])
    return ids, y[rows] if rows else np.zeros(0, dtype=np.int64)


def _pad_id(model: TextModel) -> int:
    return int(model.tokenizer_.pad_token_id or 0)


def _n_parameters(net: Any) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def _student(teacher: TextModel, net: Any, info: dict[str, Any]) -> TextModel:
    """A TextModel like ``teacher`` (classes, tokenizer, cleaning, schema...) around ``net``."""
    student = type(teacher).__new__(type(teacher))
    skip = ("network_", "_sessions", "_exports", "_packed", "description_")
    student.__dict__.update({k: v for k, v in teacher.__dict__.items() if k not in skip})
    student.network_ = net.eval()
    student.description_ = {**getattr(teacher, "description_", {}), "compression": info}
    return student
