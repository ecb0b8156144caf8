"""The train stage's evaluation decodes its samples together, projects the vocabulary only where a
completion token is scored, and runs the layers the fine-tuned and the base model share once for both
perplexities: on the assistant example the answers were ~80% and the perplexities ~20% of an evaluation
that took as long as the 300 s training budget (benchmarks/RESULTS.md). Counted in forward passes and
projected positions, not seconds."""

from __future__ import annotations

import pytest

from modelloop.families.generative.backbone import load_tokenizer, model_fingerprint
from modelloop.families.generative.data import Shape
from modelloop.families.generative.metrics import perplexity
from modelloop.families.generative.model import GenerativeModel
from modelloop.families.generative.stage import evaluate_generation, input_schema

SAMPLES, NEW_TOKENS = 6, 3  # more samples than one batch's passes (NEW_TOKENS + 1): one at a time cannot fit


def _untrained(tiny_llama, tmp_path, weights=None) -> GenerativeModel:
    """The tiny Llama as a 'full' fine-tune with only ``weights`` changed (nothing to train for a count)."""
    shape = Shape("pairs", "prompt", "completion")
    settings = {"backbone": str(tiny_llama), "method": "full", "max_new_tokens": NEW_TOKENS, "choices": "off"}
    return GenerativeModel(settings).fitted(
        backbone=str(tiny_llama), root=str(tmp_path), source=str(tiny_llama),
        fingerprint=model_fingerprint(str(tiny_llama)), shape=shape, schema=input_schema(shape, "completion"),
        tokenizer=load_tokenizer(str(tiny_llama)), method="full", lora=None, weights=weights or {}, context=64,
        description={})


def _count(net, decoding: list[int], projected: list[int]) -> None:
    """Forward passes with a KV cache (prefill, decoding steps) and positions the vocabulary projects."""
    net.register_forward_pre_hook(lambda _m, _a, kw: decoding.append(1) if kw.get("use_cache") else None,
                                  with_kwargs=True)
    net.get_output_embeddings().register_forward_hook(
        lambda _m, _a, out: projected.append(out.shape[:-1].numel()))


def test_evaluation_decodes_its_samples_together_and_projects_only_scored_tokens(tiny_llama, pairs, tmp_path):
    import torch

    # fine-tuned above its (only) layer, as a LoRA fine-tune of the last layers is: the layer is shared
    model = _untrained(tiny_llama, tmp_path, {"model.norm.weight": torch.full((32,), 1.5)})
    frame = pairs.head(SAMPLES + 4)
    counts = {"tuned": ([], []), "base": ([], [])}
    _count(model.network(), *counts["tuned"])
    _count(model.base_network(), *counts["base"])
    lower: list[int] = []  # passes of the shared layer, in either network
    for net in (model.network(), model.base_network()):
        net.model.layers[0].register_forward_pre_hook(lambda *_: lower.append(1))
    records = frame.head(SAMPLES).to_dict("records")
    alone = {"tuned": model.predict(records), "base": model.predict(records, base=True)}
    separate = {"tuned": model.nll(frame), "base": model.nll(frame, base=True)}
    for decoding, projected in counts.values():
        decoding.clear()
        projected.clear()
    lower.clear()

    out = evaluate_generation(model, frame, SAMPLES)

    # the perplexities ran the shared layer once per batch of 8 rows for both models, with the same figures
    decoded = len(counts["tuned"][0]) + len(counts["base"][0])
    assert len(lower) - decoded == -(-len(frame) // 8), (len(lower), decoded)
    assert out["perplexity"] == pytest.approx(perplexity(*separate["tuned"]), rel=1e-6)
    assert out["base_perplexity"] == pytest.approx(perplexity(*separate["base"]), rel=1e-6)
    assert out["perplexity"] != pytest.approx(out["base_perplexity"], rel=1e-3)  # two models were scored

    for name, (decoding, projected) in counts.items():
        # one prefill of all samples, then one pass per token for all of them (predict: one per sample)
        assert 1 <= len(decoding) <= NEW_TOKENS + 1, (name, len(decoding))
        # perplexity: only the positions predicting a completion token, plus decoding's last positions
        assert sum(projected) <= out["tokens"] + SAMPLES * (NEW_TOKENS + 1), (name, sum(projected))
    assert [s["fine_tuned"] for s in out["samples"]] == alone["tuned"]
    assert [s["base"] for s in out["samples"]] == alone["base"]


def test_perplexity_of_the_scored_positions_is_that_of_the_whole_projection(tiny_llama, pairs, tmp_path):
    from modelloop.families.generative.data import encode_examples, examples_of
    from modelloop.families.generative.sequences import sequence_nll

    model = _untrained(tiny_llama, tmp_path)
    net, tok = model.network(), model.tokenizer
    ids, labels, _ = encode_examples(tok, examples_of(pairs.head(10), model.shape_, tok), 64)
    whole = sequence_nll(net, ids, labels, int(tok.pad_token_id), "cpu")
    assert model.nll(pairs.head(10)) == (pytest.approx(whole[0], rel=1e-5), whole[1])
