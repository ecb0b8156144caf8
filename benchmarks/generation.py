"""Generation speed: modelloop's served decoding against transformers' ``generate`` on the same model and
prompts, in the same run.

    python benchmarks/generation.py [--model bundled|PATH] [--max-tokens 32] [--prompts 8] [--threads 2]
                                    [--variant native|int8_dynamic|onnx|onnx_int8_dynamic] [--rounds 2]
                                    [--graphs DIR] [--json PATH]

modelloop: the serving ``Engine`` (``families/generative/serve.py``): KV cache, greedy, and continuous
batching (``batching.py``): concurrent requests share one forward pass per token. Peer: ``model.generate``
(transformers, KV cache, greedy) on the same fp32 weights; at 8 streams the peer gets the 8 prompts as one
left-padded batch (what a batching server would do), modelloop serves 8 threads that each send one request
through its Engine, as 8 concurrent HTTP clients would. Reports tokens/s (generated tokens / wall time),
time to the first token (TTFT; for the peer: a 1-token ``generate`` of the same batch), the most sequences
one modelloop step decoded, and the ratios modelloop / transformers. The naive peer at 8 streams (the 8
prompts as 8 sequential batch-1 ``generate`` calls) is the peer's batch-1 measurement; it is printed for
reference, the padded batch is the peer the goal is measured against.

Fairness: each side is timed in a process of its own (``--side``, started by this script), alone on the
machine as far as this script goes: nothing of the other side loaded, no threads of the other's runtime
left spinning. Both use ``--threads`` threads (PyTorch's; ONNX Runtime's intra-op pool for the onnx
variants), and both warm up (a batch-1 and a batch-of-8 generation of 4 tokens) before timing. The sides
alternate over ``--rounds`` rounds (peer first in odd rounds, ours first in even ones), each round's
ratio is printed with the load average, and the summary is the median of the rounds' ratios.

``--variant int8_dynamic`` serves the network as ``modelloop optimize``'s int8 variant loads it (smoothed
on 32 assistant-example rows, then PyTorch dynamic int8 Linear layers: ``quantize.py``) against the same
fp32 peer, and prints how many of
its greedy answers equal the fp32 network's. (A fine-tuned model's ``merged`` variant decodes with the same
network the native model builds on load: its speed is the native one.)

``--variant onnx`` serves the network exported to ONNX with its KV cache and run by ONNX Runtime in the
same Engine (``onnx_export.py``, as ``modelloop optimize``'s onnx variant); ``--variant onnx_int8_dynamic``
the smoothed network's graph with ONNX Runtime's dynamic int8 MatMuls (lm_head, down_proj, o_proj fp32).
Both print the greedy agreement and the perplexity change against the fp32 PyTorch network. ``--graphs
DIR`` keeps the exported graph in DIR and reuses it when it is there (exporting takes 1-4 minutes).

Prefix cache: ours serves with the Engine's prefix cache (``prefix_cache.py``, on by default when
serving): a prompt that starts with tokens an earlier request computed reuses their keys and values. The
8 prompts share the chat template's default system turn (24 of their 37-41 tokens). transformers'
``generate`` has no such cache: it computes every prompt whole. So that ours gains only what a running
server gains, its cache is emptied before each timed phase (batch 1, 8 streams) and holds then only the
prompt of one earlier request that is none of the timed ones ("Hello", through the same template): the
template's tokens are cached, no timed prompt is. Ours is also timed with the cache off (``Engine(...,
prefix_cache_mb=0)``, the same process and network, before the cached run): both figures and both ratios
are printed and written; the goal's ratio is the cached one. The quality check also counts how many of
the served network's greedy answers (through the Engine, one request at a time) are the same with and
without the cache.

The issue's goal: >= 2x transformers at batch 1, >= 4x its aggregate at 8 streams.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PRIMER = "Hello"  # the one earlier request whose prompt the prefix cache holds when a timed phase starts
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

    def choice_trie(self, ends: set[int]) -> None:
        return None  # a base model answers freely (no label choices)


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


def _graph(tok: Any, args: Any) -> Path:
    """The network as ``modelloop optimize``'s onnx variants serve it: exported with its KV cache (the int8
    one from the smoothed network, its MatMuls quantized by ONNX Runtime); in ``--graphs`` when given (and
    taken from there when it already holds it)."""
    from modelloop.families.generative.onnx_export import export_onnx, graph_files, quantize_graph
    from modelloop.families.generative.quantize import activation_maxima, smooth

    folder = Path(args.graphs) if args.graphs else Path(tempfile.mkdtemp(prefix="modelloop-bench-onnx-"))
    graph = folder / f"{args.variant}.onnx"
    if graph.is_file():
        print(f"{args.variant}: graph reused from {graph}", flush=True)
        return graph
    net = _load(args.model)[1]
    t0 = time.perf_counter()
    if args.variant == "onnx_int8_dynamic":
        ids, labels = _assistant_examples(tok, calibration=True)
        smooth(net, activation_maxima(net, ids, labels, int(tok.pad_token_id or 0)))
        quantize_graph(export_onnx(net, folder / "smoothed.onnx"), graph)
    else:
        export_onnx(net, graph)
    size = sum(f.stat().st_size for f in graph_files(graph))
    print(f"{args.variant}: exported in {time.perf_counter() - t0:.0f} s, {size / 1e6:.0f} MB", flush=True)
    return graph


def _served(tok: Any, net: Any, args: Any, graph: Path | None) -> Any:
    """The network modelloop serves for ``--variant`` (``net``: the fp32 one)."""
    if args.variant == "int8_dynamic":
        return _int8(tok, net)
    if graph is not None:
        from modelloop.families.generative.onnx_export import OrtCausalLM

        return OrtCausalLM(graph, net.config, net.generation_config, threads=args.threads)
    return net


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


def _measure_ours(tok: Any, net: Any, prompts: list[list[int]], max_tokens: int) -> dict[str, Any]:
    """modelloop's figures: the prompts one after another (batch 1), then as 8 concurrent requests; first
    with the prefix cache off (``nocache_*``), then on (the cache emptied and primed with one other prompt
    before each phase: see the module docstring)."""
    from modelloop.families.generative.serve import PREFIX_CACHE_MB, Engine

    primer = _ids(tok, PRIMER)
    figures: dict[str, Any] = {}
    for prefix, megabytes in (("nocache_", 0), ("", PREFIX_CACHE_MB)):
        engine = Engine(_Model(tok, net), prefix_cache_mb=megabytes)
        ours(engine, prompts[0], 4)  # warm-up: alone, then 8 at once
        _concurrently(engine, prompts[:8], 4)
        _fresh(engine, primer)
        runs = [ours(engine, ids, max_tokens) for ids in prompts]
        _fresh(engine, primer)
        engine.decoder.widest = 0
        t0 = time.perf_counter()
        runs8 = _concurrently(engine, prompts[:8], max_tokens)
        wall = time.perf_counter() - t0
        figures.update({f"{prefix}batch1_tokens_per_s": sum(r[0] for r in runs) / sum(r[2] for r in runs),
                        f"{prefix}batch1_ttft_ms": 1000 * statistics.median(r[1] for r in runs),
                        f"{prefix}streams8_tokens_per_s": sum(r[0] for r in runs8) / wall,
                        f"{prefix}streams8_ttft_ms": 1000 * statistics.median(r[1] for r in runs8),
                        f"{prefix}widest_step": engine.decoder.widest})
        if engine.decoder.prefix_cache is not None:
            figures["prefix_cache"] = engine.decoder.prefix_cache.stats()
        engine.decoder.close()
    return figures


def _fresh(engine: Any, primer: list[int]) -> None:
    """Before a timed phase: the prefix cache emptied, then one earlier request (``PRIMER``) served."""
    if engine.decoder.prefix_cache is not None:
        engine.decoder.prefix_cache.clear()
    ours(engine, primer, 1)


def _concurrently(engine: Any, prompts: list[list[int]], max_tokens: int) -> list[tuple[int, float, float]]:
    """Each prompt from a thread of its own, as concurrent HTTP clients send them."""
    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(lambda ids: ours(engine, ids, max_tokens), prompts))


def _measure_peer(tok: Any, net: Any, prompts: list[list[int]], max_tokens: int) -> dict[str, Any]:
    """transformers' figures: each prompt alone (batch 1), then the 8 as one left-padded batch."""
    peer(net, tok, [prompts[0]], 4)  # warm-up: alone, then 8 at once
    peer(net, tok, prompts[:8], 4)
    runs = [peer(net, tok, [ids], max_tokens) for ids in prompts]
    firsts = [peer(net, tok, [ids], 1)[1] for ids in prompts]
    n8, s8 = peer(net, tok, prompts[:8], max_tokens)
    return {"batch1_tokens_per_s": sum(r[0] for r in runs) / sum(r[1] for r in runs),
            "batch1_ttft_ms": 1000 * statistics.median(firsts),
            "streams8_tokens_per_s": n8 / s8, "streams8_ttft_ms": 1000 * peer(net, tok, prompts[:8], 1)[1],
            "naive_streams8_tokens_per_s": sum(r[0] for r in runs) / sum(r[1] for r in runs)}


def _side(args: Any) -> None:
    """One side's timing, in this process alone (``--side``): its figures as JSON to ``--out``."""
    import torch

    torch.set_num_threads(args.threads)
    tok, net = _load(args.model)
    prompts = [_ids(tok, p) for p in (PROMPTS * 4)[: args.prompts]]
    if args.side == "peer":
        figures = _measure_peer(tok, net, prompts, args.max_tokens)
    else:
        graph = Path(args.graph) if args.graph else None
        figures = _measure_ours(tok, _served(tok, net, args, graph), prompts, args.max_tokens)
    figures["load_after"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(figures))
    # the figures are written: leave without the interpreter's teardown, during which the Engine's idle
    # decoding thread (a daemon) sometimes took the process down ("terminate called without an active
    # exception", 1 of 6 timing processes on 2026-12-06), failing the whole run
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_side(side: str, args: Any, graph: Path | None) -> dict[str, Any]:
    """``_side`` in a fresh Python process; its figures, with the load average before it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, __file__, "--side", side, "--out", str(out), "--model", args.model,
                   "--max-tokens", str(args.max_tokens), "--prompts", str(args.prompts),
                   "--threads", str(args.threads), "--variant", args.variant]
        load = os.getloadavg()[0]
        done = subprocess.run(command + (["--graph", str(graph)] if graph else []),
                              stderr=None if args.verbose else subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {side} timing process failed:\n{(done.stderr or '')[-3000:]}")
        return {**json.loads(out.read_text()), "load_before": load}


def _quality(tok: Any, net: Any, served: Any, prompts: list[list[int]], args: Any) -> tuple[int, float]:
    """How many greedy answers equal the fp32 network's, and the perplexity change against it."""
    from modelloop.families.generative.generate import decode_stream

    greedy = [[s.token for s in decode_stream(m, tok, ids, max_new_tokens=args.max_tokens)]
              for m in (net, served) for ids in prompts]
    agreement = sum(a == b for a, b in zip(greedy[:len(prompts)], greedy[len(prompts):], strict=True))
    print(f"{args.variant}: {agreement} of {len(prompts)} greedy answers equal the fp32 network's")
    change = _perplexity(tok, served) / _perplexity(tok, net) - 1
    print(f"{args.variant}: perplexity of 48 assistant completions {change:+.2%} against fp32", flush=True)
    return agreement, change


def _cache_agreement(tok: Any, served: Any, prompts: list[list[int]], args: Any) -> int:
    """How many greedy answers of the served network, through the Engine one request at a time, are the
    same with the prefix cache (primed as in the timing) and without it."""
    from modelloop.families.generative.serve import PREFIX_CACHE_MB, Engine

    answers = []
    for megabytes in (0, PREFIX_CACHE_MB):
        engine = Engine(_Model(tok, served), prefix_cache_mb=megabytes)
        _fresh(engine, _ids(tok, PRIMER))
        answers.append([[s.token for s in engine.stream(ids, max_tokens=args.max_tokens, temperature=0.0, top_p=1.0,
                                                        seed=None, stop=())] for ids in prompts])
        engine.decoder.close()
    same = sum(a == b for a, b in zip(*answers, strict=True))
    print(f"{args.variant}: {same} of {len(prompts)} served greedy answers the same with and without the prefix "
          "cache", flush=True)
    return same


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", choices=("native", "int8_dynamic", "onnx", "onnx_int8_dynamic"), default="native")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--graphs", type=Path, help="keep (and reuse) the exported ONNX graph in this folder")
    ap.add_argument("--skip-quality", action="store_true", help="time only (no greedy agreement, perplexity)")
    ap.add_argument("--verbose", action="store_true", help="show the timing processes' stderr")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--side", choices=("peer", "ours"), help=argparse.SUPPRESS)
    ap.add_argument("--graph", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prompts < 8:
        ap.error(f"--prompts: must be at least 8 (the 8 concurrent streams), got {args.prompts}")
    if args.side:
        _side(args)
        return
    import torch

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"model": args.model, "max_tokens": args.max_tokens, "threads": args.threads,
                              "variant": args.variant, "same_greedy_answers": None, "perplexity_change": None,
                              "same_answers_with_prefix_cache": None}
    graph = None
    if args.variant != "native" or not args.skip_quality:
        tok, net = _load(args.model)
        graph = _graph(tok, args) if args.variant.startswith("onnx") else None
        if not args.skip_quality:
            prompts = [_ids(tok, p) for p in (PROMPTS * 4)[: args.prompts]]
            served = _served(tok, _load(args.model)[1], args, graph) if args.variant != "native" else net
            if args.variant != "native":
                result["same_greedy_answers"], result["perplexity_change"] = _quality(tok, net, served, prompts,
                                                                                      args)
            result["same_answers_with_prefix_cache"] = _cache_agreement(tok, served, prompts, args)
            del served
        del tok, net  # nothing of either side stays loaded here while they are timed
    rounds = []
    for r in range(args.rounds):
        order = ("peer", "ours") if r % 2 == 0 else ("ours", "peer")
        figures = {side: _run_side(side, args, graph) for side in order}
        rounds.append(figures)
        _print_round(r + 1, figures["ours"], figures["peer"])
    result["rounds"] = rounds
    for prefix in ("", "nocache_"):
        for key in ("batch1", "streams8"):
            ratios = [f["ours"][f"{prefix}{key}_tokens_per_s"] / f["peer"][f"{key}_tokens_per_s"] for f in rounds]
            result[f"{prefix}{key}_ratio_median"] = statistics.median(ratios)
    goal = {"batch1": 2.0, "streams8": 4.0}
    print("median of the rounds' ratios: " + ", ".join(
        f"{k} {result[f'{k}_ratio_median']:.2f}x (goal {goal[k]:.0f}x)" for k in goal)
        + "; prefix cache off: " + ", ".join(f"{k} {result[f'nocache_{k}_ratio_median']:.2f}x" for k in goal))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _print_round(n: int, o: dict[str, Any], p: dict[str, Any]) -> None:
    loads = f"load {p['load_before']:.1f}/{p['load_after']:.1f} (peer) {o['load_before']:.1f}/{o['load_after']:.1f} (ours)"
    print(f"round {n}: {loads}")
    for key in ("batch1", "streams8"):
        for prefix, name in (("", "modelloop"), ("nocache_", "  no cache")):
            ratio = o[f"{prefix}{key}_tokens_per_s"] / p[f"{key}_tokens_per_s"]
            print(f"  {key:9s} {name} {o[f'{prefix}{key}_tokens_per_s']:7.1f} tok/s   transformers "
                  f"{p[f'{key}_tokens_per_s']:7.1f} tok/s   ratio {ratio:5.2f}x   TTFT {name.strip()} "
                  f"{o[f'{prefix}{key}_ttft_ms']:.0f} ms, transformers {p[f'{key}_ttft_ms']:.0f} ms", flush=True)
    print(f"  (naive peer, 8 sequential batch-1 generate calls: {p['naive_streams8_tokens_per_s']:.1f} tok/s; "
          f"ours at 8 streams decoded up to {o['widest_step']} sequences per step; prefix cache "
          f"{o.get('prefix_cache')})", flush=True)


if __name__ == "__main__":
    main()
