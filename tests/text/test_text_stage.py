"""The text train stage end to end on a project folder: same contract as the tabular stage (return
keys, catalog rows, MLflow runs per trial, registry), caches, resume after a kill, augmentation,
empty / long texts and bad input."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from modelloop.data.ingest import ingest
from modelloop.errors import DataError
from modelloop.families.text.backbone import BackboneError
from modelloop.families.text import fit as F
from modelloop.families.text.stage import text_study_name, train_text

TRAIN_KEYS = {"model", "dataset", "run_id", "task", "task_inferred", "metric", "validation_score", "validation_metric", "test_metrics", "test_interval", "rows",
              "best_family", "ensemble", "threshold", "trials", "resumed_trials", "production", "report",
              "seconds", "families", "latency", "family", "backbone", "search_stopped", "by_script",
              "cv_spread", "cv",  # the shared registration's cross-validation figures (None for text)
              "blend",  # the TF-IDF / frozen-encoder blend (None: fewer than two such candidates here)
              "embedding_seconds",  # embedding and tokenizing before the search: spent from train.budget
              "warnings"}  # what the user should know (fewer data.group groups than folds), as the tabular stage's


def _child_runs(ws, parent: str) -> list:
    from modelloop.registry import tracker_for

    tracker = tracker_for(ws)
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return sorted(runs, key=lambda r: r.info.run_name)


def test_head_stage_registers_like_the_tabular_stage(project, tiny_backbone):
    ws = project(tiny_backbone, classical=False)
    ingest(ws)
    res = train_text(ws)
    assert set(res) == TRAIN_KEYS and res["embedding_seconds"] > 0  # the head embeds every row first
    assert res["best_family"] == "head" and res["ensemble"] is None and res["threshold"] is None
    assert res["warnings"] == []  # no data.group: no folds of too few groups to warn of
    assert res["blend"] is None  # a PyTorch head alone: nothing to blend
    assert res["task"] == "multiclass" and res["trials"] == 1 and res["production"] is True
    assert res["family"] == "text"
    assert res["test_metrics"]["accuracy"] >= 0.8 and res["rows"]["test"] == 18
    row = ws.catalog.get_model("intents", 1)
    assert row["info"]["task"] == "multiclass" and row["info"]["classes"] == ["delivery", "lost_card", "refund"]
    assert row["family"] == "text" and row["info"]["head"] == "classification"
    description = row["info"]["description"]
    assert description["method"] == "head" and description["text_stats"]["truncated"] == {"train": 0, "test": 0}
    assert row["input_schema"]["columns"]["message"] == "text"
    assert [r["id"] for r in ws.catalog.list_runs("intents")] == [res["run_id"]]
    trials = _child_runs(ws, res["run_id"])
    assert [r.info.run_name for r in trials] == ["trial-0-head"]
    assert "valid_f1_macro" in trials[0].data.metrics
    cache = sorted(p.name.split("-")[0] for p in (ws.state / "cache").iterdir())
    assert cache == ["embw", "tokw"]

    from modelloop.registry import load_model

    native = load_model(ws, row)
    assert list(native.predict(pd.DataFrame({"message": ["please refund my money", "my card was stolen"]}))) \
        == ["refund", "lost_card"]

    again = train_text(ws)  # same data and settings: the finished trial is reused
    assert again["resumed_trials"] == 1 and again["production"] is False
    assert again["validation_score"] == res["validation_score"]


def test_search_tracks_every_trial(project, tiny_backbone):
    ws = project(tiny_backbone, search=True, classical=False)
    ingest(ws)
    res = train_text(ws, trials=4)
    assert res["trials"] == 4 and res["resumed_trials"] == 0
    names = [r.info.run_name for r in _child_runs(ws, res["run_id"])]
    assert names == [f"trial-{i}-head" for i in range(4)]
    study = optuna.load_study(study_name=text_study_name(ws, res["dataset"]), storage=ws.optuna_url)
    assert study.trials[0].params == {"head_c": 1.0}  # the configured value is tried first
    more = train_text(ws, trials=6, warm_start=[{"family": "head", "head_c": 0.02}, {"family": "lora", "lora_r": 4}])
    assert more["trials"] == 6 and more["resumed_trials"] == 4
    study = optuna.load_study(study_name=text_study_name(ws, res["dataset"]), storage=ws.optuna_url)
    assert study.trials[4].params == {"head_c": 0.02}  # the warm start goes first; the lora set is ignored


def test_killed_fine_tuning_resumes_from_its_checkpoint(project, tiny_backbone, monkeypatch):
    ws = project(tiny_backbone, method="full", epochs=3, learning_rate=1e-3, batch_size=8,
                 early_stopping_patience=5, classical=False)
    ingest(ws)
    real = F.train_epoch
    calls = []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "train_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_text(ws)
    monkeypatch.setattr(F, "train_epoch", real)
    res = train_text(ws)
    study = optuna.load_study(study_name=text_study_name(ws, res["dataset"]), storage=ws.optuna_url)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"]
    assert study.trials[1].user_attrs["resumed_from_epoch"] == 1
    assert study.trials[1].params == study.trials[0].params
    assert res["best_family"] == "full" and res["test_metrics"]["accuracy"] >= 0.6
    assert not list(ws.study_dir(text_study_name(ws, res["dataset"])).glob("ckpt-*"))  # cleaned up
    info = ws.catalog.get_model("intents", res["model"]["version"])["info"]["description"]
    assert info["precision"] == "fp32" and info["epochs_run"] == 3
    # every epoch, the resumed one included, in the registered model's description
    assert [h["epoch"] for h in info["history"]] == [1, 2, 3] and all(h["seconds"] > 0 for h in info["history"])
    assert info["fit_rows"] > 0


def test_augmentation_touches_the_fit_rows_only_and_is_recorded(project, tiny_backbone):
    ws = project(tiny_backbone, augment={"enabled": True, "n_per_example": 2, "p": 0.2,
                                         "synonyms": {"refund": ["reimbursement"], "late": ["delayed"]}})
    ingest(ws)
    res = train_text(ws)
    info = ws.catalog.get_model("intents", res["model"]["version"])["info"]["description"]
    aug = info["augment"]
    assert aug["enabled"] is True and aug["synonyms"] == "inline" and aug["synonyms_sha256"]
    stats = info["text_stats"]["rows"]
    assert aug["rows_in"] == stats["fit"] and aug["rows_added"] == stats["augmented"] > stats["fit"]
    assert stats["validation"] + stats["fit"] == res["rows"]["train"] and stats["test"] == res["rows"]["test"]
    from modelloop.registry import tracker_for

    params = tracker_for(ws).client.get_run(res["run_id"]).data.params
    assert params["augment.enabled"] == "True" and params["augment.rows_added"] == str(aug["rows_added"])


def test_empty_and_long_texts_are_counted(project, tiny_backbone, texts, tmp_path):
    frame = texts.copy()
    frame.loc[[0, 1, 2], "message"] = ["", "   ", None]
    frame.loc[3, "message"] = "refund money " * 200
    frame.to_json(tmp_path / "data.jsonl", orient="records", lines=True)
    ws = project(tiny_backbone, max_length=32)
    ingest(ws)
    res = train_text(ws)
    stats = ws.catalog.get_model("intents", res["model"]["version"])["info"]["description"]["text_stats"]
    assert sum(stats["skipped_empty"].values()) == 3
    assert sum(stats["truncated"].values()) == 0 and stats["max_length"] == 32  # read whole, in windows
    assert max(part["max"] for part in stats["windows"].values()) > 10
    assert sum(part["texts_over_one"] for part in stats["windows"].values()) == 1
    assert res["rows"]["test"] + stats["rows"]["fit"] + stats["rows"]["validation"] == len(frame) - 3


def test_one_class_is_refused_at_ingest(project, tiny_backbone, texts, tmp_path):
    texts.assign(intent="refund").to_json(tmp_path / "data.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="single class"):
        ingest(project(tiny_backbone))


def test_unreachable_backbone_is_a_config_error(project, tmp_path):
    ws = project(tmp_path / "missing")  # not a folder, and offline
    ingest(ws)
    with pytest.raises(BackboneError, match="folder not found|neither a local folder"):
        train_text(ws)
