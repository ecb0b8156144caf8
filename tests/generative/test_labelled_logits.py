"""Fine-tuning projects the vocabulary only where a completion token is predicted (``logits_to_keep``):
the same loss and the same LoRA gradients as the full projection, on packed sequences."""

from __future__ import annotations

import pytest


def test_labelled_only_loss_and_gradients_equal_the_full_projection(tiny_llama, pairs):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelloop.families.generative.data import Shape, encode_examples, examples_of, pack
    from modelloop.families.generative.sequences import _keeps_logits, batch_tensors, loss_sums, sequence_logps

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    torch.manual_seed(0)
    net = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama),
                         LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                    init_lora_weights=False))  # non-zero adapters: their gradients are compared
    assert _keeps_logits(net)
    ids, labels, _ = encode_examples(tok, examples_of(pairs.head(8), Shape("pairs", "prompt", "completion"), tok), 64)
    batch = batch_tensors(pack(ids, labels, 90, packing=True), tok.pad_token_id)
    grads = []
    for labelled_only in (False, True):
        net.zero_grad()
        loss, n = loss_sums(net, batch, labelled_only=labelled_only)
        loss.backward()
        grads.append((float(loss.detach()), n, {k: p.grad.clone() for k, p in net.named_parameters() if p.requires_grad}))
    (full, n_full, g_full), (kept, n_kept, g_kept) = grads
    assert n_full == n_kept > 0 and kept == pytest.approx(full, rel=1e-5)
    assert g_full.keys() == g_kept.keys() and g_full
    for k in g_full:
        torch.testing.assert_close(g_kept[k], g_full[k], rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # per sequence too (what DPO and the validation loss read)
        torch.testing.assert_close(sequence_logps(net, batch, labelled_only=True), sequence_logps(net, batch),
                                   rtol=1e-5, atol=1e-5)
