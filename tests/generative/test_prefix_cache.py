"""The serving engine's prefix cache (``prefix_cache.py``): a prompt that starts with tokens an earlier
prompt computed reuses their keys and values and computes only the rest. Greedy answers are the same with
and without it, alone and under concurrency (prompts with and without a cached prefix prefilled in one
admission), on the PyTorch network and on its fused and traced ONNX graphs; the cache keeps the longest
shared run of tokens, never a prompt's last token, and stays within its bytes (least recently used out)."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from modelloop.families.generative.prefix_cache import PrefixCache  # noqa: E402
from modelloop.families.generative.serve import Engine  # noqa: E402

QUESTIONS = ["How do I return an item?", "怎么退货？", "Where is my order?", "运费多少？", "Can I cancel?"]


def _kv(ids: list[int], layers: int = 2) -> list[tuple]:
    """Per-layer (keys, values) whose every position holds its token id (1, 1, len, 2)."""
    t = torch.tensor(ids, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 1, -1, 2).contiguous()
    return [(t.clone(), t.clone()) for _ in range(layers)]


def test_lookup_returns_the_longest_shared_run_of_leading_tokens_never_the_last_token():
    cache = PrefixCache(1 << 20, min_tokens=3)
    assert cache.insert([1, 2, 3, 4, 5, 6], _kv([1, 2, 3, 4, 5, 6]))
    assert cache.insert([1, 2, 3, 9, 9], _kv([1, 2, 3, 9, 9]))
    hit = cache.lookup([1, 2, 3, 4, 5, 7, 8])
    assert hit.tokens == 5 and hit.layers[0][0][0, 0, :, 0].tolist() == [1, 2, 3, 4, 5]
    assert cache.lookup([1, 2, 3, 4, 5, 6]).tokens == 5  # the same prompt again: its last token is computed
    assert cache.lookup([1, 2, 7, 7]) is None  # 2 shared tokens < min_tokens
    assert cache.stats()["hits"] == 2 and cache.stats()["reused_tokens"] == 10


def test_insert_keeps_copies_replaces_covered_prompts_and_evicts_the_least_recently_used():
    one = 4 * 2 * 4 * 4  # bytes of a 4-token prompt: 2 layers x (keys, values) x 4 positions x 2 floats x 4 B
    cache = PrefixCache(2 * one, min_tokens=2)
    rows = _kv([0, 0, 1, 2, 3, 4])  # a left-padded batch row: only the last 4 positions are the prompt's
    assert cache.insert([1, 2, 3, 4], rows)
    rows[0][0].zero_()  # the batch's arrays change later: the cache holds copies
    assert cache.lookup([1, 2, 3, 4, 5]).layers[0][0][0, 0, :, 0].tolist() == [1, 2, 3, 4]
    assert not cache.insert([1, 2, 3], _kv([1, 2, 3]))  # a stored prompt already starts with it
    assert cache.insert([1, 2, 3, 4, 5], _kv([1, 2, 3, 4, 5]))  # covers [1, 2, 3, 4], which leaves
    assert [tokens for _, tokens in cache.entries] == [(1, 2, 3, 4, 5)]
    assert cache.insert([7, 7, 7], _kv([7, 7, 7]))
    cache.lookup([1, 2, 3, 4, 5, 6])  # now the most recently used
    assert cache.insert([8, 8, 8], _kv([8, 8, 8]))  # over 2 * one bytes: the least recently used leaves
    assert [tokens for _, tokens in cache.entries] == [(1, 2, 3, 4, 5), (8, 8, 8)] and cache.bytes <= cache.max_bytes
    assert not PrefixCache(one - 1).insert([1, 2, 3, 4, 5, 6, 7, 8], _kv([1, 2, 3, 4, 5, 6, 7, 8]))
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixCache(-1)


class _Served:
    """What the Engine reads of a model, over another network (an ONNX graph of the trained one)."""

    def __init__(self, model, net):
        self.tokenizer, self.net, self.context_ = model.tokenizer, net, model.context_

    def network(self):
        return self.net

    def choice_trie(self, ends):
        return None


def _answers(engine: Engine, prompts: list[list[int]], *, together: bool) -> list[str]:
    def one(ids: list[int]) -> str:
        return "".join(s.delta for s in engine.stream(ids, max_tokens=10, temperature=0.0, top_p=1.0, seed=None,
                                                      stop=()))
    if not together:
        return [one(ids) for ids in prompts]
    out = [""] * len(prompts)
    start = threading.Barrier(len(prompts))

    def run(i: int) -> None:
        start.wait()
        out[i] = one(prompts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _check_same_answers(served) -> None:
    """Greedy answers with the prefix cache equal those without it: one by one (each prompt after the
    first reuses the system turn's tokens), then concurrently with a cold prompt (a raw text, no
    template) among cached ones, so one admission prefills both kinds and joins them."""
    plain = Engine(served, prefix_cache_mb=0)
    cached = Engine(served)
    system = {"role": "system", "content": "You are a helpdesk. Answer in one short sentence."}
    chats = [plain.chat_ids([system, {"role": "user", "content": q}]) for q in QUESTIONS]
    assert plain.decoder.prefix_cache is None
    alone = _answers(plain, chats, together=False)
    assert _answers(cached, chats, together=False) == alone
    stats = cached.decoder.prefix_cache.stats()
    shared = min(sum(1 for a, b in zip(chats[0], c, strict=False) if a == b) for c in chats[1:])
    assert stats["hits"] == len(chats) - 1 and stats["reused_tokens"] >= shared * (len(chats) - 1)
    cached.decoder.prefix_cache.clear()
    _answers(cached, [plain.chat_ids([system, {"role": "user", "content": "Hello"}])], together=False)
    mixed = [*chats[:3], plain.text_ids("Where is my order? It is late.")]
    assert _answers(cached, mixed, together=True) == _answers(plain, mixed, together=True)
    assert cached.decoder.prefix_cache.stats()["hits"] >= len(chats) - 1 + 3


def test_greedy_answers_are_the_same_with_and_without_the_prefix_cache_pytorch(trained):
    _check_same_answers(trained.model)


@pytest.mark.parametrize("fused", [True, False])
def test_greedy_answers_are_the_same_with_and_without_the_prefix_cache_onnx(trained, tmp_path, fused):
    pytest.importorskip("onnxruntime")
    import onnx

    from modelloop.families.generative.onnx_export import OrtCausalLM, export_onnx

    net = trained.model.network()
    path = export_onnx(net, tmp_path / "graph.onnx", fused=fused)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("GroupQueryAttention" in ops) == fused
    _check_same_answers(_Served(trained.model, OrtCausalLM(path, net.config, net.generation_config)))


@pytest.mark.parametrize("runtime", ["pytorch", "traced"])
def test_prompts_with_cached_prefixes_of_different_lengths_share_one_left_padded_pass(runtime, tmp_path):
    """PyTorch and the traced graph take several new tokens after a past in a batch: prompts whose cached
    prefixes differ in length (one shorter than the longest uncached rest, so it recomputes cached tokens;
    one shorter than that rest altogether) prefill as one left-padded batch, each row's last logits and
    cache what the whole prompt gives alone."""
    from types import SimpleNamespace

    from transformers import LlamaConfig, LlamaForCausalLM

    from modelloop.families.generative.batching import _prefill_past_batch
    from modelloop.families.generative.prefix_cache import Hit

    torch.manual_seed(0)
    net = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       num_key_value_heads=1, intermediate_size=64, max_position_embeddings=64)).eval()
    if runtime == "traced":
        from modelloop.families.generative.onnx_export import OrtCausalLM, export_onnx

        net = OrtCausalLM(export_onnx(net, tmp_path / "t.onnx", fused=False), net.config)
        assert net.batched_past
    prompts = [list(range(1, 13)), [1, 2, 3, 20, 21, 22, 23, 24], [5, 6, 30]]
    cached = [9, 3, 2]  # rests of 3, 5 and 1 tokens: the first row recomputes 2 cached tokens
    with torch.no_grad():
        hits = []
        for ids, n in zip(prompts, cached, strict=True):
            prefix = net(input_ids=torch.tensor([ids[:n]]), use_cache=True).past_key_values
            hits.append(Hit(n, [(layer.keys, layer.values) for layer in prefix.layers]))
        logits, cache, mask = _prefill_past_batch(net, [SimpleNamespace(ids=ids) for ids in prompts], hits, 0,
                                                  {"logits_to_keep": 1})
        assert mask.tolist()[2] == [0] * 9 + [1] * 3 and mask.tolist()[0] == [1] * 12
        for i, ids in enumerate(prompts):
            whole = net(input_ids=torch.tensor([ids]), use_cache=True)
            assert torch.allclose(logits[i], whole.logits[0, -1], atol=1e-5)
            keys = cache.layers[1].keys[i, :, -len(ids):]
            assert torch.allclose(keys, whole.past_key_values.layers[1].keys[0], atol=1e-5)


def test_prompts_arriving_together_at_a_cold_cache_compute_their_common_prefix_once():
    """A cold server's first requests (nothing cached) that start alike: their common leading tokens are
    computed once and cached, then each computes only its rest; the logits are the whole prompts'."""
    from types import SimpleNamespace

    from transformers import LlamaConfig, LlamaForCausalLM

    from modelloop.families.generative.batching import _prefill

    torch.manual_seed(0)
    net = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       num_key_value_heads=1, intermediate_size=64, max_position_embeddings=64)).eval()
    common = list(range(1, 11))
    prompts = [[*common, 20, 21], [*common, 30], [*common, 40, 41, 42], [50, 51, 52, 53]]
    cache = PrefixCache(1 << 20, min_tokens=8)
    with torch.no_grad():
        logits, _, mask = _prefill(net, [SimpleNamespace(ids=p, salt="") for p in prompts], 0, {"logits_to_keep": 1}, cache)
        for i, ids in enumerate(prompts):
            assert torch.allclose(logits[i], net(input_ids=torch.tensor([ids])).logits[0, -1], atol=1e-5)
    stats = cache.stats()
    assert stats["hits"] == 3 and stats["reused_tokens"] == 3 * len(common)  # the unlike prompt: computed whole
    assert mask.shape == (4, 13)
