"""A generative model whose training answers are labels answers within them (``model.choices: auto``):
the token trie, ``modelloop predict`` / evaluation, ``/v1/completions`` and ``/v1/chat/completions`` give
the same label; ``choices: off`` and a free-text model decode freely."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from servers import running

LABELS = {"How do I return an item?": "return_item", "Where is my order?": "order_status",
          "怎么退货？": "return_item", "Can I cancel?": "cancel_order", "运费多少？": "shipping_fee",
          "What are your hours?": "opening_hours"}


def label_pairs(n: int = 48):
    from gen_toy import make_pairs

    frame = make_pairs(n)
    frame["completion"] = [LABELS[p.removeprefix("Hi, ").removeprefix("Hello! ").removeprefix("请问")]
                           for p in frame["prompt"]]
    return frame


class LabelProject:
    def __init__(self, root: Path, backbone: Path, choices: str):
        import yaml

        from gen_toy import gen_config
        from modelloop.config import parse_config
        from modelloop.project import Project
        from modelloop.registry import load_model

        label_pairs().to_json(root / "qa.jsonl", orient="records", lines=True, force_ascii=False)
        # two epochs: the random tiny model has not yet learned the labels, so free answers are not all labels
        raw = gen_config(root, backbone, epochs=2, choices=choices, eval_samples=8)
        (root / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
        self.root = root
        self.project = Project(parse_config(raw, root=root))
        self.ws = self.project.workspace
        self.project.ingest()
        self.summary = self.project.train()
        self.model = load_model(self.ws, self.ws.catalog.get_model("helpdesk", self.summary["model"]["version"]))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tiny_llama) -> LabelProject:
    return LabelProject(tmp_path_factory.mktemp("labels"), tiny_llama, "auto")


def test_trie_allows_only_continuations_of_a_choice():
    import torch

    from modelloop.families.generative.generate import Choices, pick

    trie = Choices([[5, 6, 9, 1], [5, 7, 9, 1], [8, 9, 1, 3]], ends={9})
    assert trie.allowed([]) == [5, 8] and trie.allowed([5]) == [6, 7] and trie.allowed([5, 6]) == [9]
    assert trie.allowed([8, 9]) is None  # cut at the end token: nothing after it is part of a choice
    assert trie.allowed([4]) is None
    logits = torch.arange(12, dtype=torch.float32)  # 11 is the likeliest token
    assert pick(logits, 0.0, 1.0, None) == 11 and pick(logits, 0.0, 1.0, None, [5, 8]) == 8
    drawn = {pick(logits, 1.0, 1.0, torch.Generator().manual_seed(s), [2, 3]) for s in range(20)}
    assert drawn <= {2, 3}


def test_label_model_answers_one_of_its_labels(labelled):
    labels = sorted(set(LABELS.values()))
    assert labelled.model.choices_ == labels and labelled.summary["generation"]["choices"] == labels
    records = [{"prompt": p} for p in LABELS]
    within = labelled.model.predict(records)
    free = labelled.model.predict(records, choices=False)
    assert all(a in labels for a in within)
    assert not all(a in labels for a in free), free  # what the constraint changes on this barely-trained model


def test_served_answers_equal_predict(labelled):
    from modelloop.families.generative.data import Shape, row_example
    from modelloop.serving import create_app

    model = labelled.model
    with running(create_app(labelled.ws)) as url:
        for question in list(LABELS)[:4]:
            expected = model.predict([{"prompt": question}])[0]
            chat = httpx.post(f"{url}/v1/chat/completions", json={
                "messages": [{"role": "user", "content": question}], "temperature": 0}, timeout=60).json()
            rendered = row_example({"prompt": question}, Shape("pairs", "prompt", "completion"), model.tokenizer).prompt
            text = httpx.post(f"{url}/v1/completions", json={"prompt": rendered, "temperature": 0},
                              timeout=60).json()
            predicted = httpx.post(f"{url}/v1/predict", json={"records": [{"prompt": question}]}, timeout=60).json()
            assert chat["choices"][0]["message"]["content"] == expected
            assert text["choices"][0]["text"] == expected
            assert predicted["predictions"][0]["text"] == expected


def test_choices_off_and_free_text_models_decode_freely(tmp_path, tiny_llama, trained):
    off = LabelProject(tmp_path, tiny_llama, "off")
    assert off.model.choices_ is None and off.summary["generation"]["choices"] is None
    assert trained.model.choices_ is None  # the toy Q&A answers are sentences, not labels
    ids = trained.model.prompt_ids({"prompt": "Where is my order?"})
    assert trained.model.answer(ids) == trained.model.answer(ids, choices=True)
