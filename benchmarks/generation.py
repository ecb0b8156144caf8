"""Generation speed: modelloop's served decoding against transformers' ``generate`` on the same model and
prompts, in the same run.

    python benchmarks/generation.py [--model bundled|PATH] [--max-tokens 32] [--prompts 8] [--threads 2]
                                    [--variant native|int8_dynamic|onnx|onnx_int8_dynamic]

modelloop: the serving ``Engine`` (``families/generative/serve.py``): KV cache, greedy, and continuous
batching (``batching.py``): concurrent requests share one forward pass per token. Peer: ``model.generate``
(transformers, KV cache, greedy) on the same fp32 weights; at 8 streams the peer gets the 8 prompts as one
left-padded batch (what a batching server would do), modelloop serves 8 threads that each send one request
through its Engine, as 8 concurrent HTTP clients would. Reports tokens/s (generated tokens / wall time),
time to the first token (TTFT; for the peer's batch-1 runs: a 1-token ``generate``), the most sequences one
modelloop step decoded, and the ratios modelloop / transformers.

``--variant int8_dynamic`` serves the network as ``modelloop optimize``'s int8 variant loads it (smoothed
on 32 assistant-example rows, then PyTorch dynamic int8 Linear layers: ``quantize.py``) against the same
fp32 peer, and prints how many of
its greedy answers equal the fp32 network's. (A fine-tuned model's ``merged`` variant decodes with the same
network the native model builds on load: its speed is the native one.)

``--variant onnx`` serves the network exported to ONNX with its KV cache and run by ONNX Runtime in the
same Engine (``onnx_export.py``, as ``modelloop optimize``'s onnx variant); ``--variant onnx_int8_dynamic``
the smoothed network's graph with ONNX Runtime's dynamic int8 MatMuls (lm_head, down_proj, o_proj fp32).
Both print the greedy agreement and the perplexity change against the fp32 PyTorch network.

The issue's goal: >= 2x transformers at batch 1, >= 4x its aggregate at 8 streams.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROMPTS = ["How do I return an item?", "怎么退货？", "Where is my order NW01234?", "运费多少？",
           "When can I reach customer service?", "有保修吗？", "Can I change my delivery address?", "多久能送到？"]


def _load(model: str) -> tuple[Any, Any]:
    from modelloop.families.generative.backbone import load_causal_lm, load_tokenizer, resolve_model

    source = resolve_model(model)
    return load_tokenizer(source), load_causal_lm(source)


def _ids(tok: Any, prompt: str) -> list[int]:
    from modelloop.families.generative.data import prompt_text

    return list(tok(prompt_text(tok, [{"role": "user", "content": prompt}]), add_special_tokens=False)["input_ids"])


class _Model:
    """The slice of GenerativeModel the Engine uses, over a plain network (no fine-tuned weights)."""

    def __init__(self, tok: Any, net: Any):
        self.tokenizer, self.net, self.context_ = tok, net, 2048

    def network(self) -> Any:
        return self.net


def _assistant_examples(tok: Any, *, calibration: bool) -> tuple[list, list]:
    """Token ids and labels of 48 assistant-example rows (perplexity), or of 32 others (int8 calibration)."""
    from modelloop.examples.assistant import generate_assistant
    from modelloop.families.generative.data import Shape, encode_examples, examples_of

    rows = generate_assistant(320)
    checked = rows.sample(n=48, random_state=0)
    rows = rows.drop(index=checked.index).sample(n=32, random_state=1) if calibration else checked
    ids, labels, _ = encode_examples(tok, examples_of(rows, Shape("pairs", "prompt", "completion"), tok), 256)
    return ids, labels


def _int8(tok: Any, net: Any) -> Any:
    """The network as ``modelloop optimize``'s int8 variant serves it: smoothed on 32 rows of the assistant
    example (its completions, not these prompts), then dynamic int8 (``quantize.py``)."""
    from modelloop.families.generative.quantize import activation_maxima, int8_dynamic, smooth

    ids, labels = _assistant_examples(tok, calibration=True)
    smooth(net, activation_maxima(net, ids, labels, int(tok.pad_token_id or 0)))
    return int8_dynamic(net)


def _onnx(tok: Any, args: Any) -> Any:
    """The network as ``modelloop optimize``'s onnx variants serve it: exported with its KV cache (the int8
    one from the smoothed network, its MatMuls quantized by ONNX Runtime), run by ONNX Runtime."""
    from modelloop.families.generative.onnx_export import OrtCausalLM, export_onnx, graph_files, quantize_graph
    from modelloop.families.generative.quantize import activation_maxima, smooth

    net = _load(args.model)[1]
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="modelloop-bench-onnx-"))
    if args.variant == "onnx_int8_dynamic":
        ids, labels = _assistant_examples(tok, calibration=True)
        smooth(net, activation_maxima(net, ids, labels, int(tok.pad_token_id or 0)))
        graph = quantize_graph(export_onnx(net, folder / "fp32.onnx"), folder / "int8.onnx")
    else:
        graph = export_onnx(net, folder / "fp32.onnx")
    size = sum(f.stat().st_size for f in graph_files(graph))
    print(f"{args.variant}: exported in {time.perf_counter() - t0:.0f} s, {size / 1e6:.0f} MB", flush=True)
    return OrtCausalLM(graph, net.config, net.generation_config, threads=args.threads)


def _perplexity(tok: Any, net: Any) -> float:
    """Perplexity of 48 assistant-example completions (other rows than the smoothing's 32)."""
    import math

    from modelloop.families.generative.sequences import sequence_nll

    ids, labels = _assistant_examples(tok, calibration=False)
    nll, n = sequence_nll(net, ids, labels, int(tok.pad_token_id or 0), "cpu")
    return math.exp(nll / n)


def ours(engine: Any, ids: list[int], max_tokens: int) -> tuple[int, float, float]:
    t0, first, n = time.perf_counter(), None, 0
    for step in engine.stream(ids, max_tokens=max_tokens, temperature=0.0, top_p=1.0, seed=None, stop=()):
        if first is None:
            first = time.perf_counter() - t0
        n += step.token is not None
    return n, first or 0.0, time.perf_counter() - t0


def peer(net: Any, tok: Any, batch: list[list[int]], max_tokens: int) -> tuple[int, float]:
    import torch

    width = max(len(x) for x in batch)
    pad = int(tok.pad_token_id or 0)
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch])
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = net.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                           pad_token_id=pad, min_new_tokens=max_tokens)
    return int((out[:, width:] != pad).sum()), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", choices=("native", "int8_dynamic", "onnx", "onnx_int8_dynamic"), default="native")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    from modelloop.families.generative.serve import Engine

    torch.set_num_threads(args.threads)
    tok, net = _load(args.model)
    prompts = [_ids(tok, p) for p in (PROMPTS * 4)[: args.prompts]]
    served = net
    agreement = change = None
    if args.variant != "native":
        from modelloop.families.generative.generate import decode_stream

        served = _int8(tok, _load(args.model)[1]) if args.variant == "int8_dynamic" else _onnx(tok, args)
        greedy = [[s.token for s in decode_stream(m, tok, ids, max_new_tokens=args.max_tokens)]
                  for m in (net, served) for ids in prompts]
        agreement = sum(a == b for a, b in zip(greedy[:len(prompts)], greedy[len(prompts):], strict=True))
        print(f"{args.variant}: {agreement} of {len(prompts)} greedy answers equal the fp32 network's")
        change = _perplexity(tok, served) / _perplexity(tok, net) - 1
        print(f"{args.variant}: perplexity of 48 assistant completions {change:+.2%} against fp32", flush=True)
    engine = Engine(_Model(tok, served))
    ours(engine, prompts[0], 4)  # warm-up
    peer(net, tok, [prompts[0]], 4)
    result: dict[str, Any] = {"model": args.model, "max_tokens": args.max_tokens, "threads": args.threads,
                              "variant": args.variant, "same_greedy_answers": agreement,
                              "perplexity_change": change}
    # batch 1: prompt by prompt, alternating ours and the peer
    o_tok = o_s = p_tok = p_s = 0.0
    o_ttft, p_ttft = [], []
    for ids in prompts:
        n, first, s = ours(engine, ids, args.max_tokens)
        o_tok, o_s, o_ttft = o_tok + n, o_s + s, [*o_ttft, first]
        n2, s2 = peer(net, tok, [ids], args.max_tokens)
        p_tok, p_s = p_tok + n2, p_s + s2
        p_ttft.append(peer(net, tok, [ids], 1)[1])
    result["batch1"] = {"modelloop_tokens_per_s": o_tok / o_s, "transformers_tokens_per_s": p_tok / p_s,
                        "modelloop_ttft_ms": 1000 * statistics.median(o_ttft),
                        "transformers_ttft_ms": 1000 * statistics.median(p_ttft)}
    # 8 concurrent streams: our Engine from 8 threads vs one padded batch of 8 in generate
    batch = prompts[:8]
    counts: list[int] = []
    firsts: list[float] = []
    t0 = time.perf_counter()
    threads = [threading.Thread(target=lambda ids=ids: (lambda r: (counts.append(r[0]), firsts.append(r[1])))(
        ours(engine, ids, args.max_tokens))) for ids in batch]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n8, s8 = peer(net, tok, batch, args.max_tokens)
    result["streams8"] = {"modelloop_tokens_per_s": sum(counts) / wall, "transformers_tokens_per_s": n8 / s8,
                          "modelloop_ttft_ms": 1000 * statistics.median(firsts),
                          "modelloop_widest_step": engine.decoder.widest}
    for key in ("batch1", "streams8"):
        r = result[key]
        r["ratio"] = r["modelloop_tokens_per_s"] / r["transformers_tokens_per_s"]
        print(f"{key:9s} modelloop {r['modelloop_tokens_per_s']:8.1f} tok/s   transformers "
              f"{r['transformers_tokens_per_s']:8.1f} tok/s   ratio {r['ratio']:.2f}x   modelloop TTFT "
              f"{r['modelloop_ttft_ms']:.0f} ms" + (f" (transformers {r['transformers_ttft_ms']:.0f} ms)"
                                                    if "transformers_ttft_ms" in r else ""))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
