"""The fused ONNX decoder (``onnx_export.fused_graph``): a Llama-style network written node by node as ONNX
Runtime's GroupQueryAttention / RotaryEmbedding / SimplifiedLayerNormalization graph instead of traced.
On a tiny grouped-query Llama (4 query heads, 2 K/V heads) it computes what the PyTorch network computes
for a left-padded batch, through a prefill and decoding steps with the cache it returns, at each row's
own positions; it runs a handful of nodes per layer (the traced graph ~110); a network it cannot write
falls back to the traced graph with the reason; and block-wise int8 MatMuls stay close to fp32."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


def _llama(head_dim: int = 16, layers: int = 2, positions: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=4 * head_dim, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=head_dim, intermediate_size=96, max_position_embeddings=positions,
                         tie_word_embeddings=True, rope_theta=10000.0)
    return LlamaForCausalLM(config).eval()


def _left_padded_run(net, model):
    """Logits of a left-padded batch of 2 (prefill, then two decoding steps at each row's own positions)
    from the PyTorch network and from ``model`` (an OrtCausalLM)."""
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = []
    for m in (net, model):
        logits = []
        with torch.no_grad():
            step = m(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
            logits.append(step.logits[mask.bool()])  # the real tokens' rows
            cache, full, pos = step.past_key_values, mask, positions[:, -1:]
            for token in ([[13], [14]], [[15], [16]]):
                full, pos = torch.cat([full, torch.ones((2, 1), dtype=torch.long)], 1), pos + 1
                step = m(input_ids=torch.tensor(token), attention_mask=full, position_ids=pos, past_key_values=cache,
                         use_cache=True)
                cache = step.past_key_values
                logits.append(step.logits[:, -1])
        out.append(torch.cat(logits))
    return out


def test_the_fused_graph_computes_the_networks_logits_with_grouped_heads_and_left_padding(tmp_path):
    import onnx

    from modelloop.families.generative.onnx_export import OrtCausalLM, export_onnx, fused_blocker

    net = _llama()
    assert fused_blocker(net) is None
    path = export_onnx(net, tmp_path / "fused.onnx")
    graph = onnx.load(str(path))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("GroupQueryAttention") == 2 and "Expand" not in [
        n.op_type for n in graph.graph.node if "layers." in n.name]  # the grouped K/V heads are not copied
    assert len(ops) < 20 * 2 + 30  # a handful of nodes per layer (traced: ~110)
    torch_logits, ort_logits = _left_padded_run(net, OrtCausalLM(path, net.config))
    assert torch.allclose(ort_logits, torch_logits, atol=1e-4), (ort_logits - torch_logits).abs().max()


def test_a_network_the_fused_graph_cannot_write_is_traced(tmp_path):
    import onnx

    from modelloop.families.generative.onnx_export import OrtCausalLM, export_onnx, fused_blocker

    net = _llama(head_dim=8)  # GroupQueryAttention needs a multiple of 16
    assert "head_dim 8" in fused_blocker(net)
    path = export_onnx(net, tmp_path / "traced.onnx")
    assert "GroupQueryAttention" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    torch_logits, ort_logits = _left_padded_run(net, OrtCausalLM(path, net.config))
    assert torch.allclose(ort_logits, torch_logits, atol=1e-4)


def test_the_traced_and_fused_graphs_answer_alike():
    """``fused=False`` forces the traced graph (older registered graphs are traced ones: same inputs and
    outputs, so OrtCausalLM runs either)."""
    import tempfile
    from pathlib import Path

    from modelloop.families.generative.onnx_export import OrtCausalLM, export_onnx

    net = _llama()
    with tempfile.TemporaryDirectory() as tmp:
        fused = OrtCausalLM(export_onnx(net, Path(tmp) / "f.onnx"), net.config)
        traced = OrtCausalLM(export_onnx(net, Path(tmp) / "t.onnx", fused=False), net.config)
        a, b = _left_padded_run(net, fused)[1], _left_padded_run(net, traced)[1]
    assert torch.allclose(a, b, atol=1e-4)


def test_block_int8_matmuls_stay_close_to_fp32_where_one_activation_scale_does_not():
    """An input with one outlier channel (what ``down_proj`` sees): per-block scales keep the other
    channels' precision; the fp32 weight goes unless another node reads it."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from modelloop.families.generative.onnx_export import block_int8_matmuls

    rng = np.random.default_rng(0)
    k, n = 96, 40
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((4, k)).astype(np.float32)
    x[:, 3] *= 200.0  # one outlier channel
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
                              [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert block_int8_matmuls(model, {"mm"}) == 1
    assert [t.name for t in model.graph.initializer if t.name == "W"] == []
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    exact = x @ w
    scale = np.abs(x).max() / 127  # one scale per call, as dynamic int8 quantizes activations
    w_scale = np.abs(w).max(axis=0) / 127  # per output channel
    one_scale = (np.rint(x / scale) * scale) @ (np.rint(w / w_scale) * w_scale)
    block_err, one_err = np.abs(y - exact).max(), np.abs(one_scale - exact).max()
    assert block_err < 0.02 * np.abs(exact).max() and block_err < one_err / 2


def test_an_onnx_runtime_without_the_fused_operators_gets_the_traced_graph(tmp_path, monkeypatch):
    """The installed runtime runs the fused operators (probed once on a toy graph); one that does not
    (older than the fused graph's GroupQueryAttention inputs) is given the traced graph, which it runs."""
    import onnx

    from modelloop.families.generative import onnx_export

    assert onnx_export.ort_runs_fused()
    monkeypatch.setattr(onnx_export, "ort_runs_fused", lambda: False)
    net = _llama()
    assert "onnxruntime" in onnx_export.fused_blocker(net)
    path = onnx_export.export_onnx(net, tmp_path / "g.onnx")
    assert "GroupQueryAttention" not in {n.op_type for n in onnx.load(str(path)).graph.node}


def test_decoding_steps_append_to_one_shared_buffer_and_never_overwrite_a_cache_handed_out(tmp_path):
    """The fused graph's decoding steps bind one buffer as past and present (GroupQueryAttention appends
    the new token in place instead of copying the cache each step): the logits stay the traced graph's
    over more steps than the buffer's headroom (a new buffer then), consecutive steps reuse the buffer,
    and a step from an older cache (a fork) copies rather than writing over the newer cache's positions."""
    from modelloop.families.generative.onnx_export import SHARE_HEADROOM, OrtCausalLM, export_onnx

    net = _llama(positions=128)
    fused = OrtCausalLM(export_onnx(net, tmp_path / "f.onnx"), net.config)
    traced = OrtCausalLM(export_onnx(net, tmp_path / "t.onnx", fused=False), net.config)
    assert fused.shares and not traced.shares
    ids = torch.tensor([[0, 5, 6, 7], [8, 9, 10, 11]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    caches, addresses, logits = {}, [], {}
    with torch.no_grad():
        for name, m in (("fused", fused), ("traced", traced)):
            out = m(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True)
            cache, full, steps = out.past_key_values, mask, []
            for i in range(SHARE_HEADROOM + 4):
                full = torch.cat([full, torch.ones((2, 1), dtype=torch.long)], 1)
                pos = full.sum(-1, keepdim=True) - 1
                out = m(input_ids=torch.tensor([[12 + i % 50], [13 + i % 50]]), attention_mask=full, position_ids=pos,
                        past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                steps.append(out.logits[:, -1])
                if name == "fused":
                    addresses.append(cache.layers[0].keys.data_ptr())
            caches[name], logits[name] = (cache, full), torch.stack(steps)
    assert torch.allclose(logits["fused"], logits["traced"], atol=1e-4)
    assert len(set(addresses)) == 2  # the first step's buffer, then one more when its headroom ran out
    # a fork: two steps from the same cache; the second must not write over the first's new position
    cache, full = caches["fused"]
    full = torch.cat([full, torch.ones((2, 1), dtype=torch.long)], 1)
    pos = full.sum(-1, keepdim=True) - 1
    with torch.no_grad():
        a = fused(input_ids=torch.tensor([[20], [21]]), attention_mask=full, position_ids=pos, past_key_values=cache)
        kept = a.past_key_values.layers[0].keys.clone()
        fused(input_ids=torch.tensor([[30], [31]]), attention_mask=full, position_ids=pos, past_key_values=cache)
    assert torch.equal(a.past_key_values.layers[0].keys, kept)


def test_prefill_rows_computes_several_prompts_from_their_cached_prefixes_in_one_pass_as_one_by_one(tmp_path):
    """Prompts that start from cached prefixes of different lengths, side by side in one row of one pass
    (a block-diagonal causal bias): each one's last logits and whole cache are what it gets alone from its
    prefix, and what the PyTorch network computes for the whole prompt."""
    from modelloop.families.generative.generate import kv_cache
    from modelloop.families.generative.onnx_export import OrtCausalLM, export_onnx

    net = _llama()
    fused = OrtCausalLM(export_onnx(net, tmp_path / "f.onnx"), net.config)
    assert fused.packs_rows
    prompts = [[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18]]
    split = [4, 3, 5]  # cached tokens of each
    rows, alone, whole = [], [], []
    with torch.no_grad():
        for ids, n in zip(prompts, split, strict=True):
            prefix = fused(input_ids=torch.tensor([ids[:n]]), use_cache=True).past_key_values
            layers = [(layer.keys.clone(), layer.values.clone()) for layer in prefix.layers]
            rows.append((ids[n:], layers))
            alone.append(fused(input_ids=torch.tensor([ids[n:]]), past_key_values=kv_cache(layers), use_cache=True))
            whole.append(net(input_ids=torch.tensor([ids])).logits[0, -1])
        logits, caches = fused.prefill_rows(rows)
    assert logits.shape == (3, net.config.vocab_size)
    for i, ids in enumerate(prompts):
        assert torch.allclose(logits[i], alone[i].logits[0, -1], atol=1e-5)
        assert torch.allclose(logits[i], whole[i], atol=1e-4)
        for (k, v), layer in zip(caches[i], alone[i].past_key_values.layers, strict=True):
            assert k.shape == (1, 2, len(ids), 16) and torch.allclose(k, layer.keys, atol=1e-5)
            assert torch.allclose(v, layer.values, atol=1e-5)
