"""The ``onnx`` and ``onnx_int8_dynamic`` variants: the merged network exported to ONNX with its KV cache
as inputs and outputs and run by ONNX Runtime inside the same decoding loops. On the tiny Llama the ONNX
graph answers as the PyTorch network does (greedy decoding, a left-padded batch of concurrent requests,
perplexity), survives the registry's pickling, and int8 quantizes the MatMuls except the layers kept fp32.
The graph is a file (the tied embedding stored once), not pickled bytes: a registered variant's pickle is
small, its graph sits beside the registered models, and a fresh process loads it from there and answers."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_variant(trained):
    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.families.generative.variants import generative_variant_maker

    drow, df, _ = load_dataset(trained.ws)
    train = df[ensure_split(trained.ws, drow, df) == "train"].reset_index(drop=True)
    make = generative_variant_maker(trained.model, train, target="completion", seed=0)
    return make("onnx"), train


def test_the_onnx_graph_answers_and_scores_as_the_network(onnx_variant, trained):
    from modelloop.families.generative.onnx_export import OrtCausalLM
    from modelloop.families.generative.variants import ONNX_PERPLEXITY_TOLERANCE

    pred, train = onnx_variant
    model = pred.model
    assert isinstance(model.network(), OrtCausalLM) and model.describe()["variant"]["name"] == "onnx"
    checks = model.describe()["variant"]["checks"]
    assert checks["same_greedy_answers"] == checks["prompts"] == 16
    assert abs(checks["perplexity_change"]) <= ONNX_PERPLEXITY_TOLERANCE
    prompts = train.head(6).drop(columns=["completion"])
    again = pickle.loads(pickle.dumps(model))  # as the registry stores it: the graph, no PyTorch weights
    assert again.predict(prompts) == trained.model.predict(prompts)
    assert list(pred.fn(prompts)) == trained.model.predict(prompts)


def test_concurrent_requests_share_onnx_decoding_steps_as_they_do_pytorch_ones(onnx_variant, trained):
    from modelloop.families.generative.serve import Engine

    questions = ["How do I return an item?", "怎么退货？", "Hello! Can I cancel?", "运费多少？"]

    def answers(model):
        engine = Engine(model, max_batch=4)
        ids = [engine.chat_ids([{"role": "user", "content": q}]) for q in questions]
        out = [""] * len(ids)

        def run(i):
            out[i] = "".join(
                s.delta
                for s in engine.stream(ids[i], max_tokens=10, temperature=0.0, top_p=1.0, seed=None, stop=())
            )

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ids))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    assert answers(onnx_variant[0].model) == answers(trained.model)


def test_int8_quantizes_every_matmul_the_outlier_layers_block_wise(trained, tmp_path):
    """q/k/v, o, gate/up get per-channel dynamic int8; lm_head and down_proj (their inputs' outliers cost
    the most under one activation scale) get block-wise 8-bit weights (``MatMulNBits``); no fp32 weight
    MatMul is left, and the tied embedding's lookup still reads its fp32 weight."""
    import onnx

    from modelloop.families.generative.onnx_export import BLOCK, BLOCK_LINEAR, export_onnx, quantize_graph

    graph = onnx.load(str(quantize_graph(export_onnx(trained.model.network(), tmp_path / "fp32.onnx"),
                                         tmp_path / "int8.onnx")))
    inits = {t.name for t in graph.graph.initializer}
    fp32 = [n.name for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    dynamic = [n for n in graph.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    blocks = [n for n in graph.graph.node if n.op_type == "MatMulNBits"]
    assert not fp32 and dynamic and blocks
    assert not any(any(p in n.name for p in BLOCK_LINEAR) for n in dynamic)
    assert any("o_proj" in n.name for n in dynamic)
    assert {p for n in blocks for p in BLOCK_LINEAR if p in n.name} == set(BLOCK_LINEAR)
    for n in blocks:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["bits"] == 8 and attrs["block_size"] == BLOCK
    lookup = next(n for n in graph.graph.node if n.op_type == "Gather" and n.input[1] == "input_ids")
    assert lookup.input[0] in inits  # the embedding's fp32 weight stays for the lookup


def test_the_tied_embedding_is_stored_once(trained, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from modelloop.families.generative.onnx_export import export_onnx

    net = trained.model.network()
    graph = onnx.load(str(export_onnx(net, tmp_path / "g.onnx")))
    embedding = net.get_input_embeddings().weight.detach().numpy()
    weights_only = [t for t in graph.graph.initializer if not t.name.startswith("rotary.")]  # cos/sin tables
    shapes = [tuple(t.dims) for t in weights_only]
    assert embedding.T.shape in shapes and embedding.shape not in shapes  # only lm_head's (hidden, vocab) copy
    stored = sum(numpy_helper.to_array(t).nbytes for t in weights_only)
    weights = sum(p.numel() * 4 for p in net.parameters())  # tied: the embedding counted once
    assert stored <= weights * 1.01 and np.array_equal(
        next(numpy_helper.to_array(t) for t in graph.graph.initializer if tuple(t.dims) == embedding.T.shape),
        embedding.T)


def test_a_registered_onnx_variant_is_a_file_a_fresh_process_loads_and_serves(tiny_llama, pairs, tmp_path):
    """``modelloop optimize``'s registration of the onnx variant (``_register``), on a project of its own;
    then a new Python process loads the version from the registry and answers as the model does here."""
    import json
    import subprocess
    import sys

    import yaml
    from gen_toy import gen_config

    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.families.generative.onnx_export import graph_files
    from modelloop.families.generative.variants import generative_variant_maker
    from modelloop.optimization.optimize import VariantResult, _register
    from modelloop.project import Project
    from modelloop.registry import load_model, resolve_model

    root, scratch = tmp_path / "p", tmp_path / "scratch"
    root.mkdir()
    pairs.to_json(root / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(root, tiny_llama, epochs=2, eval_samples=1, max_new_tokens=6)
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    project = Project.load(str(root / "modelloop.yaml"))
    project.ingest()
    project.train()
    ws = project.workspace
    parent = resolve_model(ws)
    model = load_model(ws, parent)
    drow, df, _ = load_dataset(ws)
    train = df[ensure_split(ws, drow, df) == "train"].reset_index(drop=True)
    pred = generative_variant_maker(model, train, target="completion", seed=0, scratch=scratch)("onnx")
    version = _register(ws, parent, pred, VariantResult("onnx", size_bytes=pred.size), [], drow)
    row = ws.catalog.get_model("helpdesk", version)
    graph = Path(row["formats"]["graph"])
    assert graph.parent == ws.models_dir and graph.is_file()
    graph_bytes = sum(f.stat().st_size for f in graph_files(graph))
    loaded = load_model(ws, row)
    assert loaded.onnx_file_ == str(graph) and not getattr(loaded, "onnx_", None)
    pickled = len(pickle.dumps(loaded))
    assert pickled < graph_bytes / 5  # the registry's pickle holds no graph (the tokenizer files, settings)
    assert abs(pred.size - (graph_bytes + pickled)) < 1000  # the variant's size: the graph once, plus that
    import shutil

    shutil.rmtree(scratch)  # optimize's scratch folder is gone after it
    prompts = [{"prompt": q} for q in ("Where is my order?", "怎么退货？")]
    script = (
        "import json\n"
        "from modelloop.project import Project\n"
        "from modelloop.registry import load_model\n"
        "from modelloop.families.generative.onnx_export import OrtCausalLM\n"
        f"ws = Project.load({str(root / 'modelloop.yaml')!r}).workspace\n"
        f"m = load_model(ws, ws.catalog.get_model('helpdesk', {version}))\n"
        "assert isinstance(m.network(), OrtCausalLM)\n"
        f"print(json.dumps(m.predict({prompts!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == model.predict(prompts)


def test_the_prefill_computes_only_the_last_positions_logits(onnx_variant, trained):
    """The decoding loops ask the graph for the last position's logits only (``logits_to_keep=1``, the
    graph's ``logits_index``): the same row as the full logits, the vocabulary projection run once, and
    the cache it returns carries on to the next step as the full pass's does."""
    import torch

    from modelloop.families.generative.generate import last_logits

    net = onnx_variant[0].model.network()
    assert net.indexed and last_logits(net) == {"logits_to_keep": 1}
    ids = torch.tensor([trained.model.prompt_ids({"prompt": "Where is my order?"})])
    full = net(input_ids=ids, use_cache=True)
    last = net(input_ids=ids, use_cache=True, logits_to_keep=1)
    assert full.logits.shape[1] == ids.shape[1] and last.logits.shape[1] == 1
    assert torch.allclose(last.logits[0, -1], full.logits[0, -1], atol=1e-5)
    token = torch.tensor([[int(last.logits[0, -1].argmax())]])
    steps = [net(input_ids=token, past_key_values=out.past_key_values, use_cache=True).logits for out in (full, last)]
    assert torch.equal(steps[0], steps[1])
    pytorch = trained.model.network()(input_ids=torch.cat([ids, token], 1)).logits[0, -1]
    assert torch.allclose(steps[1][0, -1], pytorch, atol=1e-4)
