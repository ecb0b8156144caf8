"""``model.lora_layers``: the frozen lower layers' output is kept per training sequence and later steps
run only the adapted layers on it (``layer_cache.FrozenLayers``): the same loss and LoRA gradients as the
whole network, a run that uses it learns, and a data-parallel or fully adapted network does not use it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def three_layers(tmp_path_factory):
    from gen_toy import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-3"), layers=3)


def _lora(folder, layers):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(folder), LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
        layers_to_transform=layers, init_lora_weights=False))


def test_kept_states_give_the_whole_networks_loss_and_gradients(three_layers, pairs):
    import torch
    from transformers import AutoTokenizer

    from modelloop.families.generative.data import Shape, encode_examples, examples_of, pack
    from modelloop.families.generative.layer_cache import FrozenLayers
    from modelloop.families.generative.sequences import batch_tensors, loss_sums

    tok = AutoTokenizer.from_pretrained(three_layers)
    net = _lora(three_layers, [2]).train()
    ids, labels, _ = encode_examples(tok, examples_of(pairs.head(10), Shape("pairs", "prompt", "completion"), tok), 64)
    seqs = pack(ids, labels, 90, packing=True)
    cache = FrozenLayers.of(net, 1)
    assert cache is not None and cache.first == 2
    results = []
    for way in ("whole", "first read", "kept", "kept, another batch"):
        part = seqs[1:3] if way == "kept, another batch" else seqs[:3]
        batch = batch_tensors(part, tok.pad_token_id)
        net.zero_grad()
        loss, n = loss_sums(net, batch, labelled_only=True) if way == "whole" else cache.loss_sums(net, part, batch)
        loss.backward()
        results.append((float(loss.detach()), n, {k: p.grad.clone() for k, p in net.named_parameters()
                                                  if p.requires_grad}))
    assert len(cache.kept) == 3 and cache.bytes > 0
    for loss, n, grads in results[1:3]:
        assert n == results[0][1] and loss == pytest.approx(results[0][0], rel=1e-5)
        for k, g in grads.items():
            torch.testing.assert_close(g, results[0][2][k], rtol=1e-4, atol=1e-6)
    net.zero_grad()
    batch = batch_tensors(seqs[1:3], tok.pad_token_id)
    whole, _ = loss_sums(net, batch, labelled_only=True)
    assert results[3][0] == pytest.approx(float(whole.detach()), rel=1e-5)  # other padding, same figure


def test_not_used_where_the_lower_layers_learn_or_ddp_wraps(three_layers):
    from modelloop.families.generative.layer_cache import FrozenLayers

    assert FrozenLayers.of(_lora(three_layers, [0, 1, 2]), 3) is None  # every layer adapted
    assert FrozenLayers.of(_lora(three_layers, [1, 2]), None) is None  # lora_layers unset
    assert FrozenLayers.of(_lora(three_layers, [0, 2]), 1) is None  # an adapter below the last layer


def test_a_lora_layers_run_learns_through_the_kept_states(three_layers, pairs):
    from transformers import AutoTokenizer

    from modelloop.families.generative.config import GenerativeModelConfig
    from modelloop.families.generative.data import Shape, encode_examples, examples_of
    from modelloop.families.generative.fit import GenJob, SftObjective, params_of, run_params

    tok = AutoTokenizer.from_pretrained(three_layers)
    ids, labels, _ = encode_examples(tok, examples_of(pairs, Shape("pairs", "prompt", "completion"), tok), 64)
    settings = GenerativeModelConfig(backbone=str(three_layers), epochs=4, lora_layers=1, lora_r=8, lora_alpha=32,
                                     learning_rate=5e-2, batch_size=4, max_length=128, lora_dropout=0.0,
                                     lora_target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"])
    job = GenJob(settings, str(three_layers), "fp", int(tok.pad_token_id), ids[:48], labels[:48], ids[48:],
                 labels[48:], 0, "cpu")
    result = run_params(job, params_of(settings))
    history = result["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] and result["epochs_run"] >= 3
    objective = SftObjective(job)
    from modelloop.families.generative.fit import network_for

    net = network_for(job, params_of(settings))
    objective.step_loss(net, objective.items[:2])
    assert objective.frozen is not None and len(objective.frozen.kept) == 2
    import dataclasses

    checkpointed = SftObjective(dataclasses.replace(
        job, settings=settings.model_copy(update={"gradient_checkpointing": True})))
    assert not checkpointed.warms_up(net)  # a checkpointed layer re-runs on inputs that need a gradient


@pytest.mark.parametrize("lora_layers", [1, None])
def test_the_schedule_is_first_planned_after_the_epoch_that_fills_the_cache(three_layers, pairs, monkeypatch,
                                                                            lora_layers):
    """The first epoch runs the frozen layers (slower): a deadline's plan is made from the later steps' pace."""
    import time

    from transformers import AutoTokenizer

    from modelloop.families.generative import fit
    from modelloop.families.generative.config import GenerativeModelConfig
    from modelloop.families.generative.data import Shape, encode_examples, examples_of

    tok = AutoTokenizer.from_pretrained(three_layers)
    ids, labels, _ = encode_examples(tok, examples_of(pairs, Shape("pairs", "prompt", "completion"), tok), 64)
    settings = GenerativeModelConfig(backbone=str(three_layers), epochs=3, lora_layers=lora_layers, batch_size=4,
                                     max_length=128, learning_rate=1e-2)
    job = fit.GenJob(settings, str(three_layers), "fp", int(tok.pad_token_id), ids[:40], labels[:40], ids[40:],
                     labels[40:], 0, "cpu")
    planned_at: list[int] = []
    replan = fit._replan
    monkeypatch.setattr(fit, "_replan", lambda plan, step, clock, deadline: (planned_at.append(step),
                                                                          replan(plan, step, clock, deadline)))
    result = fit.run_params(job, fit.params_of(settings), deadline=time.monotonic() + 600)
    per_epoch = result["steps_configured"] // 3
    assert result["epochs_run"] == 3 and planned_at
    assert (min(planned_at) > per_epoch) == (lora_layers is not None)
