"""Export a :class:`~modelloop.families.text.model.TextModel` to ONNX, check it, and quantize it to int8.

**Graph contract (what serving feeds)** — :meth:`TextModel.feed` builds it from token ids:

* inputs ``input_ids`` and ``attention_mask``, int64 ``[batch, sequence]``, both axes dynamic
  (right padding to the longest text of the batch; texts cut to ``max_length`` by
  :meth:`TextModel.encode` — tokenization stays in Python, the fast tokenizer is Rust anyway);
* outputs ``logits`` and ``probabilities`` ``[batch, K]`` float32 in ``model.classes_`` order;
* metadata ``modelloop.classes`` (JSON), ``modelloop.text_column``, ``modelloop.max_length``.

Steps, each recorded in the returned report:

1. ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``) of the merged network with the
   encoder switched to eager attention for the trace, which gives the attention pattern ONNX
   Runtime's transformer optimizer knows;
2. optionally (``optimize=True``, BERT-family encoders) ``onnxruntime.transformers.optimizer``
   fuses embeddings + layer norm, attention and bias + GELU (not residual + layer norm: see
   :data:`~modelloop.families.text.model.SLOW_FUSIONS`). Off by default:
   ONNX Runtime applies most of these fusions itself when a session opens, and with ORT 1.32 on
   CPU the offline-fused graph measured slower at batch 32 (``benchmarks/text.py`` shows both);
3. the fp32 graph is run by ONNX Runtime on check texts (short, long, empty, Chinese, each alone and
   all in one padded batch) and must match PyTorch within ``atol`` on the probabilities;
4. ``quantize=True``: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights per output
   channel, activations quantized per batch) writes ``<stem>-int8.onnx``. Per-channel scales keep
   the probabilities about 3x closer to fp32 than one scale per tensor, at the same size and speed; its difference from PyTorch and its argmax
   agreement are reported, not enforced (the optimize stage judges accuracy on the test set).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ModelloopError
from .backbone import require_torch

if TYPE_CHECKING:
    from .model import TextModel

__all__ = ["CHECK_TEXTS", "OPTIMIZABLE", "check_text_onnx", "export_text_onnx", "int8_path"]

OPSET = 17
ATOL = 1e-4
# model_type values that ONNX Runtime's "bert" optimizer handles
OPTIMIZABLE = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "mpnet")
CHECK_TEXTS: tuple[str, ...] = (
    "my card was charged twice",
    "",
    "ok",
    "I ordered a blue jacket three weeks ago and it still has not arrived; can you tell me where it is "
    "and whether I can get a refund if it is lost?",
    "我的卡被扣了两次钱",
    "Where is my package? 我的快递到哪里了",
    "refund " * 400,
)


def int8_path(path: str | Path) -> Path:
    """Where the int8 variant of ``path`` is written: ``model.onnx`` -> ``model-int8.onnx``."""
    p = Path(path)
    return p.with_name(f"{p.stem}-int8{p.suffix}")


def export_text_onnx(model: TextModel, path: str | Path, *, quantize: bool, optimize: bool = False,
                     texts: Sequence[str] | None = None, atol: float = ATOL) -> dict[str, Any]:
    """Write the fp32 graph to ``path`` (and ``<stem>-int8.onnx`` when ``quantize``); return a report:
    ``{"fp32": {path, size_bytes, max_abs_diff, optimized, fusions}, "int8": {...} | None, ...}``."""
    model._check_fitted()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check = list(CHECK_TEXTS) + list(texts or [])
    raw = path.with_name(f".{path.stem}.{os.getpid()}.raw.onnx")
    try:
        _export(model, raw)
        fp32 = _fp32(model, raw, path, optimize, check, atol)
    finally:
        raw.unlink(missing_ok=True)
    report: dict[str, Any] = {"fp32": fp32, "int8": None, "opset": OPSET, "atol": atol,
                              "inputs": ["input_ids", "attention_mask"], "outputs": ["logits", "probabilities"],
                              "check_texts": len(check)}
    if quantize:
        report["int8"] = _quantize(model, path, int8_path(path), check)
    return report


def check_text_onnx(model: TextModel, onnx_path: str | Path, texts: Sequence[str]) -> dict[str, float]:
    """``max_abs_diff`` (probabilities) and ``agreement`` (argmax) of an ONNX file against PyTorch."""
    from .backbone import ort_session

    session = ort_session(str(onnx_path), None)
    ids, _ = model.encode(list(texts))
    want = model._run(ids, model._torch_logits)
    got = model._run(ids, lambda feed: session.run(["logits"], feed)[0])
    alone = [model._run([ids[i]], lambda feed: session.run(["logits"], feed)[0])[0]
             for i in range(min(len(ids), 8))]  # batch of one: other shapes than the padded batch
    diff = float(np.max(np.abs(got - want))) if len(ids) else 0.0
    if alone:
        diff = max(diff, float(np.max(np.abs(np.asarray(alone) - want[: len(alone)]))))
    agreement = float(np.mean(got.argmax(1) == want.argmax(1))) if len(ids) else 1.0
    return {"max_abs_diff": diff, "agreement": agreement}


# --------------------------------------------------------------------------- steps
@contextlib.contextmanager
def _eager_attention(encoder: Any) -> Iterator[None]:
    """Trace with the encoder's plain (eager) attention; restore the configured one afterwards."""
    config = encoder.config
    before = getattr(config, "_attn_implementation", None)
    try:
        with contextlib.suppress(Exception):
            if hasattr(encoder, "set_attn_implementation"):
                encoder.set_attn_implementation("eager")
            else:
                config._attn_implementation = "eager"
        yield
    finally:
        if before is not None:
            with contextlib.suppress(Exception):
                if hasattr(encoder, "set_attn_implementation"):
                    encoder.set_attn_implementation(before)
                else:
                    config._attn_implementation = before


def _export(model: TextModel, out: Path) -> None:
    torch = require_torch()
    net = model.network_
    if hasattr(net.encoder, "merge_and_unload"):  # LoRA still wrapped: fold the adapters in first
        net.encoder = net.encoder.merge_and_unload()

    class _Probabilities(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            logits = self.inner(input_ids, attention_mask)                       # [B, K]
            return logits, torch.softmax(logits, dim=-1)

    ids, _ = model.encode(["hello world, this is a check", "ok"])
    feed = model.feed(ids)
    args = (torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"]))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"}, "probabilities": {0: "batch"}}
    wrapper = _Probabilities(net).eval()  # export restores the wrapper's mode: it must be eval
    with _eager_attention(net.encoder), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, args, str(out), input_names=["input_ids", "attention_mask"],
                          output_names=["logits", "probabilities"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    net.eval()


def _fp32(model: TextModel, raw: Path, path: Path, optimize: bool, check: list[str],
          atol: float) -> dict[str, Any]:
    """The checked fp32 graph at ``path``: optimized when possible and within ``atol``, else plain."""
    import onnx

    config = model.network_.encoder.config
    info: dict[str, Any] = {"optimized": False, "fusions": {}, "optimizer": None}
    if optimize and config.model_type in OPTIMIZABLE:
        try:
            proto, fusions = _optimized(raw, config)
            _save(model, proto, path)
            result = check_text_onnx(model, path, check)
            if result["max_abs_diff"] <= atol:
                info.update(optimized=True, fusions=fusions, optimizer="onnxruntime.transformers (bert)")
                return {"path": str(path), "size_bytes": path.stat().st_size, **result, **info}
            info["optimizer"] = f"skipped: fused graph differs by {result['max_abs_diff']:.3g}"
        except Exception as exc:  # an optimizer that cannot handle the graph: keep the plain one
            info["optimizer"] = f"skipped: {type(exc).__name__}: {str(exc)[:200]}"
    elif optimize:
        info["optimizer"] = f"skipped: no ONNX Runtime optimizer for model_type '{config.model_type}'"
    _save(model, onnx.load(str(raw)), path)
    result = check_text_onnx(model, path, check)
    if not result["max_abs_diff"] <= atol:
        path.unlink(missing_ok=True)
        raise ModelloopError(f"ONNX output differs from PyTorch by {result['max_abs_diff']:.3g} "
                             f"(> atol {atol:g}); the model cannot be served through ONNX Runtime")
    return {"path": str(path), "size_bytes": path.stat().st_size, **result, **info}


def _optimized(raw: Path, config: Any) -> tuple[Any, dict[str, int]]:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")  # SkipLayerNormalization is slower than what it fuses (SLOW_FUSIONS)
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    with _quiet_logs():
        opt = optimize_model(str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
                             hidden_size=int(config.hidden_size), optimization_options=options)
    fusions = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    return opt.model, fusions


def _save(model: TextModel, proto: Any, path: Path) -> None:
    """Metadata on, then write-and-rename (a kill never leaves a half-written graph at ``path``)."""
    import onnx

    meta = {"modelloop.classes": json.dumps(list(model.classes_), default=str),
            "modelloop.text_column": model.text_column,
            "modelloop.max_length": str(model.settings().max_length)}
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)


def _quantize(model: TextModel, fp32: Path, out: Path, check: list[str]) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with _quiet_logs():
        # DefaultTensorType: shape inference cannot type every MatMul output of a traced graph
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    os.replace(tmp, out)
    return {"path": str(out), "size_bytes": out.stat().st_size, **check_text_onnx(model, out, check),
            "weight_type": "int8 per channel", "activations": "uint8, dynamic per batch"}


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """ONNX Runtime's tools log advice on the root logger; keep it out of the user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
