"""With data.group the text search's cross-validation folds (what TF-IDF and frozen-head trials are chosen
on, and the blend weighs its members on) keep each group whole: drawn by rows, a customer's reviews lay on
both the training and the held-out side of a fold, and a trial was chosen on customers it trained on."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from modelloop.families.text import stage


class _Stop(Exception):
    pass


def _grouped_project(tmp_path, tiny_backbone, texts, group: str | None):
    from modelloop.config import parse_config
    from modelloop.data.ingest import ingest
    from modelloop.workspace import Workspace

    data = texts.assign(customer=[f"c{i % 18}" for i in range(len(texts))])  # 5 reviews a customer
    data.to_json(tmp_path / "data.jsonl", orient="records", lines=True, force_ascii=False)
    source = {"source": "data.jsonl", "target": "intent", "text": "message"}
    cfg = parse_config({"name": "intents", "task": "text_classification",
                        "data": {**source, **({"group": group} if group else {})}, "train": {"budget": 60},
                        "model": {"backbone": str(tiny_backbone), "method": "head", "classical": True}},
                       root=tmp_path)
    ws = Workspace(cfg)
    ingest(ws)
    return ws, data


def _searched(ws, monkeypatch) -> dict:
    """The candidates the search would compare (the stage stopped before it searches)."""
    seen: dict = {}

    def capture(cands, **kwargs):
        seen.update(cands)
        raise _Stop

    monkeypatch.setattr(stage, "run_text_search", capture)
    with pytest.raises(_Stop):
        stage.train_text(ws)
    return seen


def test_cross_validation_folds_keep_each_customer_on_one_side(tmp_path, tiny_backbone, texts, monkeypatch):
    ws, _ = _grouped_project(tmp_path, tiny_backbone, texts, "customer")
    cands = _searched(ws, monkeypatch)
    assert {"tfidf", "encoder"} <= set(cands)  # TF-IDF and the encoder's head: both cross-validated
    for name, cand in cands.items():
        groups = cand.groups.to_numpy()
        assert len(groups) == len(cand.y_all) - cand.augmented
        folds = cand.cv_folds()
        assert folds is not None and len(folds) >= 2
        held = np.sort(np.concatenate([rows for _, rows in folds]))
        assert np.array_equal(held, np.arange(len(groups)))  # every row held out once
        for train, rows in folds:  # drawn by rows, nearly every customer sat on both sides
            assert not set(groups[train]) & set(groups[rows]), name


def test_without_a_group_the_folds_stay_stratified_row_folds(tmp_path, tiny_backbone, texts, monkeypatch):
    from sklearn.model_selection import StratifiedKFold

    ws, _ = _grouped_project(tmp_path, tiny_backbone, texts, None)
    cand = _searched(ws, monkeypatch)["tfidf"]
    assert cand.groups is None
    rows = np.arange(len(cand.y_all))
    want = StratifiedKFold(5, shuffle=True, random_state=ws.config.seed).split(rows, cand.y_all)
    for (train, held), (w_train, w_held) in zip(cand.cv_folds(), want, strict=True):
        assert np.array_equal(train, w_train) and np.array_equal(held, w_held)


def test_fewer_groups_than_folds_warn_as_the_tabular_stage_does(tmp_path, tiny_backbone, texts, capsys, caplog):
    """4 customers, one of them the frozen test set: the text search's 5 cross-validation folds are one
    customer each. `modelloop train` says so with split.fold_groups' warning, as the tabular stage does
    (the text stage said nothing: its validation score rested on 3 customers unannounced)."""
    from clirun import cli

    texts.assign(customer=[f"c{i % 4}" for i in range(len(texts))]).to_json(
        tmp_path / "data.jsonl", orient="records", lines=True, force_ascii=False)
    (tmp_path / "modelloop.yaml").write_text(
        "name: intents\ntask: text_classification\n"
        "data: {source: data.jsonl, target: intent, text: message, group: customer}\n"
        f"train: {{budget: 30, trials: 2}}\nmodel: {{backbone: '{tiny_backbone}', method: head, classical: true}}\n")
    assert cli(["ingest"], capsys, tmp_path)[0] == 0
    code, out, err = cli(["train", "--json"], capsys, tmp_path)
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 1, warnings
    assert re.match(r"data.group: column 'customer' has 3 groups among the \d+ training rows, fewer than the text "
                    r"search's cross-validation folds \(5\): the search validates on 3 folds, one group each",
                    warnings[0]), warnings
    assert "train.cv_folds" not in warnings[0]  # the text search's folds do not read it
    assert warnings[0] in caplog.messages  # logged as the tabular stage logs it; the summary prints the list
