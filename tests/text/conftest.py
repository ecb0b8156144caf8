"""Text-model fixtures: a tiny randomly initialised BERT and WordPiece tokenizer built here, never a
download (HF_HUB_OFFLINE=1 for the whole package), and a small synthetic intent data set."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path
from typing import Literal

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
# one intra-op thread, as tests/image runs: two threads contending on the 2-core CI machine made the
# fine-tuning tests 5-10x slower (the checkpoint-resume test: 17 s -> 2 s at load 5)
torch.set_num_threads(1)

from text_toy import CJK, FILLER, INTENTS, build_tiny_backbone, make_texts  # noqa: F401, E402


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def texts() -> pd.DataFrame:
    return make_texts()


def text_config(root: Path, backbone: Path, *, method: Literal["head", "lora", "full"] = "head",
                source: str = "data.jsonl", clean: list[dict] | None = None, **model: object):
    """A parsed project config for task text_classification (through the real ``parse_config`` once
    the main Config has ``model:``; until then a subclass that adds the two fields)."""
    from modelloop.config import Config, parse_config

    raw = {"name": "intents", "task": "text_classification",
           "data": {"source": source, "target": "intent", "text": "message"},
           "train": {"budget": 60}, "model": {"backbone": str(backbone), "method": method, **model}}
    if clean:
        raw["clean"] = {"rules": clean}
    if "model" in Config.model_fields:
        return parse_config(raw, root=root)
    from modelloop.families.text.config import TextModelConfig

    class TextConfig(Config):
        task: Literal["classification", "regression", "text_classification"] = "classification"
        model: TextModelConfig = TextModelConfig()

    return TextConfig.model_validate({**raw, "root": root})


@pytest.fixture(scope="session")
def make_text_config():
    """``text_config`` as a fixture (test modules do not import conftest)."""
    return text_config


@pytest.fixture
def project(tmp_path, texts):
    """A project folder with ``data.jsonl`` and a helper to build its config and workspace."""
    texts.to_json(tmp_path / "data.jsonl", orient="records", lines=True, force_ascii=False)

    def make(backbone: Path, **model: object):
        from modelloop.workspace import Workspace

        return Workspace(text_config(tmp_path, backbone, **model))

    return make


@pytest.fixture(scope="session")
def trained_text(tmp_path_factory, tiny_backbone, texts):
    """``trained_text(folder, clean=None, **model)``: the workspace of a new project over ``texts`` with
    the tiny backbone, ingested (and cleaned by the ``clean`` rules, if any) and trained (``intents:1``,
    production)."""

    def make(folder: str, clean: list[dict] | None = None, **model: object):
        from modelloop.data.ingest import ingest
        from modelloop.data.stages import clean_dataset
        from modelloop.families.text.stage import train_text
        from modelloop.workspace import Workspace

        root = tmp_path_factory.mktemp(folder)
        texts.to_json(root / "data.jsonl", orient="records", lines=True, force_ascii=False)
        ws = Workspace(text_config(root, tiny_backbone, clean=clean, **model))
        ingest(ws)
        if clean:
            clean_dataset(ws)
        train_text(ws)
        return ws

    return make
