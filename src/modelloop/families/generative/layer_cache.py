"""The frozen lower layers' output, computed once per training sequence.

With ``model.lora_layers: N`` only the last N transformer layers carry adapters: the layers below them,
and the embeddings, never change during a run, so what they make of a packed training sequence is the
same in every epoch. :class:`FrozenLayers` keeps that hidden state (the input of the first adapted layer)
for each sequence the first time it is read, and later steps run only the adapted layers on it (the
model's ``layers`` swapped for its top N while it runs, the kept states given as ``inputs_embeds``). The
loss and gradients are those of the whole network (tested); the epochs after the first skip the lower
layers' forward pass, most of a step's cost when few layers are adapted.

It applies to a transformers decoder whose body has ``layers`` and ``norm`` (Llama, Mistral, Qwen2, Phi-3,
...) with no dropout below the adapters, in one process (a data-parallel run goes through DDP's own forward,
which this would bypass), within ``LIMIT_BYTES`` of kept states (beyond it, batches run whole).

The same split serves the train stage's evaluation: the fine-tuned network, merged, and the base hold the
same weights below the adapted layers, so :func:`paired_nll` runs those layers once per test batch and
each network only its own layers above them (:func:`shared_layers` finds how many by comparing weights).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..text.backbone import require_torch
from .sequences import batch_tensors, loss_sums

__all__ = ["LIMIT_BYTES", "FrozenLayers", "paired_nll", "shared_layers"]

LIMIT_BYTES = 2 << 30  # kept hidden states of one run (fp32): ~900k tokens of SmolLM2's width 576
# decoders whose body feeds ``inputs_embeds`` to its layers as they are (Gemma's, for one, scales them first)
SPLITTABLE = ("llama", "mistral", "qwen2", "qwen3", "phi3")


class FrozenLayers:
    """Kept hidden states at the first adapted layer, per packed sequence (keyed by the sequence object,
    which the objective holds for the whole run)."""

    def __init__(self, first: int, limit_bytes: int = LIMIT_BYTES):
        self.first, self.limit = first, limit_bytes
        self.kept: dict[int, Any] = {}
        self.bytes = 0

    @staticmethod
    def of(net: Any, lora_layers: int | None) -> FrozenLayers | None:
        """The cache for ``net`` when its layers below the last ``lora_layers`` are frozen (else None)."""
        torch = require_torch()
        if lora_layers is None or isinstance(net, torch.nn.parallel.DistributedDataParallel):
            return None
        body = _body(net)
        if body is None:
            return None
        n = len(body.layers)
        first = n - int(lora_layers)
        config = getattr(body, "config", None)
        frozen = [*body.layers[:max(first, 0)], getattr(body, "embed_tokens", None)]
        if first <= 0 or float(getattr(config, "attention_dropout", 0.0) or 0.0) > 0.0 or \
                any(p.requires_grad for m in frozen if m is not None for p in m.parameters()):
            return None
        return FrozenLayers(first)

    def loss_sums(self, net: Any, seqs: Sequence[Any], batch: dict[str, Any]) -> tuple[Any, int]:
        """:func:`.sequences.loss_sums` of ``batch`` (built from ``seqs``), through the kept states."""
        torch = require_torch()
        body = _body(net)
        todo = [i for i, s in enumerate(seqs) if id(s) not in self.kept]
        if todo:
            if not self._keep(body, [seqs[i] for i in todo], batch, todo):
                return loss_sums(net, batch, labelled_only=True)
        width = batch["input_ids"].shape[1]
        states = [self.kept[id(s)] for s in seqs]
        embeds = torch.zeros((len(seqs), width, states[0].shape[-1]), dtype=states[0].dtype, device=states[0].device)
        for b, h in enumerate(states):
            embeds[b, :h.shape[0]] = h  # padding positions see only themselves and carry no label
        with _layers(body, body.layers[self.first:]):
            return loss_sums(net, {**batch, "inputs_embeds": embeds}, labelled_only=True)

    def _keep(self, body: Any, seqs: list[Any], batch: dict[str, Any], rows: list[int]) -> bool:
        """Run the frozen layers on ``seqs`` (rows of ``batch``) and keep each one's states; False when
        they would pass the limit (nothing kept)."""
        torch = require_torch()
        lengths = [sum(len(ids) for ids, _ in s) for s in seqs]
        need = sum(lengths) * int(body.config.hidden_size) * 4
        if self.bytes + need > self.limit:
            return False
        at = torch.tensor(rows)
        seen: dict[str, Any] = {}
        hook = body.norm.register_forward_pre_hook(lambda _m, args: seen.setdefault("h", args[0]))
        try:
            with torch.no_grad(), _layers(body, body.layers[:self.first]):
                body(input_ids=batch["input_ids"][at], attention_mask=batch["attention_mask"][at],
                     position_ids=batch["position_ids"][at], use_cache=False)
        finally:
            hook.remove()
        for j, (s, n) in enumerate(zip(seqs, lengths, strict=True)):
            self.kept[id(s)] = seen["h"][j, :n].detach().clone()
        self.bytes += need
        return True


def shared_layers(a: Any, b: Any) -> int:
    """How many lower transformer layers two networks of one base share bit for bit, embeddings included
    (0: none, or not both decoders this module can split). A LoRA fine-tune with ``model.lora_layers: N``,
    merged, keeps the base's weights below its last N layers."""
    torch = require_torch()
    body_a, body_b = _body(a), _body(b)
    if body_a is None or body_b is None or len(body_a.layers) != len(body_b.layers) or \
            getattr(body_a.config, "model_type", None) not in SPLITTABLE or \
            not _same(body_a.embed_tokens, body_b.embed_tokens, torch):
        return 0
    n = 0
    while n < len(body_a.layers) and _same(body_a.layers[n], body_b.layers[n], torch):
        n += 1
    return n


def paired_nll(nets: Sequence[Any], ids: list[list[int]], labels: list[list[int]], pad_id: int, first: int,
               batch_size: int = 8) -> list[tuple[float, int]]:
    """:func:`.sequences.sequence_nll` (``labelled_only``) of each of ``nets``, whose first ``first`` layers
    are the same (:func:`shared_layers`): those layers run once per batch, on the first network, and each
    network runs only its layers above them on their output. The train stage's evaluation scores the base
    and the fine-tuned model on the same test rows: with 4 of SmolLM2's 30 layers adapted, 26 of 60 layer
    passes were done twice."""
    torch = require_torch()
    totals = [[0.0, 0] for _ in nets]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    device = next(nets[0].parameters()).device
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            batch = batch_tensors([[(ids[i], labels[i])] for i in order[s:s + batch_size]], pad_id, str(device))
            embeds = _lower(_body(nets[0]), first, batch)
            for net, total in zip(nets, totals, strict=True):
                body = _body(net)
                with _layers(body, body.layers[first:]):
                    loss, n = loss_sums(net, {**batch, "inputs_embeds": embeds}, labelled_only=True)
                total[0], total[1] = total[0] + float(loss), total[1] + n
    return [(float(t[0]), int(t[1])) for t in totals]


def _lower(body: Any, first: int, batch: dict[str, Any]) -> Any:
    """The hidden states after ``body``'s first ``first`` layers (the input of the next), per position."""
    seen: dict[str, Any] = {}
    hook = body.norm.register_forward_pre_hook(lambda _m, args: seen.setdefault("h", args[0]))
    try:
        with _layers(body, body.layers[:first]):
            body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 position_ids=batch["position_ids"], use_cache=False)
    finally:
        hook.remove()
    return seen["h"]


def _same(a: Any, b: Any, torch: Any) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def _body(net: Any) -> Any:
    """The decoder body (``model.layers``, ``model.norm``) under a PEFT wrapper, or None."""
    inner = net.get_base_model() if hasattr(net, "get_base_model") else net
    body = getattr(inner, "model", None)
    torch = require_torch()
    if body is None or not isinstance(getattr(body, "layers", None), torch.nn.ModuleList) or \
            getattr(body, "norm", None) is None or getattr(body, "config", None) is None:
        return None
    return body


@contextlib.contextmanager
def _layers(body: Any, layers: Any) -> Iterator[None]:
    """``body.layers`` replaced by ``layers`` (a slice of them) while the block runs."""
    torch = require_torch()
    whole = body.layers
    body.layers = torch.nn.ModuleList(list(layers))
    try:
        yield
    finally:
        body.layers = whole
