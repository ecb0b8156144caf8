"""A chat project's whole loop on the command line: ``modelloop run`` on ``messages`` rows (the tiny Llama),
the OpenAI-compatible server answering multi-turn chats, ratings and corrections through ``/v1/feedback``,
then ``modelloop retrain``: accepted and corrected answers become conversations in the messages column
(the request's turns, the answer as the last assistant turn), refused ones are not learned, and the gate
compares the champion and the challenger and decides; the ONNX variant is checked on chats."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from clirun import cli
from servers import running

openai = pytest.importorskip("openai")

SYSTEM = {"role": "system", "content": "You are a helpdesk."}
CORRECTIONS = {"运费多少？": "满99元包邮。", "How do I return an item?": "Returns are accepted within 30 days."}
ACCEPTED = ["Where is my order?", "What are your hours?"]
REFUSED = ["Can I cancel?"]


def test_a_chat_project_retrains_on_its_rated_conversations(tmp_path, capsys, tiny_llama):
    from gen_toy import gen_config, make_chats

    from modelloop.data.ingest import load_dataset
    from modelloop.project import Project
    from modelloop.serving import ServeConfig, create_app

    make_chats(36).to_json(tmp_path / "chats.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(tmp_path, tiny_llama, source="chats.jsonl", epochs=3, eval_samples=2, max_new_tokens=8)
    raw["data"]["target"] = "messages"
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))

    code, out, err = cli(["run", "--json"], capsys, tmp_path)
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["generation"]["shape"] == "chat" and summary["production"] is True
    champion_version = summary["model"]["version"]

    with running(create_app(Project.load(str(tmp_path / "modelloop.yaml")).workspace,
                            config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        for q in [*CORRECTIONS, *ACCEPTED, *REFUSED]:
            # two turns: an earlier exchange stays in the learned conversation
            messages = [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": q}]
            # sampled (seeded): the barely tuned tiny model's greedy answer may be empty, and an empty
            # answer cannot be accepted
            reply = client.chat.completions.create(model="helpdesk", messages=messages, temperature=1.0, seed=3,
                                                   max_tokens=8)
            body = {"request_id": reply.id, "rating": -1, "correction": CORRECTIONS[q]} if q in CORRECTIONS \
                else {"request_id": reply.id, "rating": 1 if q in ACCEPTED else -1}
            r = httpx.post(f"{url}/v1/feedback", json=body, timeout=30)
            assert r.status_code == 201, (body, r.text)

    code, out, err = cli(["retrain", "--json"], capsys, tmp_path)
    assert code == 0, err[-3000:]
    decision = json.loads(out)
    assert decision["added_rows"] == len(CORRECTIONS) + len(ACCEPTED)   # the refused answer is not learned
    ws = Project.load(str(tmp_path / "modelloop.yaml")).workspace
    _, merged, _ = load_dataset(ws, decision["dataset"])
    learned = merged[merged["_origin"] == "feedback"]
    conversations = [list(c) for c in learned["messages"]]
    assert len(conversations) == len(CORRECTIONS) + len(ACCEPTED)
    for c in conversations:
        c = [dict(m) for m in c]
        assert c[:3] == [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
        assert c[3]["role"] == "user" and c[3]["content"] in [*CORRECTIONS, *ACCEPTED]
        assert c[4]["role"] == "assistant" and len(c) == 5
        if c[3]["content"] in CORRECTIONS:
            assert c[4]["content"] == CORRECTIONS[c[3]["content"]]
    # the gate: the challenger against the champion on the recent slice and the frozen holdout
    gate = decision["gate"]
    assert decision["champion"]["model"]["version"] == champion_version
    assert "perplexity" in decision["champion"]["metrics"]["holdout"]
    assert decision["metric"] == "chrf (recent), perplexity (holdout)"
    assert "perplexity" in decision["challenger"]["metrics"]["holdout"]
    assert decision["promoted"] is (gate["recent_gain"] > 0 and gate["holdout_drop"] <= gate["max_holdout_drop"])
    production = ws.catalog.get_alias("helpdesk", "production")
    assert production == (decision["challenger"]["model"]["version"] if decision["promoted"] else champion_version)

    # optimize's variants are checked on chats (their messages are the prompt and the target)
    from modelloop.data.ingest import ensure_split
    from modelloop.families.generative.variants import generative_variant_maker
    from modelloop.registry import load_model

    drow, df, _ = load_dataset(ws)
    train = df[ensure_split(ws, drow, df) == "train"].reset_index(drop=True)
    champion = load_model(ws, ws.catalog.get_model("helpdesk", champion_version))
    pred = generative_variant_maker(champion, train, target="messages", seed=0, scratch=tmp_path / "s")("onnx")
    checks = pred.model.describe()["variant"]["checks"]
    assert checks["same_greedy_answers"] == checks["prompts"] == 16


@pytest.mark.slow
def test_modelloop_optimize_scores_a_chat_models_onnx_variant_on_its_test_chats(tmp_path, capsys, tiny_llama):
    """``modelloop optimize`` on a chat project (minutes on a loaded machine: it times the PyTorch model on
    batches of 64 answers); the variant checks on chats run in the default suite (above)."""
    from gen_toy import gen_config, make_chats

    make_chats(36).to_json(tmp_path / "chats.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(tmp_path, tiny_llama, source="chats.jsonl", epochs=3, eval_samples=2, max_new_tokens=8)
    raw["data"]["target"] = "messages"
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert cli(["run"], capsys, tmp_path)[0] == 0
    code, out, err = cli(["optimize", "--variant", "onnx", "--no-promote", "--json"], capsys, tmp_path)
    assert code == 0, err[-3000:]
    rows = {v["name"]: v for v in json.loads(out)["variants"]}
    assert rows["onnx"]["agreement"] == 1.0 and rows["onnx"]["metric"] == rows["native"]["metric"], rows


def test_the_reference_answer_of_a_chat_is_its_last_assistant_turn():
    import numpy as np
    import pandas as pd

    from modelloop.families.heads import GenerationHead

    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    y = pd.Series([np.array(chat, dtype=object), json.dumps(chat), chat[:1], "plain answer"])
    assert list(GenerationHead("generation").truth(y, "messages")) == ["Hello!", "Hello!", "", "plain answer"]
