"""The ``onnx`` and ``onnx_int8_dynamic`` variants: the merged network exported to ONNX with its KV cache
as inputs and outputs and run by ONNX Runtime inside the same decoding loops. On the tiny Llama the ONNX
graph answers as the PyTorch network does (greedy decoding, a left-padded batch of concurrent requests,
perplexity), survives the registry's pickling, and int8 quantizes the MatMuls except the layers kept fp32."""

from __future__ import annotations

import pickle
import threading

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


def test_int8_quantizes_the_matmuls_except_the_layers_kept_fp32(trained):
    import onnx

    from modelloop.families.generative.onnx_export import export_onnx, quantize_graph
    from modelloop.families.generative.quantize import FP32_LINEAR

    graph = onnx.load_from_string(quantize_graph(export_onnx(trained.model.network())))
    kept = [
        n.name for n in graph.graph.node if n.op_type == "MatMul" and any(p in n.name for p in FP32_LINEAR)
    ]
    int8 = [n for n in graph.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert kept and int8  # lm_head, down_proj, o_proj stay fp32; q/k/v, gate, up are int8
    assert not any(any(p in n.name for p in FP32_LINEAR) for n in int8)
