"""Rated answers from the OpenAI routes become training rows of the model's own shape: the log row carries
the training table's input column for every shape (the monitor and the retrain read it), a preference
model's corrected answer becomes a preference pair (chosen: the correction, rejected: the served answer)
that ``modelloop retrain`` learns by DPO, and a chat model's becomes the request's messages with the
correction as the assistant's turn."""

from __future__ import annotations

import json
import time

import httpx
import pandas as pd
import pytest
import yaml
from clirun import cli
from gen_toy import FACTS, gen_config, make_chats
from servers import running

from modelloop.families.generative.data import Shape
from modelloop.families.generative.feedback import shape_inputs

openai = pytest.importorskip("openai")

CORRECTED = {"怎么退货？": "7天内可以退货。", "Can I cancel?": "Only before it ships."}
ACCEPTED, REFUSED = "Where is my order?", "What are your hours?"


def test_every_shape_gets_its_input_column_in_the_log():
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "退货？"},
        ]
    }
    raw = {"prompt": "Returns are"}
    pairs, prefs = (
        Shape("pairs", prompt="question", completion="answer"),
        Shape("preference", prompt="prompt", completion="chosen", rejected="rejected"),
    )
    assert shape_inputs(pairs, chat) == {"question": "Hi\n退货？"}  # the user's turns, not system or answers
    assert shape_inputs(prefs, raw) == {"prompt": "Returns are"}
    assert shape_inputs(Shape("text", text="body"), raw) == {"body": "Returns are"}
    assert shape_inputs(Shape("chat", messages="conversation"), chat) == {"conversation": chat["messages"]}
    assert shape_inputs(Shape("chat", messages="conversation"), raw) == {
        "conversation": [{"role": "user", "content": "Returns are"}]
    }
    assert shape_inputs(pairs, {"messages": [{"role": "system", "content": "x"}]}) == {}


def _logged(ws, rid: str) -> dict:
    deadline = time.monotonic() + 10
    while (row := ws.catalog.get_prediction(rid)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert row is not None, rid
    return row


def _rate(ws, questions: list[str], corrections: dict[str, str], accepted: str) -> dict[str, dict]:
    """Ask each question on the chat route (sampled, seeded: the barely tuned tiny model's greedy answer
    may be empty), then correct, accept or refuse it; the logged rows by question."""
    from modelloop.serving import ServeConfig, create_app

    rows = {}
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        for q in questions:
            reply = client.chat.completions.create(
                model="helpdesk",
                temperature=1.0,
                seed=11,
                max_tokens=8,
                messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}],
            )
            body = (
                {"request_id": reply.id, "rating": -1, "correction": corrections[q]}
                if q in corrections
                else {"request_id": reply.id, "rating": 1 if q == accepted else -1}
            )
            assert httpx.post(f"{url}/v1/feedback", json=body, timeout=30).status_code == 201
            rows[q] = _logged(ws, reply.id)
    return rows


def test_a_corrected_answer_of_a_preference_model_is_retrained_as_a_preference_pair(
    tmp_path, capsys, tiny_llama
):
    from modelloop.data.ingest import load_dataset
    from modelloop.project import Project

    prefs = pd.DataFrame(
        [
            {"prompt": q, "chosen": a, "rejected": FACTS[(i + 1) % len(FACTS)][1]}
            for i, (q, a) in enumerate(FACTS * 3)
        ]
    )
    prefs.to_json(tmp_path / "prefs.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(
        tmp_path,
        tiny_llama,
        source="prefs.jsonl",
        method="lora",
        epochs=1,
        eval_samples=1,
        max_new_tokens=8,
        lora_target_modules=["q_proj", "v_proj"],
    )
    raw["data"]["target"] = "chosen"
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    project = Project.load(str(tmp_path / "modelloop.yaml"))
    project.ingest()
    assert project.train()["generation"]["objective"] == "dpo"
    ws = project.workspace

    questions = [*CORRECTED, ACCEPTED, REFUSED]
    logged = _rate(ws, questions, CORRECTED, ACCEPTED)
    for q, row in logged.items():  # a preference model's log row has its prompt column (was pairs only)
        assert row["inputs"]["prompt"] == q, row["inputs"]
    served = {q: row["output"]["text"] for q, row in logged.items()}
    assert all(served[q].strip() and served[q] != c for q, c in CORRECTED.items()), served

    code, out, err = cli(["retrain", "--json"], capsys, tmp_path)
    assert code == 0, err[-2000:]
    decision = json.loads(out)
    assert decision["added_rows"] == 3  # two corrections, one accepted answer; the refused one is not learned
    note = decision["feedback_inputs"]
    assert note["preference_pairs"] == 2 and note["without_rejected"] == 1 and "accepted" in note["why"]
    _, merged, _ = load_dataset(ws, decision["dataset"])
    learned = merged[merged["_origin"] == "feedback"].set_index("prompt")
    for q, correction in CORRECTED.items():
        assert learned.loc[q, "chosen"] == correction and learned.loc[q, "rejected"] == served[q]
    assert learned.loc[ACCEPTED, "chosen"] == served[ACCEPTED] and pd.isna(learned.loc[ACCEPTED, "rejected"])
    challenger = ws.catalog.get_model("helpdesk", decision["challenger"]["model"]["version"])
    assert challenger["info"]["description"]["shape"]["kind"] == "preference"
    assert (
        "val_reward_accuracy" in challenger["info"]["description"]["training"]["history"][0]
    )  # learned by DPO


def test_a_chat_models_feedback_becomes_a_conversation_in_its_messages_column(tmp_path, tiny_llama):
    from modelloop.families.generative import FAMILY
    from modelloop.project import Project

    make_chats(24).rename(columns={"messages": "conversation"}).to_json(
        tmp_path / "chats.jsonl", orient="records", lines=True, force_ascii=False
    )
    raw = gen_config(tmp_path, tiny_llama, source="chats.jsonl", epochs=2, eval_samples=1, max_new_tokens=8)
    raw["data"].update(target="conversation", messages="conversation")
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    project = Project.load(str(tmp_path / "modelloop.yaml"))
    project.ingest()
    project.train()
    ws = project.workspace
    logged = _rate(ws, list(CORRECTED), CORRECTED, "")
    for q, row in logged.items():  # the renamed messages column is in the log
        assert row["inputs"]["conversation"][-1] == {"role": "user", "content": q}
    from modelloop.feedback.store import labeled_frame

    # as ``modelloop retrain`` hands them to the family (merging them needs a hashable table: see the
    # module's note)
    rows, note = FAMILY.feedback_inputs(ws, labeled_frame(ws))
    assert len(rows) == 2 and note == {}
    learned = sorted((list(c) for c in rows["conversation"]), key=lambda c: c[1]["content"])
    assert learned == sorted(
        (
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ]
            for q, a in CORRECTED.items()
        ),
        key=lambda c: c[1]["content"],
    )
