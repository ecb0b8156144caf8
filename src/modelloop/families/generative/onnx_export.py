"""The ``onnx`` variant's network: the merged causal LM exported to ONNX with its KV cache as inputs and
outputs, run by ONNX Runtime behind the call the decoding loops make of a PyTorch network.

The graph takes ``input_ids`` (B, T), ``attention_mask`` (B, P + T), ``position_ids`` (B, T),
``logits_index`` (K,: the positions whose logits it computes, transformers' ``logits_to_keep`` as a tensor)
and each layer's cached ``past.<i>.key`` / ``past.<i>.value`` (B, kv_heads, P, head_dim), and returns
``logits`` (B, K, vocab) and the layers' ``present.*`` (B, kv_heads, P + T, head_dim): one graph serves the
prefill (P = 0; the decoding loops ask for the last position's logits only, so a prompt's positions skip
the 49k-word vocabulary projection) and every decoding step. Graphs exported before ``logits_index``
existed compute every position's logits and still load. The fused graph also takes ``attention_bias``
(B, 1, T, P + T), added to the attention scores: :class:`OrtCausalLM` makes it from ``attention_mask``
(the padding hidden), or block-diagonal when several prompts from cached prefixes share one row
(:meth:`OrtCausalLM.prefill_rows`); fused graphs exported before it computed the padding's bias inside
and still load (one prompt per row then).

Two ways to write it, same inputs and outputs: a Llama-style network (:func:`fused_blocker` says which) is
written node by node with ONNX Runtime's fused operators (:func:`fused_graph`: ``GroupQueryAttention``,
``RotaryEmbedding``, ``SkipSimplifiedLayerNormalization``; ~14 nodes per layer); any other causal LM is
traced (:func:`traced_graph`, ``torch.onnx.export``'s TorchScript exporter: the dynamo one needs
``onnxscript``) with a left-padded batch that has a cache, so the masked path is the one recorded
(~110 nodes per layer, mostly shape arithmetic; on SmolLM2 3,400 per step). Graphs registered before the
fused one existed are traced ones and load as before. :func:`quantize_graph` makes the int8 graph.

:class:`OrtCausalLM` takes and returns transformers' ``DynamicCache``, so ``generate.py``, ``batching.py``
(continuous batching) and ``sequences.py`` (perplexity) run it unchanged. It runs the graph through IO
binding: the cache tensors go in as they are (NumPy views of the tensors, no copy) and ONNX Runtime writes
the logits and the new cache straight into arrays the returned tensors share. The traced graph joins past
and new keys/values into a new array each step (a copy of the whole cache); the fused graph's decoding
steps do not: its cache lives in buffers with room for more positions (:data:`SHARE_HEADROOM`), bound as
both past and present, so ``GroupQueryAttention`` writes only the new token's keys and values
(:meth:`OrtCausalLM._shared_buffers`; the returned cache is a view of the filled positions).

The graph is a file (ONNX Runtime loads it by path), never pickled bytes; a tied input embedding and output
projection are stored once (:func:`share_tied_embedding`), and weights over :data:`EXTERNAL_DATA_BYTES` go
to an external data file beside it.
"""

from __future__ import annotations

import functools
import io
import threading
import warnings
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["BLOCK", "BLOCK_LINEAR", "EXTERNAL_DATA_BYTES", "OrtCausalLM", "block_int8_matmuls", "export_onnx", "fused_blocker",
           "fused_graph", "graph_files", "quantize_graph", "save_graph", "share_tied_embedding", "traced_graph"]

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


def export_onnx(net: Any, path: Path, *, fused: bool = True) -> Path:
    """The network (a transformers causal LM, adapters merged) as an ONNX model with a KV cache, written to
    ``path`` (its weights in ``path.data`` beside it when over :data:`EXTERNAL_DATA_BYTES`): the fused graph
    (:func:`fused_graph`) when the network is a Llama-style decoder it can write (``fused`` and
    :func:`fused_blocker` says None), else the traced one (:func:`traced_graph`). Both take and return the
    same inputs and outputs."""
    model = fused_graph(net) if fused and fused_blocker(net) is None else traced_graph(net)
    return save_graph(model, path)


def traced_graph(net: Any) -> Any:
    """The network traced by ``torch.onnx.export`` (TorchScript) into an ``onnx.ModelProto``: any causal LM
    transformers runs with a ``DynamicCache``; a tied input embedding and output projection are stored once
    (:func:`share_tied_embedding`)."""
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
    return model


FUSED_TYPES = ("llama", "mistral")  # config.model_type the fused graph is written for (structure checked too)
FUSED_ROPE = ("default", "linear", "llama3")  # rotary types whose cos/sin do not depend on the length


def fused_blocker(net: Any) -> str | None:
    """Why :func:`fused_graph` cannot write ``net`` (None: it can): a Llama-style decoder, bias-free
    projections, SiLU MLP, RMS norms, a rotary embedding of a fixed table, no sliding window, and a
    head size ONNX Runtime's ``GroupQueryAttention`` runs (a multiple of 16)."""
    config = net.config
    inner = getattr(net, "model", None)
    layers = getattr(inner, "layers", None)
    if getattr(config, "model_type", None) not in FUSED_TYPES:
        return f"model_type {getattr(config, 'model_type', None)!r} (fused: {', '.join(FUSED_TYPES)})"
    if layers is None or getattr(inner, "rotary_emb", None) is None or getattr(inner, "norm", None) is None \
            or getattr(net, "lm_head", None) is None or getattr(net.lm_head, "bias", None) is not None:
        return "not a Llama-style decoder (model.layers, model.rotary_emb, model.norm, a bias-free lm_head)"
    head_dim = _dims(config)[2]
    if head_dim % 16:
        return f"head_dim {head_dim} is not a multiple of 16 (ONNX Runtime's GroupQueryAttention)"
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in FUSED_ROPE:
        return f"rope type {rope!r} (fused: {', '.join(FUSED_ROPE)})"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True) is not False:
        return "sliding-window attention"
    if str(getattr(config, "hidden_act", "silu")) != "silu":
        return f"activation {config.hidden_act!r}"
    if not ort_runs_fused():
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} does not run the fused operators as written here"
    attention = {"q_proj", "k_proj", "v_proj", "o_proj"}
    for layer in layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        parts = {n: m for n, m in attn.named_children()} if attn is not None else {}
        linears = [parts.get(n) for n in sorted(attention)]
        linears += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if any(lin is None or getattr(lin, "weight", None) is None or getattr(lin, "bias", None) is not None
               for lin in linears):
            return "a layer's projections are not bias-free Linear layers"
        if set(parts) - attention:
            return f"attention has other parts ({', '.join(sorted(set(parts) - attention))})"
        if any(getattr(getattr(layer, n, None), "variance_epsilon", None) is None
               for n in ("input_layernorm", "post_attention_layernorm")):
            return "a layer's norms are not RMS norms"
    return None


@functools.lru_cache(maxsize=1)
def ort_runs_fused() -> bool:
    """Whether the installed ONNX Runtime runs what :func:`fused_graph` and :func:`block_int8_matmuls` write:
    ``GroupQueryAttention`` with an ``attention_bias`` input (newer than the ``onnxruntime>=1.18`` the
    project allows), ``RotaryEmbedding`` on (batch, tokens, heads * head_dim) with ``position_ids``, and
    8-bit ``MatMulNBits``. Tried once on a 16-wide toy graph; an older runtime gets the traced graph and
    the fp32 layers."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    d = 16
    value = lambda n, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, None)  # noqa: E731
    rows, scales = _block_int8(np.eye(d, dtype=np.float32))
    nodes = [
        helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["r"], domain="com.microsoft", num_heads=1,
                         interleaved=0),
        helper.make_node("GroupQueryAttention", ["r", "r", "x", "pk", "pv", "seqlens", "total", "", "", "", "bias"],
                         ["a", "k", "v"], domain="com.microsoft", num_heads=1, kv_num_heads=1),
        helper.make_node("MatMulNBits", ["a", "w", "s"], ["y"], domain="com.microsoft", K=d, N=d, bits=8,
                         block_size=BLOCK, accuracy_level=4),
    ]
    inits = [numpy_helper.from_array(rows, "w"), numpy_helper.from_array(scales, "s"),
             numpy_helper.from_array(np.ones((4, d // 2), np.float32), "cos"),
             numpy_helper.from_array(np.zeros((4, d // 2), np.float32), "sin")]
    graph = helper.make_graph(nodes, "probe", [value("x"), value("pos", TensorProto.INT64), value("pk"), value("pv"),
                                               value("seqlens", TensorProto.INT32), value("total", TensorProto.INT32),
                                               value("bias")], [value("y")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = min(model.ir_version, 8)
    feed = {"x": np.ones((1, 2, d), np.float32), "pos": np.array([[0, 1]], np.int64),
            "pk": np.zeros((1, 1, 0, d), np.float32), "pv": np.zeros((1, 1, 0, d), np.float32),
            "seqlens": np.array([1], np.int32), "total": np.array(2, np.int32),
            "bias": np.zeros((1, 1, 2, 2), np.float32)}
    try:
        out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    except Exception:  # an operator, input or attribute this runtime does not have
        return False
    return bool(np.allclose(out, 1.0, atol=0.05))


def fused_graph(net: Any) -> Any:
    """The network written node by node as ONNX Runtime's fused decoder (an ``onnx.ModelProto``): per layer
    ``SimplifiedLayerNormalization`` / ``SkipSimplifiedLayerNormalization`` (RMS norm and the residual add),
    one MatMul for q/k/v and one for gate/up, ``RotaryEmbedding`` at each token's own position, and
    ``GroupQueryAttention`` (grouped K/V heads read in place, no ``Expand``; past and new keys joined
    inside the kernel, the left padding masked by an additive bias built once per call from
    ``attention_mask``). The traced graph runs ~110 small shape nodes per layer around the same
    arithmetic (3,400 nodes per step for SmolLM2); this one ~15. Same inputs and outputs as
    :func:`traced_graph`; a tied embedding is stored once (the lookup gathers columns of ``lm_head``'s
    (hidden, vocab) weight). Only for networks :func:`fused_blocker` passes."""
    import torch
    from onnx import TensorProto, helper, numpy_helper

    config = net.config
    layers, kv_heads, head_dim = _dims(config)
    heads = int(config.num_attention_heads)
    inner = net.model
    inits: list[Any] = []
    nodes: list[Any] = []

    def weight(name: str, value: Any) -> str:
        array = value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str] | str, name: str, **attrs: Any) -> list[str]:
        outs = [outputs] if isinstance(outputs, str) else outputs
        domain = "com.microsoft" if op in _MS_OPS else ""
        nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return outs

    def linear(x: str, modules: list[Any], name: str) -> str:
        """One MatMul for these bias-free Linear layers (their outputs side by side)."""
        w = torch.cat([m.weight.detach().float() for m in modules], dim=0).T
        return node("MatMul", [x, weight(f"{name}.weight", w)], f"{name}/out", f"{name}/MatMul")[0]

    # the embedding: tied -> the columns of lm_head's (hidden, vocab) weight, else its own (vocab, hidden)
    embedding, head = net.get_input_embeddings().weight, net.lm_head.weight
    head_name = weight("lm_head.weight", head.detach().float().T)
    if embedding.data_ptr() == head.data_ptr() or torch.equal(embedding, head):
        columns = node("Gather", [head_name, "input_ids"], "embed/columns", "/model/embed_tokens/Gather_tied", axis=1)
        x = node("Transpose", columns, "embed/out", "/model/embed_tokens/Transpose", perm=[1, 2, 0])[0]
    else:
        x = node("Gather", [weight("embed.weight", embedding), "input_ids"], "embed/out", "/model/embed_tokens/Gather")[0]

    # once per call: the lengths GroupQueryAttention reads; the additive attention bias (B, 1, S, total) is an
    # input (OrtCausalLM makes it from attention_mask, or block-diagonal for several prompts in one row)
    ids_shape = node("Shape", ["input_ids"], "ids_shape", "/shape/ids")[0]
    mask_shape = node("Shape", ["attention_mask"], "mask_shape", "/shape/mask")[0]
    one, zero, two = (weight(n, np.array([v], np.int64)) for n, v in (("c_one", 1), ("c_zero", 0), ("c_two", 2)))
    batch = node("Slice", [ids_shape, zero, one], "batch", "/shape/batch")[0]
    total = node("Slice", [mask_shape, one, two], "total", "/shape/total")[0]
    total32 = node("Cast", [total], "total32", "/shape/total32", to=TensorProto.INT32)[0]
    scalar_total = node("Squeeze", [total32, zero], "total_sequence_length", "/shape/total_scalar")[0]
    last = node("Sub", [total32, weight("c_one32", np.array([1], np.int32))], "last32", "/shape/last")[0]
    seqlens = node("Expand", [last, batch], "seqlens_k", "/shape/seqlens_k")[0]
    bias = "attention_bias"

    # the rotary table: cos/sin (positions, head_dim / 2) as the network's own rotary module computes them
    positions = torch.arange(int(config.max_position_embeddings)).unsqueeze(0)
    cos, sin = inner.rotary_emb(torch.zeros(1, dtype=torch.float32), positions)
    cos_name = weight("rotary.cos", cos[0, :, : head_dim // 2])
    sin_name = weight("rotary.sin", sin[0, :, : head_dim // 2])

    residual = ""  # the residual stream ("" before the first layer's norm)
    pending = x  # what the next norm adds to it
    for i, layer in enumerate(inner.layers):
        p = f"/model/layers.{i}"
        attn, mlp = layer.self_attn, layer.mlp
        eps = float(layer.input_layernorm.variance_epsilon)
        w_in = weight(f"layers.{i}.input_layernorm.weight", layer.input_layernorm.weight)
        if not residual:
            h = node("SimplifiedLayerNormalization", [pending, w_in], f"{p}/ln_in", f"{p}/input_layernorm",
                     axis=-1, epsilon=eps, stash_type=1)[0]
            residual = pending
        else:
            h, _, _, residual = node("SkipSimplifiedLayerNormalization", [pending, residual, w_in],
                                     [f"{p}/ln_in", "", "", f"{p}/residual_in"], f"{p}/input_layernorm", epsilon=eps)
        qkv = linear(h, [attn.q_proj, attn.k_proj, attn.v_proj], f"{p}/self_attn/qkv_proj")
        split = weight(f"{p}/qkv_split", np.array([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim],
                                                  np.int64))
        q, k, v = node("Split", [qkv, split], [f"{p}/q", f"{p}/k", f"{p}/v"], f"{p}/self_attn/qkv_split", axis=-1)
        q = node("RotaryEmbedding", [q, "position_ids", cos_name, sin_name], f"{p}/q_rot", f"{p}/self_attn/q_rotary",
                 num_heads=heads, interleaved=0)[0]
        k = node("RotaryEmbedding", [k, "position_ids", cos_name, sin_name], f"{p}/k_rot", f"{p}/self_attn/k_rotary",
                 num_heads=kv_heads, interleaved=0)[0]
        out = node("GroupQueryAttention", [q, k, v, f"past.{i}.key", f"past.{i}.value", seqlens, scalar_total,
                                           "", "", "", bias],
                   [f"{p}/attn", f"present.{i}.key", f"present.{i}.value"], f"{p}/self_attn/GroupQueryAttention",
                   num_heads=heads, kv_num_heads=kv_heads, scale=float(attn.scaling))[0]
        o = linear(out, [attn.o_proj], f"{p}/self_attn/o_proj")
        w_post = weight(f"layers.{i}.post_attention_layernorm.weight", layer.post_attention_layernorm.weight)
        h, _, _, residual = node("SkipSimplifiedLayerNormalization", [o, residual, w_post],
                                 [f"{p}/ln_post", "", "", f"{p}/residual_mid"], f"{p}/post_attention_layernorm",
                                 epsilon=float(layer.post_attention_layernorm.variance_epsilon))
        gate_up = linear(h, [mlp.gate_proj, mlp.up_proj], f"{p}/mlp/gate_up_proj")
        gate, up = node("Split", [gate_up, weight(f"{p}/gate_up_split", np.array([mlp.gate_proj.weight.shape[0]] * 2,
                                                                                   np.int64))],
                        [f"{p}/gate", f"{p}/up"], f"{p}/mlp/gate_up_split", axis=-1)
        sig = node("Sigmoid", [gate], f"{p}/gate_sigmoid", f"{p}/mlp/Sigmoid")[0]
        silu = node("Mul", [gate, sig], f"{p}/gate_silu", f"{p}/mlp/silu")[0]
        act = node("Mul", [silu, up], f"{p}/act", f"{p}/mlp/Mul")[0]
        pending = linear(act, [mlp.down_proj], f"{p}/mlp/down_proj")
    w_norm = weight("norm.weight", inner.norm.weight)
    h, _, _, _ = node("SkipSimplifiedLayerNormalization", [pending, residual, w_norm],
                      ["final_norm", "", "", "final_residual"], "/model/norm",
                      epsilon=float(inner.norm.variance_epsilon))
    kept = node("Gather", [h, "logits_index"], "kept_hidden", "/model/logits_index", axis=1)[0]
    node("MatMul", [kept, head_name], "logits", "/lm_head/MatMul")

    names_in, names_out = _names(layers)
    past_shape: list[str | int | None] = ["batch", kv_heads, "cached", head_dim]
    present_shape: list[str | int | None] = ["batch", kv_heads, "total", head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "new"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "new"]),
              helper.make_tensor_value_info("logits_index", TensorProto.INT64, ["kept"]),
              helper.make_tensor_value_info("attention_bias", TensorProto.FLOAT, ["batch", 1, "new", "total"])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, past_shape) for n in names_in[4:]]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                             ["batch", "kept", int(head.shape[0])])]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, present_shape) for n in names_out[1:]]
    graph = helper.make_graph(nodes, "modelloop_fused_decoder", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)],
                              producer_name="modelloop")
    model.ir_version = min(model.ir_version, 8)  # onnx 1.23 writes 11 by default
    return model


_MS_OPS = {"SkipSimplifiedLayerNormalization", "RotaryEmbedding", "GroupQueryAttention", "MatMulNBits"}


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
    """The graph at ``src`` with int8 MatMul weights, written to ``dst``: ONNX Runtime's dynamic int8
    quantization (weights per output channel, each call's activations with one scale) for all but
    :data:`BLOCK_LINEAR` (``lm_head``, ``down_proj``: their inputs' outliers cost the most perplexity under
    one activation scale, even smoothed), which get block-wise int8 weights instead
    (:func:`block_int8_matmuls`: ``MatMulNBits``, one scale per :data:`BLOCK` weights and per block of each
    activation row, so an outlier costs only its own block; ONNX Runtime runs them ~4x slower than the
    dynamic ones per row, so only these two). ``o_proj`` is dynamic: ``quantize.smooth`` flattens its input
    through ``v_proj`` (the PyTorch int8 variant keeps it fp32). A tied embedding read from ``lm_head``'s
    weight keeps that weight in fp32 for its lookup.

    Measured on SmolLM2-135M (fused graph, smoothed, 1 thread, 48 assistant completions): ``lm_head``,
    ``down_proj``, ``o_proj`` fp32 +0.5 % perplexity, 37 / 41 ms per decoding step at 1 / 8 sequences
    (the fp32 ``lm_head`` alone read 113 MB per step); the three block-wise +1.25-1.35 %, 14-16 / 28-31 ms;
    ``o_proj`` dynamic (smoothed through ``v_proj``) +1.02 %, 17 / 27 ms and a prefill ~40 % cheaper;
    ``down_proj`` dynamic too +4.2 % (+6.9 % smoothed at alpha 0.9)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [
        n.name
        for n in onnx.load(str(src), load_external_data=False).graph.node
        if n.op_type in ("MatMul", "Gemm") and any(part in n.name for part in BLOCK_LINEAR)
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
            # the fused graph's contrib ops (GroupQueryAttention, ...) have no ONNX shape inference: their
            # outputs' type is this
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        model = onnx.load(str(out))
        if ort_runs_fused():  # else (an older runtime without 8-bit MatMulNBits) they stay fp32
            block_int8_matmuls(model, set(keep))
        return save_graph(model, dst)


BLOCK_LINEAR = ("lm_head", "down_proj")  # int8 graph: block-wise int8 weights (the others: dynamic int8)
BLOCK = 32  # block-wise int8: weights per scale along the input dimension


def block_int8_matmuls(model: Any, names: set[str]) -> int:
    """The ``MatMul`` nodes called ``names`` whose weight is a 2-D initializer, as ONNX Runtime's
    ``MatMulNBits`` (com.microsoft) with 8-bit weights: per output column, each block of :data:`BLOCK`
    input rows scaled by its largest magnitude (symmetric, stored offset by 128), computed with int8
    activations quantized per block (``accuracy_level`` 4). A weight no other node reads is dropped.
    Returns how many were converted. (ONNX Runtime's own ``MatMulNBitsQuantizer`` needs ``onnx_ir``.)"""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    done = 0
    for n in list(graph.node):
        if n.op_type != "MatMul" or n.name not in names or n.input[1] not in inits or len(inits[n.input[1]].dims) != 2:
            continue
        weight = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        rows, cols = weight.shape
        packed, scales = _block_int8(weight)
        q = numpy_helper.from_array(packed, f"{n.input[1]}/int8_blocks")
        s = numpy_helper.from_array(scales, f"{n.input[1]}/int8_scales")
        graph.initializer.extend([q, s])
        at = list(graph.node).index(n)
        graph.node.remove(n)
        graph.node.insert(at, helper.make_node("MatMulNBits", [n.input[0], q.name, s.name], list(n.output),
                                               name=n.name, domain="com.microsoft", K=rows, N=cols, bits=8,
                                               block_size=BLOCK, accuracy_level=4))
        readers[n.input[1]] -= 1
        if readers[n.input[1]] == 0:
            graph.initializer.remove(inits[n.input[1]])
        done += 1
    if done and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return done


def _block_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` (K, N) as ``MatMulNBits``' 8-bit layout: uint8 (N, blocks, BLOCK), each column's blocks of
    BLOCK rows (zero-padded), stored as round(w / scale) + 128; scales (N * blocks,) = max|w| / 127."""
    rows, cols = weight.shape
    blocks = -(-rows // BLOCK)
    padded = np.zeros((blocks * BLOCK, cols), np.float32)
    padded[:rows] = weight
    by_column = padded.T.reshape(cols, blocks, BLOCK)
    scales = np.abs(by_column).max(axis=2) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(by_column / scales[:, :, None]), -127, 127) + 128
    return q.astype(np.uint8), scales.astype(np.float32).reshape(-1)


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
        # the fused graph since its attention bias became an input: several prompts in one row (prefill_rows)
        self.packs_rows = "attention_bias" in names
        self.past = [n for n in names if n.startswith("past.")]
        self.present = [o.name for o in self.session.get_outputs()][1:]
        vocab = self.session.get_outputs()[0].shape[-1]
        self.vocab = vocab if isinstance(vocab, int) else int(config.vocab_size)
        # GroupQueryAttention appends in place when past and present are one buffer (the fused graph only)
        self.shares = self.session.get_modelmeta().graph_name == FUSED_GRAPH_NAME
        # several new tokens after a past in a batch: the traced graph, not GroupQueryAttention (batch 1 only)
        self.batched_past = not self.shares
        self._buffers: dict[int, _Buffers] = {}  # by the first buffer's address: the caches it handed out
        self._lock = threading.Lock()

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
        tensors = [t for layer in getattr(past_key_values, "layers", None) or [] for t in (layer.keys, layer.values)]
        shared = self._shared_buffers(tensors, batch, new) if tensors and new == 1 and self.shares else None
        if shared is not None:
            past, cached = shared[0], shared[1].width
        elif tensors:
            # a tensor of this class's own output is a view of its NumPy array: no copy
            past = [_array(t, np.float32) for t in tensors]
            cached = past[0].shape[2]
        else:
            past = [np.zeros((batch, self.kv_heads, 0, self.head_dim), np.float32)] * (2 * self.layers)
            cached = 0
        mask = np.ones((batch, cached + new), np.int64) if attention_mask is None else _array(attention_mask, np.int64)
        if position_ids is None:
            positions = np.ascontiguousarray(
                np.broadcast_to(np.arange(cached, cached + new, dtype=np.int64), (batch, new)))
        else:
            positions = _array(position_ids, np.int64)
        last = logits_to_keep if isinstance(logits_to_keep, int) and 0 < logits_to_keep < new else 0
        logits, present = self._run(ids, mask, positions, past, last, shared=shared is not None)
        if shared is not None:
            shared[1].width = cached + new
            present = [a[:, :, :cached + new] for a in past]
        layers = [(torch.from_numpy(present[2 * i]), torch.from_numpy(present[2 * i + 1])) for i in range(self.layers)]
        out = SimpleNamespace(logits=torch.from_numpy(logits), past_key_values=kv_cache(layers))
        return out if isinstance(logits_to_keep, int) else _kept(out, logits_to_keep)

    def _shared_buffers(self, tensors: list[Any], batch: int, new: int) -> tuple[list[np.ndarray], _Buffers] | None:
        """The buffers a decoding step of the fused graph reads and appends to in place: those whose filled
        positions ``tensors`` are (the cache of this model's previous step, nothing appended to it since),
        else new ones with :data:`SHARE_HEADROOM` positions of room, the cache copied in (once per batch
        change; the graph would copy it every step). None when the cache is no float32 CPU cache of this
        model's shape."""
        import torch

        first = tensors[0]
        cached = int(first.shape[2])
        shape = (batch, self.kv_heads, cached, self.head_dim)
        if any(t.dtype != torch.float32 or t.device.type != "cpu" or tuple(t.shape) != shape for t in tensors):
            return None
        with self._lock:
            for key in [k for k, b in self._buffers.items() if b.arrays() is None]:
                del self._buffers[key]
            found = self._buffers.get(first.data_ptr())
            arrays = found.holds(tensors, cached, new) if found is not None else None
            if found is not None and arrays is not None:
                return arrays, found
        room = cached + new + SHARE_HEADROOM
        arrays = [np.empty((batch, self.kv_heads, room, self.head_dim), np.float32) for _ in tensors]
        for a, t in zip(arrays, tensors, strict=True):
            a[:, :, :cached] = t.detach().numpy()
        made = _Buffers(arrays, cached)
        with self._lock:
            self._buffers[arrays[0].ctypes.data] = made
        return arrays, made

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list[np.ndarray],
             last: int = 0, *, shared: bool = False, bias: np.ndarray | None = None,
             index: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """The graph on these inputs, through IO binding: the logits of every position, or of the ``last``
        ones (when > 0), and the new cache, written by ONNX Runtime into arrays allocated here (``shared``:
        appended to ``past`` in place, which the caller made the buffers of :meth:`_shared_buffers`; the
        mask's width is then the filled positions after this call). ``bias``: the attention bias (B, 1, new,
        total) when not the padding's, for a graph that takes one; ``index``: the positions whose logits it
        computes, when not the ``last`` ones."""
        batch, new = ids.shape
        total = past[0].shape[2] + new
        binding = self.session.io_binding()
        for name, value in (("input_ids", ids), ("attention_mask", mask), ("position_ids", positions)):
            binding.bind_cpu_input(name, value)
        kept = len(index) if index is not None else last or new
        if self.indexed:
            binding.bind_cpu_input("logits_index", index if index is not None else
                                   np.arange(new - kept, new, dtype=np.int64))
        if self.packs_rows:
            if bias is None:  # the padding's: a position whose mask is 0 is hidden from every query
                hidden = np.where(mask == 0, np.finfo(np.float32).min, 0.0).astype(np.float32)
                bias = np.ascontiguousarray(np.broadcast_to(hidden[:, None, None, :], (batch, 1, new, mask.shape[1])))
            binding.bind_cpu_input("attention_bias", bias)
        for name, value in zip(self.past, past, strict=True):
            binding.bind_cpu_input(name, value)
        logits = np.empty((batch, kept if self.indexed else new, self.vocab), np.float32)
        present = past if shared else [np.empty((batch, self.kv_heads, total, self.head_dim), np.float32)
                                       for _ in self.present]
        for name, out in zip(["logits", *self.present], [logits, *present], strict=True):
            binding.bind_output(name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(binding)
        return (logits if self.indexed else logits[:, new - kept:]), present

    def prefill_rows(self, rows: list[tuple[list[int], list[tuple[Any, Any]]]]) -> tuple[Any, list[list[tuple[Any, Any]]]]:
        """Several prompts, each from its cached prefix (``rows``: the tokens after the prefix, and the
        prefix's per-layer (keys, values), each (1, kv_heads, L, head_dim)), in one forward pass: the
        prefixes side by side as the past of one row, the tokens after them side by side as its new tokens,
        at their own positions, each prompt's tokens attending only to its own prefix and its own earlier
        tokens (a block-diagonal causal bias; ONNX Runtime's ``GroupQueryAttention`` takes several new
        tokens after a past only at batch 1). The weights are read once for all of them instead of once
        per prompt. Returns each prompt's last-token logits (n, vocab) and its whole cache (prefix and
        tokens: per layer (1, kv_heads, L + tokens, head_dim)). Graphs with an ``attention_bias`` input
        only (``packs_rows``)."""
        import torch

        if not self.packs_rows:
            raise ValueError("this graph computes its attention bias itself: one prompt per row")
        starts = np.cumsum([0] + [int(p[0][0].shape[2]) for _, p in rows])
        ends = np.cumsum([0] + [len(t) for t, _ in rows])
        cached, new = int(starts[-1]), int(ends[-1])
        ids = np.asarray([[t for tokens, _ in rows for t in tokens]], np.int64)
        positions = np.asarray([[int(starts[i + 1] - starts[i]) + j for i, (tokens, _) in enumerate(rows)
                                 for j in range(len(tokens))]], np.int64)
        past = [np.ascontiguousarray(np.concatenate([_array(p[n // 2][n % 2], np.float32) for _, p in rows], axis=2))
                for n in range(2 * self.layers)]
        bias = np.full((1, 1, new, cached + new), np.finfo(np.float32).min, np.float32)
        for i in range(len(rows)):
            a, b = int(ends[i]), int(ends[i + 1])
            bias[0, 0, a:b, starts[i]:starts[i + 1]] = 0.0  # its own prefix
            bias[0, 0, a:b, cached + a:cached + b][np.tril_indices(b - a)] = 0.0  # its own tokens, causally
        logits, present = self._run(ids, np.ones((1, cached + new), np.int64), positions, past, bias=bias,
                                    index=(ends[1:] - 1).astype(np.int64))
        caches = []
        for i in range(len(rows)):
            a, b = int(ends[i]), int(ends[i + 1])
            per = [torch.from_numpy(np.concatenate([p[:, :, starts[i]:starts[i + 1]], p[:, :, cached + a:cached + b]], axis=2))
                   for p in present]
            caches.append([(per[2 * n], per[2 * n + 1]) for n in range(self.layers)])
        return torch.from_numpy(logits[0]), caches

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


FUSED_GRAPH_NAME = "modelloop_fused_decoder"  # the graph name fused_graph writes (kept by quantize_graph)
SHARE_HEADROOM = 64  # positions of room a shared cache buffer gets beyond the cache copied into it


class _Buffers:
    """One cache's past/present buffers (per layer keys, values: (batch, kv_heads, room, head_dim)), held
    weakly (they live as long as the caches handed out of them), and how many positions are filled."""

    def __init__(self, arrays: list[np.ndarray], width: int):
        self.refs = [weakref.ref(a) for a in arrays]
        self.width = width

    def arrays(self) -> list[np.ndarray] | None:
        """The buffers, or None once any was released."""
        arrays = [r() for r in self.refs]
        return None if any(a is None for a in arrays) else arrays  # type: ignore[return-value]

    def holds(self, tensors: list[Any], cached: int, new: int) -> list[np.ndarray] | None:
        """The buffers when ``tensors`` are exactly their filled positions (the latest cache handed out of
        them: appending then overwrites nothing another cache shows) and they have room for ``new`` more."""
        arrays = self.arrays()
        if arrays is None or cached != self.width or len(arrays) != len(tensors):
            return None
        ok = all(a.shape[2] >= cached + new and t.data_ptr() == a.ctypes.data
                 and tuple(t.stride()) == tuple(s // a.itemsize for s in a.strides)
                 for a, t in zip(arrays, tensors, strict=True))
        return arrays if ok else None


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
