"""The ``onnx`` variant's network: the merged causal LM exported to ONNX with its KV cache as inputs and
outputs, run by ONNX Runtime behind the call the decoding loops make of a PyTorch network.

The exported graph takes ``input_ids`` (B, T), ``attention_mask`` (B, P + T), ``position_ids`` (B, T),
``logits_index`` (K,: the positions whose logits it computes, transformers' ``logits_to_keep`` as a tensor)
and each layer's cached ``past.<i>.key`` / ``past.<i>.value`` (B, heads, P, head_dim), and returns ``logits``
(B, K, vocab) and the layers' ``present.*`` (B, heads, P + T, head_dim): one graph serves the prefill
(P = 0; the decoding loops ask for the last position's logits only, so a prompt's positions skip the
49k-word vocabulary projection) and every decoding step. Graphs exported before ``logits_index`` existed
compute every position's logits and still load. It is traced (``torch.onnx.export``, the TorchScript exporter: the dynamo
one needs ``onnxscript``) with a left-padded batch that has a cache, so the masked path is the one
recorded. :class:`OrtCausalLM` takes and returns transformers' ``DynamicCache``, so ``generate.py``,
``batching.py`` (continuous batching) and ``sequences.py`` (perplexity) run it unchanged. It runs the graph
through IO binding: the cache tensors go in as they are (NumPy views of the tensors, no copy) and ONNX
Runtime writes the logits and the new cache straight into arrays the returned tensors share, so the only
copy of the cache per step is the graph's own ``Concat`` of past and new keys/values.

The graph is a file (ONNX Runtime loads it by path), never pickled bytes; a tied input embedding and output
projection are stored once (:func:`share_tied_embedding`), and weights over :data:`EXTERNAL_DATA_BYTES` go
to an external data file beside it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["EXTERNAL_DATA_BYTES", "OrtCausalLM", "export_onnx", "graph_files", "quantize_graph", "save_graph",
           "share_tied_embedding"]

OPSET = 17
EXTERNAL_DATA_BYTES = 1 << 30  # weights above 1 GiB go to an external data file beside the graph


def _dims(config: Any) -> tuple[int, int, int]:
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return int(config.num_hidden_layers), kv_heads, head_dim


def _names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", "logits_index", *past], ["logits", *present]


def export_onnx(net: Any, path: Path) -> Path:
    """The network (a transformers causal LM, adapters merged) as an ONNX model with a KV cache, written to
    ``path`` (its weights in ``path.data`` beside it when over :data:`EXTERNAL_DATA_BYTES`); a tied input
    embedding and output projection are stored once (:func:`share_tied_embedding`)."""
    import torch
    from transformers import DynamicCache

    layers, kv_heads, head_dim = _dims(net.config)

    class Step(torch.nn.Module):
        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, logits_index: Any,
                    *past: Any) -> Any:
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)])
            out = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=logits_index,  # a 1-D tensor: these positions' logits only
            )
            flat = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *flat)

    batch, cached, new = 2, 3, 2
    ids = torch.ones((batch, new), dtype=torch.long)
    mask = torch.ones((batch, cached + new), dtype=torch.long)
    mask[0, 0] = 0  # a left-padded row: the traced graph applies the mask
    positions = torch.tensor([[cached - 1, cached], [cached, cached + 1]])
    index = torch.tensor([new - 1])
    past = [torch.zeros((batch, kv_heads, cached, head_dim)) for _ in range(2 * layers)]
    inputs, outputs = _names(layers)
    dynamic = {
        "input_ids": {0: "batch", 1: "new"},
        "attention_mask": {0: "batch", 1: "total"},
        "position_ids": {0: "batch", 1: "new"},
        "logits_index": {0: "kept"},
        "logits": {0: "batch", 1: "kept"},
    }
    dynamic.update({n: {0: "batch", 2: "cached"} for n in inputs[4:]})
    dynamic.update({n: {0: "batch", 2: "total"} for n in outputs[1:]})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
        # the TorchScript exporter writes to a file object too (the stubs name paths only)
        torch.onnx.export(
            Step(net.eval()),
            (ids, mask, positions, index, *past),
            buffer,  # type: ignore[arg-type]
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    import onnx

    model = onnx.load_from_string(buffer.getvalue())
    share_tied_embedding(model)
    return save_graph(model, path)


def save_graph(model: Any, path: Path) -> Path:
    """``model`` (an ``onnx.ModelProto``) written to ``path``: one file, or with its initializers in
    ``<name>.data`` beside it when they exceed :data:`EXTERNAL_DATA_BYTES` (protobuf's 2 GB limit is near).
    ONNX Runtime loads either from the path."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    large = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
    if large:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{path.name}.data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return path


def graph_files(path: Path) -> list[Path]:
    """The graph file and its external data file, when it has one."""
    data = path.with_name(f"{path.name}.data")
    return [path, data] if data.is_file() else [path]


def share_tied_embedding(model: Any) -> bool:
    """Store a tied embedding once: the exporter writes the input embedding ``E`` (vocab, hidden) for its
    ``Gather`` and the output projection as a transposed copy ``E.T`` (hidden, vocab) for ``lm_head``'s
    ``MatMul``. The lookup then reads the columns of ``E.T`` (``Gather`` on axis 1, then a ``Transpose``
    back to (batch, new, hidden)), and ``E`` is dropped. Returns whether the graph had such a pair."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    lookups = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits
               and len(inits[n.input[0]].dims) == 2 and n.input[1] == "input_ids"]
    heads = [n for n in graph.node if n.op_type == "MatMul" and "lm_head" in n.name and n.input[1] in inits]
    if len(lookups) != 1 or len(heads) != 1:
        return False
    lookup, head = lookups[0], heads[0]
    embedding, projection = inits[lookup.input[0]], inits[head.input[1]]
    if list(embedding.dims) != list(projection.dims)[::-1]:
        return False
    if not np.array_equal(numpy_helper.to_array(embedding).T, numpy_helper.to_array(projection)):
        return False  # not tied: two matrices
    columns = f"{lookup.output[0]}/columns"
    gather = helper.make_node("Gather", [projection.name, lookup.input[1]], [columns], name=f"{lookup.name}_tied",
                              axis=1)
    transpose = helper.make_node("Transpose", [columns], [lookup.output[0]], name=f"{lookup.name}_tied_T",
                                 perm=[1, 2, 0])
    at = list(graph.node).index(lookup)
    graph.node.remove(lookup)
    graph.node.insert(at, transpose)
    graph.node.insert(at, gather)
    graph.initializer.remove(embedding)
    return True


def quantize_graph(src: Path, dst: Path) -> Path:
    """The graph at ``src`` with ONNX Runtime's dynamic int8 quantization of its MatMul weights (per output
    channel; activations quantized per call), written to ``dst``, except the layers ``quantize.py`` keeps
    fp32 (``lm_head``, ``down_proj``, ``o_proj``: quantizing them costs the most perplexity; a tied
    embedding read from ``lm_head``'s weight stays fp32 with it)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .quantize import FP32_LINEAR

    keep = [
        n.name
        for n in onnx.load(str(src), load_external_data=False).graph.node
        if n.op_type in ("MatMul", "Gemm") and any(part in n.name for part in FP32_LINEAR)
    ]
    with tempfile.TemporaryDirectory(prefix="modelloop-onnx-", dir=dst.parent) as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            src,
            out,
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=keep,
        )
        return save_graph(onnx.load(str(out)), dst)


class OrtCausalLM:
    """An exported graph behind the calls ``generate.py``, ``batching.py`` and ``sequences.py`` make of a
    transformers network: ``net(input_ids=, attention_mask=, position_ids=, past_key_values=, use_cache=,
    logits_to_keep=)`` -> ``.logits`` and ``.past_key_values`` (a ``DynamicCache``), plus ``config``,
    ``generation_config``, ``device`` and ``parameters()`` (one empty CPU tensor: where inputs go)."""

    def __init__(self, graph: bytes | str | Path, config: Any, generation_config: Any = None, threads: int = 1):
        import onnxruntime as ort
        import torch

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        # no busy-waiting between calls: the decoding loop's Python work between tokens and PyTorch in the
        # same process (the base model, other variants) would lose those cores to spinning threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # a path: ONNX Runtime reads the file (and its external data beside it) itself
        self.session = ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options,
                                            providers=["CPUExecutionProvider"])
        self.config, self.generation_config = config, generation_config
        self.device = torch.device("cpu")
        self.layers, self.kv_heads, self.head_dim = _dims(config)
        names = [i.name for i in self.session.get_inputs()]
        self.indexed = "logits_index" in names  # False: a graph exported before it computes every position
        self.past = [n for n in names if n.startswith("past.")]
        self.present = [o.name for o in self.session.get_outputs()][1:]
        vocab = self.session.get_outputs()[0].shape[-1]
        self.vocab = vocab if isinstance(vocab, int) else int(config.vocab_size)

    def eval(self) -> OrtCausalLM:
        return self

    def parameters(self) -> Any:
        """Where inputs go (``generate.py`` reads the first parameter's device): the CPU."""
        import torch

        yield torch.zeros(0)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        position_ids: Any = None,
        past_key_values: Any = None,
        use_cache: bool = True,
        logits_to_keep: Any = 0,
        **_: Any,
    ) -> Any:
        """One forward pass (transformers' arguments; ``logits_to_keep``: an int keeps the last positions'
        logits, 0 all of them, a tensor as transformers' ``slice_logits_to_keep`` reads it)."""
        import torch

        from .generate import kv_cache

        ids = _array(input_ids, np.int64)
        batch, new = ids.shape
        if attention_mask is not None and attention_mask.dim() == 4:  # packed examples (``sequences.py``)
            out = self._packed(ids, _array(position_ids, np.int64))
            return _kept(out, logits_to_keep)
        if past_key_values is not None and len(getattr(past_key_values, "layers", [])):
            # a tensor of this class's own output is a view of its NumPy array: no copy
            past = [_array(t, np.float32) for layer in past_key_values.layers for t in (layer.keys, layer.values)]
        else:
            past = [np.zeros((batch, self.kv_heads, 0, self.head_dim), np.float32)] * (2 * self.layers)
        cached = past[0].shape[2]
        mask = np.ones((batch, cached + new), np.int64) if attention_mask is None else _array(attention_mask, np.int64)
        if position_ids is None:
            positions = np.ascontiguousarray(
                np.broadcast_to(np.arange(cached, cached + new, dtype=np.int64), (batch, new)))
        else:
            positions = _array(position_ids, np.int64)
        last = logits_to_keep if isinstance(logits_to_keep, int) and 0 < logits_to_keep < new else 0
        logits, present = self._run(ids, mask, positions, past, last)
        layers = [(torch.from_numpy(present[2 * i]), torch.from_numpy(present[2 * i + 1])) for i in range(self.layers)]
        out = SimpleNamespace(logits=torch.from_numpy(logits), past_key_values=kv_cache(layers))
        return out if isinstance(logits_to_keep, int) else _kept(out, logits_to_keep)

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list[np.ndarray],
             last: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
        """The graph on these inputs, through IO binding: the logits of every position, or of the ``last``
        ones (when > 0), and the new cache, written by ONNX Runtime into arrays allocated here."""
        batch, new = ids.shape
        total = past[0].shape[2] + new
        binding = self.session.io_binding()
        for name, value in (("input_ids", ids), ("attention_mask", mask), ("position_ids", positions)):
            binding.bind_cpu_input(name, value)
        kept = last or new
        if self.indexed:
            binding.bind_cpu_input("logits_index", np.arange(new - kept, new, dtype=np.int64))
        for name, value in zip(self.past, past, strict=True):
            binding.bind_cpu_input(name, value)
        logits = np.empty((batch, kept if self.indexed else new, self.vocab), np.float32)
        present = [np.empty((batch, self.kv_heads, total, self.head_dim), np.float32) for _ in self.present]
        for name, out in zip(["logits", *self.present], [logits, *present], strict=True):
            binding.bind_output(name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(binding)
        return (logits if self.indexed else logits[:, new - kept:]), present

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


def _array(t: Any, dtype: Any) -> np.ndarray:
    """A tensor as a C-contiguous NumPy array of ``dtype`` (a view when it already is one)."""
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


def _kept(out: Any, logits_to_keep: Any) -> Any:
    """``out`` with only the logits transformers keeps for ``logits_to_keep`` (an int or a tensor)."""
    if isinstance(logits_to_keep, int) and logits_to_keep == 0:
        return out
    from transformers.modeling_utils import slice_logits_to_keep

    out.logits = slice_logits_to_keep(out.logits, logits_to_keep)
    return out
