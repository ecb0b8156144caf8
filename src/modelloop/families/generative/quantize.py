"""The ``int8_dynamic`` variant's network: PyTorch dynamic int8 Linear layers (int8 weights per output
channel, activations quantized per call), after SmoothQuant smoothing (Xiao et al. 2023).

Dynamic quantization quantizes each Linear layer's input with one scale per call, so a few input channels
with large values (the outliers a language model's norms produce) leave the others a handful of levels.
Smoothing moves that range into the weights, which are quantized per output channel: for the inputs of
``q/k/v_proj`` (the output of ``input_layernorm``) and of ``gate/up_proj`` (``post_attention_layernorm``),
channel ``j`` is divided by ``s_j = max|x_j|^alpha / max|w_j|^(1 - alpha)`` (folded into the norm's weight)
and the weights' column ``j`` multiplied by it. The fp32 network computes the same function (up to
rounding); only what int8 loses changes. ``max|x_j|`` comes from calibration examples (training rows).

On the bundled SmolLM2-135M (48 assistant completions; 32 other training rows to calibrate), the int8
network's perplexity rose by 6.6 % without smoothing, by 3.1 % with ``alpha`` 0.5 and by 1.5 % with 0.75
(``SMOOTH_ALPHA``); quantizing ``down_proj`` too cost 41 % even smoothed, so ``lm_head``, ``down_proj`` and
``o_proj`` stay fp32 (``FP32_LINEAR``). Networks without Llama-style layer names are quantized unsmoothed.

The inputs of ``down_proj`` and ``o_proj`` are smoothed too (``_PAIRS``, since 2026-12-06), with the scale
folded into the output rows of the layer they are linear in (``up_proj``: ``down_proj`` reads
silu(gate) * up; ``v_proj``: ``o_proj`` reads attention-weighted values, one scale per K/V channel shared
by the query heads that read it). The fp32 function is unchanged (SmolLM2: perplexity within 5e-7); the
ONNX int8 graph then quantizes ``o_proj`` like the others (``onnx_export.quantize_graph``).
"""

from __future__ import annotations

import warnings
from typing import Any

from ..text.backbone import require_torch
from .sequences import sequence_nll

__all__ = ["FP32_LINEAR", "SMOOTH_ALPHA", "activation_maxima", "int8_dynamic", "smooth"]

FP32_LINEAR = ("lm_head", "down_proj", "o_proj")  # kept fp32: their inputs' outliers survive smoothing
SMOOTH_ALPHA = 0.75
_GROUPS = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
)
# Linear layers whose input is linear in another Linear layer's output channels: the scale folds into that
# layer's output rows instead of a norm (exact: ``down_proj`` reads silu(gate) * up, ``o_proj`` reads the
# attention-weighted values; a K/V head shared by several query heads takes one scale for all of them)
_PAIRS = (("mlp.up_proj", "mlp.down_proj"), ("self_attn.v_proj", "self_attn.o_proj"))


def _layers(net: Any) -> list[Any]:
    inner = getattr(net, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        return []
    return [
        layer
        for layer in layers
        if all(
            _get(layer, norm) is not None and all(_get(layer, n) is not None for n in names)
            for norm, names in _GROUPS
        )
    ]


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def activation_maxima(
    net: Any, ids: list[list[int]], labels: list[list[int]], pad_id: int
) -> list[list[Any]]:
    """Per layer, the largest absolute value of each input channel seen on the calibration examples, for
    each smoothing group then each pair's reader (``[layer][group or pair] -> (in_features,)``)."""
    torch = require_torch()
    layers = _layers(net)
    watched = [names[0] for _, names in _GROUPS] + [reader for _, reader in _PAIRS]
    maxima: list[list[Any]] = [[None] * len(watched) for _ in layers]
    hooks = []
    for i, layer in enumerate(layers):
        for g, name in enumerate(watched):
            if _get(layer, name) is None:
                continue

            def keep(module: Any, inputs: tuple, output: Any, i: int = i, g: int = g) -> None:
                x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0).float()
                maxima[i][g] = x if maxima[i][g] is None else torch.maximum(maxima[i][g], x)

            hooks.append(_get(layer, name).register_forward_hook(keep))
    try:
        sequence_nll(net, ids, labels, pad_id, str(next(net.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return maxima


def smooth(net: Any, maxima: list[list[Any]], alpha: float = SMOOTH_ALPHA) -> int:
    """Fold the smoothing scales into ``net`` in place (the norms' weights and the Linear layers' input
    columns; for ``_PAIRS`` the source layer's output rows and the reader's input columns); returns how
    many groups and pairs were smoothed."""
    torch = require_torch()
    done = 0
    with torch.no_grad():
        for layer, groups in zip(_layers(net), maxima, strict=False):
            for (norm_name, names), x_max in zip(_GROUPS, groups, strict=False):
                if x_max is None:
                    continue
                norm, linears = _get(layer, norm_name), [_get(layer, n) for n in names]
                w_max = torch.cat([lin.weight.abs() for lin in linears], dim=0).amax(dim=0)
                s = (x_max.clamp(min=1e-5).pow(alpha) / w_max.clamp(min=1e-5).pow(1 - alpha)).clamp(min=1e-5)
                norm.weight.div_(s.to(norm.weight.dtype))
                for lin in linears:
                    lin.weight.mul_(s.to(lin.weight.dtype))
                done += 1
            for (source, reader), x_max in zip(_PAIRS, groups[len(_GROUPS):], strict=False):
                done += _smooth_pair(layer, source, reader, x_max, alpha)
    return done


def _smooth_pair(layer: Any, source: str, reader: str, x_max: Any, alpha: float) -> int:
    """Fold smoothing scales between ``source``'s output rows and ``reader``'s input columns (1: done)."""
    torch = require_torch()
    src, dst = _get(layer, source), _get(layer, reader)
    if x_max is None or src is None or dst is None or getattr(src, "bias", None) is not None:
        return 0
    rows, cols = src.weight.shape[0], dst.weight.shape[1]
    if cols % rows:
        return 0
    # reader's input column c comes from source's output row c's group: with grouped K/V heads, query head h
    # reads K/V head h // (heads / kv_heads); otherwise (down_proj reads up_proj) the columns are the rows
    group = cols // rows
    head_dim = getattr(getattr(layer, "self_attn", None), "head_dim", None) if group > 1 else None
    if group > 1 and not head_dim:
        return 0
    c = torch.arange(cols)
    index = c if group == 1 else (c // head_dim) // group * head_dim + c % head_dim
    w_max = dst.weight.abs().amax(dim=0)  # per input column
    x_rows = torch.zeros(rows).scatter_reduce(0, index, x_max.float(), "amax", include_self=False)
    w_rows = torch.zeros(rows).scatter_reduce(0, index, w_max.float(), "amax", include_self=False)
    s = (x_rows.clamp(min=1e-5).pow(alpha) / w_rows.clamp(min=1e-5).pow(1 - alpha)).clamp(min=1e-5)
    src.weight.div_(s.to(src.weight.dtype)[:, None])
    dst.weight.mul_(s[index].to(dst.weight.dtype)[None, :])
    return 1


def int8_dynamic(net: Any) -> Any:
    """``net`` with its Linear layers as dynamic int8 ones, except ``FP32_LINEAR``."""
    torch = require_torch()
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {
        name: per_channel_dynamic_qconfig
        for name, m in net.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.endswith(FP32_LINEAR)
    }
    with (
        warnings.catch_warnings()
    ):  # eager-mode quantization is deprecated in favour of torchao (not installed)
        warnings.simplefilter("ignore")
        return quantize_dynamic(net, spec, dtype=torch.qint8)
