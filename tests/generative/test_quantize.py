"""The int8 variant's smoothing (``quantize.py``): the smoothed fp32 network computes what it computed,
the channels of the quantized layers' inputs come out flatter, and optimize's variant records it."""

from __future__ import annotations

import copy

import torch
from gen_toy import make_pairs

from modelloop.families.generative.data import Shape, encode_examples, examples_of
from modelloop.families.generative.quantize import activation_maxima, int8_dynamic, smooth
from modelloop.families.generative.sequences import batch_tensors


def _examples(tok, pairs):
    return encode_examples(tok, examples_of(pairs.head(12), Shape("pairs", "prompt", "completion"), tok), 64)[
        :2
    ]


def test_smoothing_keeps_the_fp32_function_and_flattens_the_quantized_inputs(tiny_llama, pairs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    net = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    with torch.no_grad():  # an outlier channel, as trained language models' norms have
        net.model.layers[0].input_layernorm.weight[3] = 40.0
    ids, labels = _examples(tok, pairs)
    pad = int(tok.pad_token_id)
    batch = batch_tensors([[(i, lab)] for i, lab in zip(ids, labels, strict=True)], pad)
    smoothed = copy.deepcopy(net)
    before = activation_maxima(net, ids, labels, pad)
    assert smooth(smoothed, before) == 4  # one layer: its attention, MLP, o_proj and down_proj inputs
    with torch.no_grad():
        kw = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
        torch.testing.assert_close(smoothed(**kw).logits, net(**kw).logits, atol=1e-4, rtol=1e-4)
    after = activation_maxima(smoothed, ids, labels, pad)
    spread = lambda x: float(x.max() / x.median())  # noqa: E731
    assert spread(after[0][0]) < spread(before[0][0]) / 4, (spread(before[0][0]), spread(after[0][0]))
    quantized = int8_dynamic(smoothed)
    assert isinstance(quantized.model.layers[0].self_attn.q_proj, torch.ao.nn.quantized.dynamic.Linear)


def test_the_int8_variant_is_smoothed_on_calibration_rows(trained):
    model = trained.model
    frame = make_pairs(20, seed=3)
    int8 = model.variant("int8_dynamic", calibration=frame)
    smoothing = int8.describe()["variant"]["smoothing"]
    assert smoothing["calibration_examples"] == 20 and smoothing["groups"] > 0 and smoothing["alpha"] == 0.75
    plain = model.variant("int8_dynamic")
    assert "smoothing" not in plain.describe()["variant"]
    from safetensors.torch import load

    w_smooth, w_plain = load(int8.weights_), load(plain.weights_)
    norm = next(k for k in w_plain if k.endswith("input_layernorm.weight"))
    assert not torch.equal(w_smooth[norm], w_plain[norm])  # the scales folded into the stored weights
    # the model's own network is left as it was (the variant smoothed a copy)
    assert torch.equal(dict(model.network().named_parameters())[norm], w_plain[norm])


def test_smoothing_through_grouped_value_heads_keeps_the_fp32_function():
    """``o_proj``'s input is smoothed through ``v_proj``'s output rows: with 4 query heads reading 2 K/V
    heads, each K/V channel takes one scale for the query heads that read it; the network computes what
    it computed, and o_proj's input channels come out flatter."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    net = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                       num_key_value_heads=2, head_dim=16, intermediate_size=96,
                                       max_position_embeddings=32)).eval()
    with torch.no_grad():  # outlier channels in what o_proj and down_proj read
        net.model.layers[0].self_attn.v_proj.weight[5] *= 60.0
        net.model.layers[0].mlp.up_proj.weight[7] *= 60.0
    ids = [[int(t) for t in torch.randint(3, 64, (12,))] for _ in range(3)]
    labels = [list(x) for x in ids]
    smoothed = copy.deepcopy(net)
    before = activation_maxima(net, ids, labels, 0)
    assert smooth(smoothed, before) == 4
    x = torch.tensor(ids)
    with torch.no_grad():
        torch.testing.assert_close(smoothed(input_ids=x).logits, net(input_ids=x).logits, atol=1e-4, rtol=1e-4)
    after = activation_maxima(smoothed, ids, labels, 0)
    spread = lambda x: float(x.max() / x.median())  # noqa: E731
    for pair in (2, 3):  # down_proj's and o_proj's inputs
        assert spread(after[0][pair]) < spread(before[0][pair]) / 4, (pair, spread(before[0][pair]))
