"""``train.ddp_processes: 2`` on a text project, the way a user sets it: the train stage fine-tunes in 2
data-parallel processes (gloo on CPU), registers the model, and the served model scores the rows it was
trained on as offline prediction does."""

from __future__ import annotations


import numpy as np
import torch
from servers import served_equals_offline
from text_toy import build_tiny_backbone, make_texts

from modelloop.config import parse_config
from modelloop.data.ingest import ingest
from modelloop.families.text.stage import train_text
from modelloop.workspace import Workspace

torch.set_num_threads(1)  # each rank on one thread


def test_a_two_process_fine_tune_registers_a_model_that_serves_its_rows(tmp_path):
    backbone = build_tiny_backbone(tmp_path / "tiny-bert")
    texts = make_texts(n_per_class=20)
    texts.to_json(tmp_path / "data.jsonl", orient="records", lines=True)
    cfg = parse_config({"name": "intents", "task": "text_classification",
                        "data": {"source": "data.jsonl", "target": "intent", "text": "message"},
                        "train": {"budget": 60, "trials": 1, "ddp_processes": 2},
                        "model": {"backbone": str(backbone), "method": "full", "epochs": 2, "learning_rate": 1e-3,
                                  "batch_size": 8, "classical": False}}, root=tmp_path)
    ws = Workspace(cfg)
    ingest(ws)
    res = train_text(ws)
    assert res["best_family"] == "full"
    info = ws.catalog.get_model("intents", res["model"]["version"])["info"]["description"]
    assert info["ddp_processes"] == 2 and info["epochs_run"] == 2
    _, model = served_equals_offline(ws, texts, "intent")
    offline = model.predict_proba(texts.drop(columns=["intent"]))
    assert (np.asarray(model.classes_)[offline.argmax(axis=1)] == texts["intent"].to_numpy()).mean() >= 0.6
