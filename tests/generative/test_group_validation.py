"""With data.group the generative stage's validation rows (early stopping) are whole groups: a customer's
conversations on both sides of it scored the model on customers it trained on."""

from __future__ import annotations

import pytest
import yaml

from gen_toy import gen_config, make_pairs
from modelloop.families.generative import stage


class _Stop(Exception):
    pass


def test_validation_rows_keep_each_customer_on_one_side(tmp_path, tiny_llama, monkeypatch):
    from modelloop.config import parse_config
    from modelloop.project import Project

    pairs = make_pairs(60).assign(customer=[f"c{i % 15}" for i in range(60)])  # 4 conversations a customer
    pairs.to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(tmp_path, tiny_llama)
    raw["data"]["group"] = "customer"
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    project = Project(parse_config(raw, root=tmp_path))
    project.ingest()
    frames = []

    def capture(tokenizer, frame, shape, context):
        frames.append(frame)
        if len(frames) == 2:  # the fit rows, then the validation rows
            raise _Stop
        return ([], [], None), 0

    monkeypatch.setattr(stage, "_encoded", capture)
    with pytest.raises(_Stop):
        stage.train_generative(project.workspace)
    fit, val = set(frames[0]["customer"]), set(frames[1]["customer"])
    assert fit and val and not fit & val  # drawn by rows, customers had conversations on both sides
