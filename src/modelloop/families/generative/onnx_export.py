"""The ``onnx`` variant's network: the merged causal LM exported to ONNX with its KV cache as inputs and
outputs, run by ONNX Runtime behind the call the decoding loops make of a PyTorch network.

The exported graph takes ``input_ids`` (B, T), ``attention_mask`` (B, P + T), ``position_ids`` (B, T) and
each layer's cached ``past.<i>.key`` / ``past.<i>.value`` (B, heads, P, head_dim), and returns ``logits``
(B, T, vocab) and the layers' ``present.*`` (B, heads, P + T, head_dim): one graph serves the prefill
(P = 0) and every decoding step. It is traced (``torch.onnx.export``, the TorchScript exporter: the dynamo
one needs ``onnxscript``) with a left-padded batch that has a cache, so the masked path is the one
recorded. :class:`OrtCausalLM` takes and returns transformers' ``DynamicCache``, so ``generate.py``,
``batching.py`` (continuous batching) and ``sequences.py`` (perplexity) run it unchanged.
"""

from __future__ import annotations

import io
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["OrtCausalLM", "export_onnx", "quantize_graph"]

OPSET = 17


def _dims(config: Any) -> tuple[int, int, int]:
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return int(config.num_hidden_layers), kv_heads, head_dim


def _names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *present]


def export_onnx(net: Any) -> bytes:
    """The network (a transformers causal LM, adapters merged) as an ONNX model with a KV cache."""
    import torch
    from transformers import DynamicCache

    layers, kv_heads, head_dim = _dims(net.config)

    class Step(torch.nn.Module):
        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> Any:
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)])
            out = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            flat = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *flat)

    batch, cached, new = 2, 3, 2
    ids = torch.ones((batch, new), dtype=torch.long)
    mask = torch.ones((batch, cached + new), dtype=torch.long)
    mask[0, 0] = 0  # a left-padded row: the traced graph applies the mask
    positions = torch.tensor([[cached - 1, cached], [cached, cached + 1]])
    past = [torch.zeros((batch, kv_heads, cached, head_dim)) for _ in range(2 * layers)]
    inputs, outputs = _names(layers)
    dynamic = {
        "input_ids": {0: "batch", 1: "new"},
        "attention_mask": {0: "batch", 1: "total"},
        "position_ids": {0: "batch", 1: "new"},
        "logits": {0: "batch", 1: "new"},
    }
    dynamic.update({n: {0: "batch", 2: "cached"} for n in inputs[3:]})
    dynamic.update({n: {0: "batch", 2: "total"} for n in outputs[1:]})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
        # the TorchScript exporter writes to a file object too (the stubs name paths only)
        torch.onnx.export(
            Step(net.eval()),
            (ids, mask, positions, *past),
            buffer,  # type: ignore[arg-type]
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def quantize_graph(graph: bytes) -> bytes:
    """The graph with ONNX Runtime's dynamic int8 quantization of its MatMul weights (per output channel;
    activations quantized per call), except the layers ``quantize.py`` keeps fp32 (``lm_head``,
    ``down_proj``, ``o_proj``: quantizing them costs the most perplexity)."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .quantize import FP32_LINEAR

    keep = [
        n.name
        for n in onnx.load_from_string(graph).graph.node
        if n.op_type in ("MatMul", "Gemm") and any(part in n.name for part in FP32_LINEAR)
    ]
    with tempfile.TemporaryDirectory(prefix="modelloop-onnx-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        quantize_dynamic(
            src,
            dst,
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=keep,
        )
        return dst.read_bytes()


class OrtCausalLM:
    """An exported graph behind the calls ``generate.py``, ``batching.py`` and ``sequences.py`` make of a
    transformers network: ``net(input_ids=, attention_mask=, position_ids=, past_key_values=, use_cache=)``
    -> ``.logits`` and ``.past_key_values`` (a ``DynamicCache``), plus ``config``, ``generation_config``, ``device``
    and ``parameters()`` (one empty CPU tensor: where inputs go)."""

    def __init__(self, graph: bytes, config: Any, generation_config: Any = None, threads: int = 1):
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        # no busy-waiting between calls: the decoding loop's Python work between tokens and PyTorch in the
        # same process (the base model, other variants) would lose those cores to spinning threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.config, self.generation_config = config, generation_config
        self.device = torch.device("cpu")
        self.layers, self.kv_heads, self.head_dim = _dims(config)
        self.inputs, _ = _names(self.layers)

    def eval(self) -> OrtCausalLM:
        return self

    def parameters(self) -> Any:
        """Where inputs go (``generate.py`` reads the first parameter's device): the CPU."""
        import torch

        yield torch.zeros(0)

    def __call__(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        position_ids: Any = None,
        past_key_values: Any = None,
        use_cache: bool = True,
        **_: Any,
    ) -> Any:
        import torch
        from transformers import DynamicCache

        ids = input_ids.detach().cpu().numpy().astype(np.int64)
        batch, new = ids.shape
        if past_key_values is not None and len(getattr(past_key_values, "layers", [])):
            past = [
                t.detach().cpu().numpy()
                for layer in past_key_values.layers
                for t in (layer.keys, layer.values)
            ]
        else:
            past = [
                np.zeros((batch, self.kv_heads, 0, self.head_dim), np.float32) for _ in range(2 * self.layers)
            ]
        cached = past[0].shape[2]
        if attention_mask is not None and attention_mask.dim() == 4:  # packed examples (``sequences.py``)
            return self._packed(ids, position_ids.detach().cpu().numpy().astype(np.int64))
        mask = (
            np.ones((batch, cached + new), np.int64)
            if attention_mask is None
            else attention_mask.detach().cpu().numpy().astype(np.int64)
        )
        if position_ids is None:
            positions = np.broadcast_to(np.arange(cached, cached + new, dtype=np.int64), (batch, new))
        else:
            positions = position_ids.detach().cpu().numpy().astype(np.int64)
        logits, *present = self._run(ids, mask, np.ascontiguousarray(positions), past)
        layers = [
            (torch.from_numpy(present[2 * i]), torch.from_numpy(present[2 * i + 1]))
            for i in range(self.layers)
        ]
        return SimpleNamespace(
            logits=torch.from_numpy(logits), past_key_values=DynamicCache(ddp_cache_data=layers)
        )

    def _run(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list[np.ndarray]
    ) -> list[Any]:
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        feeds.update(
            zip(self.inputs[3:], (np.ascontiguousarray(p, dtype=np.float32) for p in past), strict=True)
        )
        return list(self.session.run(None, feeds))

    def _packed(self, ids: np.ndarray, positions: np.ndarray) -> Any:
        """Logits of packed sequences (each example sees only itself; its positions start at 0): every
        example as a row of one left-padded batch, the logits put back where its tokens were."""
        import torch

        rows, new = ids.shape
        segments = []
        for b in range(rows):
            starts = np.flatnonzero(positions[b] == 0)
            segments += [(b, int(s), int(e)) for s, e in zip(starts, [*starts[1:], new], strict=True)]
        width = max(e - s for _, s, e in segments)
        batch = np.zeros((len(segments), width), np.int64)
        mask = np.zeros((len(segments), width), np.int64)
        for i, (b, s, e) in enumerate(segments):
            batch[i, width - (e - s) :], mask[i, width - (e - s) :] = ids[b, s:e], 1
        places = np.clip(mask.cumsum(-1) - 1, 0, None).astype(np.int64)
        empty = [np.zeros((len(segments), self.kv_heads, 0, self.head_dim), np.float32)] * (2 * self.layers)
        logits = self._run(batch, mask, places, empty)[0]
        out = np.zeros((rows, new, logits.shape[-1]), np.float32)
        for i, (b, s, e) in enumerate(segments):
            out[b, s:e] = logits[i, width - (e - s) :]
        return SimpleNamespace(logits=torch.from_numpy(out), past_key_values=None)
