"""The generative family's whole loop on the command line, once: ``modelloop init --example assistant``,
``modelloop run`` (LoRA, the tiny Llama in place of the bundled model), the OpenAI-compatible server with
ratings and corrections through ``/v1/feedback``, then ``modelloop retrain``: accepted and corrected answers
are learned, refused ones are not, and the gate compares chrF on the recent slice and perplexity on the
frozen holdout. The registered LoRA version keeps adapters only; merged, it answers as the adapted network.
"""

from __future__ import annotations

import json

import httpx
import pytest
import torch
import yaml
from clirun import cli
from servers import running

openai = pytest.importorskip("openai")

QUESTIONS = ["运费多少？", "Can I cancel my order?", "Where is my order NW10001?", "怎么退货？", "What are your hours?"]
CORRECTIONS = {"运费多少？": "满199元包邮。", "怎么退货？": "7天内可以退货。"}


def test_the_assistant_example_runs_the_whole_loop_on_the_command_line(tmp_path, capsys, tiny_llama):
    from modelloop.data.ingest import load_dataset
    from modelloop.project import Project
    from modelloop.registry import load_model
    from modelloop.serving import ServeConfig, create_app

    assert cli(["init", "helpdesk", "--example", "assistant"], capsys, tmp_path)[0] == 0
    root = tmp_path / "helpdesk"
    cfg = yaml.safe_load((root / "modelloop.yaml").read_text())
    cfg["model"].update(backbone=str(tiny_llama), max_length=96, eval_samples=2, max_new_tokens=8)
    (root / "modelloop.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))

    # run: fine-tune, compare with the base model, register
    code, out, err = cli(["run", "--json"], capsys, root)
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["family"] == "generative" and summary["production"] is True
    g = summary["generation"]
    assert g["shape"] == "pairs" and g["method"] == "lora" and g["tokens_per_s"] > 0
    assert 0.3 < g["profile"]["language_mix"]["cjk"] < 0.7
    assert summary["quality"]["gate"]["passed"]

    # the registered LoRA version holds the adapters only; merged into the base it answers as adapted
    ws = Project.load(str(root / "modelloop.yaml")).workspace
    model = load_model(ws, ws.catalog.get_model("helpdesk", summary["model"]["version"]))
    from safetensors.torch import load

    weights = load(model.weights_)
    assert weights and all("lora_" in k for k in weights)
    ids = torch.tensor([model.prompt_ids({"prompt": "Can I cancel my order?"})])
    with torch.no_grad():
        torch.testing.assert_close(model.network()(input_ids=ids).logits,
                                   model._build(merged=False)(input_ids=ids).logits, atol=1e-4, rtol=1e-4)

    # optimize's variants, checked against this model: merged (same greedy tokens), int8 (bounded perplexity)
    _check_variants(ws, model, summary)

    # serve: answers rated and corrected by the official client's users
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        for round_ in range(2):
            for q in QUESTIONS:
                # sampled (seeded): the barely tuned tiny model's greedy answer may be empty, and an
                # empty answer cannot be accepted
                reply = client.chat.completions.create(model="helpdesk", temperature=1.0, seed=7, max_tokens=8,
                                                       messages=[{"role": "user", "content": q}])
                body = {"request_id": reply.id, "rating": -1, "correction": CORRECTIONS[q]} if q in CORRECTIONS \
                    else {"request_id": reply.id, "rating": 1 if round_ == 0 else -1}
                r = httpx.post(f"{url}/v1/feedback", json=body, timeout=30)
                assert r.status_code == 201, (body, r.text)

    # retrain: 10 rated answers, 4 corrected, 3 accepted, 3 refused without a correction (not learned)
    code, out, err = cli(["retrain", "--json"], capsys, root)
    assert code == 0, err[-2000:]
    decision = json.loads(out)
    assert decision["added_rows"] == 7
    assert decision["metric"] == "chrf (recent), perplexity (holdout)"
    gate = decision["gate"]
    assert (gate["recent_metric"], gate["holdout_metric"], gate["relative"]) == ("chrf", "perplexity", True)
    assert " chrf" in decision["reason"]  # the recent slice's change is worded in chrF, the holdout's as a share
    assert "perplexity" in decision["reason"] or (not decision["promoted"] and "does not beat" in decision["reason"])
    champion, challenger = decision["champion"]["metrics"], decision["challenger"]["metrics"]
    assert "perplexity" in champion["holdout"] and "chrf" in challenger["recent"]
    before, after = champion["holdout"]["perplexity"], challenger["holdout"]["perplexity"]
    assert gate["holdout_drop"] == pytest.approx((after - before) / before)  # a share of the champion's
    assert decision["promoted"] is (gate["recent_gain"] > 0 and gate["holdout_drop"] <= gate["max_holdout_drop"])
    _, merged, _ = load_dataset(ws, decision["dataset"])
    learned = merged[merged["_origin"] == "feedback"]
    assert set(learned["completion"]) >= set(CORRECTIONS.values())
    assert set(learned["prompt"]) <= set(QUESTIONS) and len(learned) == 7


def _check_variants(ws, model, summary) -> None:
    import pickle

    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.families.generative.metrics import perplexity
    from modelloop.families.generative.variants import PERPLEXITY_BUDGET, generative_variant_maker
    from modelloop.optimization.optimize import VariantSkipped

    drow, df, _ = load_dataset(ws)
    train = df[ensure_split(ws, drow, df) == "train"].reset_index(drop=True)
    make = generative_variant_maker(model, train, target="completion", seed=0)
    with pytest.raises(VariantSkipped, match="pruned: not built for generative models.*allowed: merged, int8_dynamic, "
                                             "onnx, onnx_int8_dynamic"):
        make("pruned")
    prompts = train.head(6).drop(columns=["completion"])
    merged = make("merged")
    assert merged.model.method_ == "full" and merged.model.describe()["variant"]["checks"]["same_greedy_answers"] == 16
    again = pickle.loads(pickle.dumps(merged.model))  # as the registry stores it: loads without PEFT
    assert list(merged.fn(prompts)) == again.predict(prompts) == model.predict(prompts)
    int8 = make("int8_dynamic")
    checks = int8.model.describe()["variant"]["checks"]
    assert checks["perplexity_change"] <= PERPLEXITY_BUDGET
    assert checks["perplexity"] == pytest.approx(perplexity(*int8.model.nll(train.sample(n=16, random_state=0))))
    from modelloop.families.generative.quantize import FP32_LINEAR

    for name, m in int8.model.network().named_modules():  # int8 except the layers kept fp32
        if name.endswith(("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")):
            assert isinstance(m, torch.ao.nn.quantized.dynamic.Linear), name
        elif name.endswith(FP32_LINEAR):
            assert type(m) is torch.nn.Linear, name


@pytest.mark.slow
def test_modelloop_optimize_registers_a_generative_variant(tmp_path, capsys, tiny_llama):
    """``modelloop optimize`` on the example (~30 s on the tiny Llama): merged and int8_dynamic are built,
    scored and timed, onnx and onnx_int8_dynamic too; the shared names it does not build are skipped with
    the reason. The variants' checks run in the default suite (``_check_variants`` in the loop test,
    ``test_onnx_variant.py``)."""
    assert cli(["init", "helpdesk", "--example", "assistant"], capsys, tmp_path)[0] == 0
    root = tmp_path / "helpdesk"
    cfg = yaml.safe_load((root / "modelloop.yaml").read_text())
    cfg["model"].update(backbone=str(tiny_llama), max_length=96, eval_samples=2, max_new_tokens=8)
    (root / "modelloop.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    assert cli(["run"], capsys, root)[0] == 0
    code, out, err = cli(["optimize", "--json"], capsys, root)
    assert code == 0, err[-3000:]
    result = json.loads(out)
    rows = {v["name"]: v for v in result["variants"]}
    assert rows["merged"]["kept"] and rows["merged"]["agreement"] == 1.0
    assert rows["int8_dynamic"]["latency_p50_ms"] is not None
    assert rows["onnx"]["latency_p50_ms"] is not None and rows["onnx"]["agreement"] == 1.0, rows["onnx"]
    assert "onnx_int8_dynamic" in rows and "not built for generative models" in rows["pruned"]["reason"]
    assert result["chosen"] in {name for name, v in rows.items() if v["kept"]}
