"""Generative-model fixtures: a tiny randomly initialised Llama and byte-level BPE tokenizer built here,
never a download (HF_HUB_OFFLINE=1), the toy bilingual Q&A pairs, and one project trained once."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
# one thread: the tiny models gain nothing from two, and two threads on a shared 2-core machine contend
# (the image tests pin the same)
torch.set_num_threads(1)

from gen_toy import build_tiny_llama, gen_config, make_chats, make_pairs  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


class TrainedProject:
    def __init__(self, root: Path, backbone: Path):
        from modelloop.config import parse_config
        from modelloop.project import Project

        import yaml

        make_pairs(60).to_json(root / "qa.jsonl", orient="records", lines=True, force_ascii=False)
        self.root = root
        raw = gen_config(root, backbone)
        (root / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))  # the CLI reads it too
        self.project = Project(parse_config(raw, root=root))
        self.ws = self.project.workspace
        self.project.ingest()
        self.summary = self.project.train()
        self.row = self.ws.catalog.get_model("helpdesk", self.summary["model"]["version"])
        from modelloop.registry import load_model

        self.model = load_model(self.ws, self.row)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_llama) -> TrainedProject:
    return TrainedProject(tmp_path_factory.mktemp("helpdesk"), tiny_llama)


@pytest.fixture(scope="session")
def pairs():
    return make_pairs(60)


@pytest.fixture(scope="session")
def chats():
    return make_chats(30)


@pytest.fixture
def full_tune_job(tiny_llama, pairs):
    """A full fine-tune of the tiny model on 18 training and 6 validation pairs, 5 epochs of 9 optimizer steps
    (batch 1, 2 accumulated): ``(job, settings)`` for ``fit.run_params`` with a deadline."""
    from transformers import AutoTokenizer

    from modelloop.families.generative.config import GenerativeModelConfig
    from modelloop.families.generative.data import Shape, encode_examples, examples_of
    from modelloop.families.generative.fit import GenJob

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    settings = GenerativeModelConfig(backbone=str(tiny_llama), method="full", epochs=5, batch_size=1, grad_accum=2,
                                     max_length=64, learning_rate=1e-2, packing=False)
    ex = examples_of(pairs.head(24), Shape("pairs", "prompt", "completion"), tok)
    ids, labels, _ = encode_examples(tok, ex, 64)
    return GenJob(settings, str(tiny_llama), "fp", int(tok.pad_token_id), ids[:18], labels[:18], ids[18:],
                  labels[18:], 0, "cpu"), settings

