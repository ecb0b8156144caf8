"""Training sequences as tensors and what the network makes of them: a batch of packed sequences (each
example attending only to its own tokens), the summed loss of the labelled tokens, and each sequence's
log-likelihood. Shared by fine-tuning (``fit.py``), preference optimisation (``preference.py``) and the
model's perplexity (``model.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..text.backbone import require_torch
from .data import IGNORE

__all__ = ["batch_tensors", "loss_sums", "sequence_logps", "sequence_nll"]


def batch_tensors(
    seqs: Sequence[Sequence[tuple[list[int], list[int]]]], pad_id: int, device: str = "cpu"
) -> dict[str, Any]:
    """Packed sequences -> ``input_ids``, ``labels``, ``position_ids`` and a 4-D additive attention mask in
    which each example sees only its own earlier tokens (padding sees itself alone)."""
    torch = require_torch()
    width = max(sum(len(ids) for ids, _ in seq) for seq in seqs)
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    blocked = torch.finfo(torch.float32).min
    mask = torch.full((n, 1, width, width), blocked, dtype=torch.float32)
    causal = {}
    for b, seq in enumerate(seqs):
        at = 0
        for ids, lab in seq:
            k = len(ids)
            input_ids[b, at : at + k] = torch.tensor(ids)
            labels[b, at : at + k] = torch.tensor(lab)
            positions[b, at : at + k] = torch.arange(k)
            if k not in causal:
                causal[k] = torch.triu(torch.full((k, k), blocked), diagonal=1)
            mask[b, 0, at : at + k, at : at + k] = causal[k]
            at += k
        idx = torch.arange(at, width)
        mask[b, 0, idx, idx] = 0.0
    return {
        "input_ids": input_ids.to(device),
        "labels": labels.to(device),
        "position_ids": positions.to(device),
        "attention_mask": mask.to(device),
    }


def loss_sums(net: Any, batch: dict[str, Any], *, labelled_only: bool = False) -> tuple[Any, int]:
    """Summed next-token cross-entropy over the labelled (completion) tokens, and their count
    (``labelled_only``: see :func:`sequence_logps`)."""
    return -sequence_logps(net, batch, labelled_only=labelled_only).sum(), int((batch["labels"][:, 1:] != IGNORE).sum())


def sequence_nll(
    net: Any, ids: list[list[int]], labels: list[list[int]], pad_id: int, device: str, batch_size: int = 8,
    *, labelled_only: bool = False
) -> tuple[float, int]:
    """Summed negative log-likelihood of the labelled tokens of each example (one per sequence)."""
    torch = require_torch()
    total, count = 0.0, 0
    net.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            rows = order[s : s + batch_size]
            loss, n = loss_sums(net, batch_tensors([[(ids[i], labels[i])] for i in rows], pad_id, device),
                                labelled_only=labelled_only)
            total, count = total + float(loss), count + n
    return total, count


def sequence_logps(net: Any, batch: dict[str, Any], *, labelled_only: bool = False) -> Any:
    """Each sequence's summed log-probability of its labelled tokens, shape ``(n,)`` (one example per
    sequence: what preference optimisation compares), differentiable.

    ``labelled_only`` (a transformers model whose ``forward`` takes ``logits_to_keep``): the vocabulary
    projection runs only at the positions that predict a labelled token, the same figure for a fraction
    of the cost: a completion is a few tokens after a long prompt, and SmolLM2's 49k-word ``lm_head``
    costs as much as 8 of its 30 layers at every position (forward and backward)."""
    torch = require_torch()
    if labelled_only and _keeps_logits(net):
        labels = batch["labels"]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE
        out = net(**_inputs(batch), attention_mask=batch["attention_mask"], position_ids=batch["position_ids"],
                  use_cache=False, logits_to_keep=keep)
        token = -torch.nn.functional.cross_entropy(out.logits.float(), labels[:, 1:][keep[:, :-1]],
                                                   reduction="none")  # (kept,), row-major like ``keep``
        rows = keep.nonzero()[:, 0]
        return torch.zeros(labels.shape[0], dtype=token.dtype, device=token.device).index_add(0, rows, token)
    out = net(
        **_inputs(batch),
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()  # (n, t-1, vocab)
    target = batch["labels"][:, 1:]  # (n, t-1)
    token = -torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), target, ignore_index=IGNORE, reduction="none"
    )  # (n, t-1), 0 where ignored
    return token.sum(dim=1)


def _inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The token ids, or the hidden states given instead (``layer_cache.FrozenLayers``: the kept output of
    the frozen layers, run through the adapted ones)."""
    return {"inputs_embeds": batch["inputs_embeds"]} if "inputs_embeds" in batch else {"input_ids": batch["input_ids"]}


def _keeps_logits(net: Any) -> bool:
    """Whether the causal LM under ``net`` (a DDP and PEFT wrapper taken off) takes a boolean
    ``logits_to_keep`` mask (transformers >= 4.50's ``slice_logits_to_keep``)."""
    import inspect

    inner = getattr(net, "module", net)  # DistributedDataParallel
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # PEFT
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return "logits_to_keep" in inspect.signature(inner.forward).parameters
