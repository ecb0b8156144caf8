from __future__ import annotations

import pytest

from modelloop.config import CHECKS, Config, config_hash, load_config, parse_config
from modelloop.errors import ConfigError, StateError
from modelloop.families import TASKS

MIN = {"data": {"source": "a.csv", "target": "y"}}


def test_minimal_config_gets_defaults():
    cfg = parse_config({**MIN, "task": "classification"})
    assert cfg.task == "classification" and cfg.metric == "f1_macro" and cfg.task_inferred is None
    assert cfg.split.strategy == "stratified" and cfg.train.budget == 120
    assert parse_config({**MIN, "task": "regression"}).split.strategy == "random"
    assert parse_config({**MIN, "data": {**MIN["data"], "time": "t"}}).split.strategy == "time"


def test_a_task_left_out_is_settled_from_the_data_with_the_split_and_metric_that_follow_it():
    cfg = parse_config(MIN)
    assert cfg.task is None and cfg.split.strategy is None
    with pytest.raises(StateError, match="run `modelloop ingest` first"):
        _ = cfg.metric
    cfg.settle_task("regression", "target 'y' holds fractional numbers")
    assert (cfg.task, cfg.split.strategy, cfg.metric) == ("regression", "random", "rmse")
    assert cfg.task_inferred == {"task": "regression", "reason": "target 'y' holds fractional numbers"}
    cfg.settle_task("classification", "target 'y' holds 3 distinct values")  # a later version's inference
    assert (cfg.task, cfg.split.strategy, cfg.metric) == ("classification", "stratified", "f1_macro")


def test_the_config_s_task_and_split_win_over_the_inference():
    cfg = parse_config({**MIN, "task": "classification"})
    cfg.settle_task("regression", "target 'y' holds fractional numbers")
    assert cfg.task == "classification" and cfg.task_inferred is None
    cfg = parse_config({**MIN, "split": {"strategy": "group"}, "data": {**MIN["data"], "group": "g"}})
    cfg.settle_task("regression", "many values")
    assert cfg.split.strategy == "group"


@pytest.mark.parametrize("raw, expected", [
    ({**MIN, "train": {"metric": "f1_macro"}}, "train.metric: must be one of rmse, mae, r2 for task regression"),
    ({**MIN, "split": {"strategy": "stratified"}}, "split.strategy: 'stratified' needs a classification task"),
])
def test_settings_that_contradict_the_inferred_task_name_the_inference(raw, expected):
    cfg = parse_config(raw)
    with pytest.raises(ConfigError) as exc:
        cfg.settle_task("regression", "target 'y' holds fractional numbers (500 distinct values in 500 rows)")
    assert expected in str(exc.value) and "task regression was inferred: target 'y' holds fractional" in str(exc.value)
    assert "set `task:` in modelloop.yaml" in str(exc.value)
    assert cfg.task is None  # nothing half-settled


def test_a_model_section_beside_a_left_out_task_is_the_inferred_familys_settings():
    # init --source writes no task:; a user who then tunes the text model (model.backbone) was refused at
    # load ("got task: left out (inferred: classification or regression)") before the data could say
    cfg = parse_config({**MIN, "model": {"backbone": "bundled", "method": "lora"}})
    cfg.settle_task("text_classification", "the features are the free text of 'review'")
    assert (cfg.model.backbone, cfg.model.method, cfg.model.max_length) == ("bundled", "lora", 128)
    with pytest.raises(ConfigError, match=r"model: only used by task: .*got task: classification; .*"
                                          r"\(task classification was inferred: 2 classes; set `task:`"):
        parse_config({**MIN, "model": {"backbone": "bundled"}}).settle_task("classification", "2 classes")
    typo = parse_config({**MIN, "model": {"bakcbone": "bundled"}})
    with pytest.raises(ConfigError, match=r"model.bakcbone: unknown key \(did you mean 'backbone'\?\)"):
        typo.settle_task("text_classification", "free text")
    assert typo.task is None  # a refused inference leaves the config as it was


@pytest.mark.parametrize("raw, expected", [
    ({**MIN, "trian": {}}, "trian: unknown key (did you mean 'train'?)"),
    ({"data": {"source": "a.csv", "target": "y", "tagret": 1}}, "data.tagret: unknown key (did you mean 'target'?)"),
    ({**MIN, "train": {"budget": -5}}, "train.budget: must be greater than 0, got -5"),
    ({**MIN, "split": {"strategy": "foo"}}, "split.strategy: must be 'stratified', 'random', 'time', 'group', 'user' or 'column', got \"foo\""),
    ({**MIN, "split": {"strategy": "分层"}}, 'got "分层"'),  # as typed; it read got "\\u5206\\u5c42"
    ({**MIN, "name": "情感项目"}, 'name: must be a letter A-Z or a digit, then letters A-Z, digits, _ . or - '
                                 '(it names the model in the registry), got "情感项目"'),
    ({"data": {"source": "a.csv"}}, "data.target: required, but missing"),
    ({**MIN, "task": "classification", "train": {"metric": "rmse"}}, "train.metric: must be one of"),
    ({**MIN, "split": {"strategy": "time"}}, "split.strategy: 'time' needs data.time"),
    ({"task": "anomaly_detection", "data": {"source": "a.csv"}, "split": {"strategy": "stratified"}},
     "split.strategy: 'stratified' keeps each label's share on both sides, and this project has no labels "
     "(task anomaly_detection without data.target); use random, time or group, or set data.target"),
    ({"data": {"source": "a.csv", "target": "y", "id": "y"}}, "data.id: must differ from data.target"),
    ({"data": {"source": "sqlite:///x.db", "target": "y"}}, "data.query: a SQL source"),
    ({**MIN, "task": "classification", "model": {"method": "lora"}}, "model: only used by task: text_classification"),
    ({**MIN, "task": "speech_recognition"},
     f'task: must be one of {", ".join(TASKS)}, got "speech_recognition"'),
    ({**MIN, "task": "image_classification", "train": {"max_latency_ms": 5}},
     "train.max_latency_ms: applies to tabular and text models; for an image model choose a smaller"),
])
def test_errors_name_the_key_the_value_and_what_is_allowed(raw, expected):
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    assert expected in str(exc.value)


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        parse_config({"data": {"source": "a.csv"}, "split": {"strategy": "foo"}, "trian": 1})
    assert len(str(exc.value).splitlines()) == 3


def test_every_cross_field_check_is_registered():
    import modelloop.config as c

    defined = {n for n, f in vars(c).items() if callable(f) and getattr(f, "__module__", "") == c.__name__
               and n not in {"parse_config", "load_config", "config_hash", "_check", "_fields_of",
                             "_format_error"} and not isinstance(f, type) and not n.startswith("_")}
    assert defined <= set(CHECKS), defined - set(CHECKS)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "modelloop.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("data:\n  source: a.csv\n  target: y\n")
    assert load_config(bad).root == tmp_path


def test_config_hash_is_stable_and_sensitive():
    a, b = parse_config(MIN), parse_config({**MIN, "seed": 1})
    assert config_hash(a) == config_hash(parse_config(MIN)) != config_hash(b)
    assert config_hash(a, "data") == config_hash(b, "data")
    assert isinstance(a, Config)


# --------------------------------------------------------------------------- model: belongs to the task's family
def test_the_model_section_is_validated_by_the_task_s_family_with_dotted_paths():
    with pytest.raises(ConfigError) as exc:
        parse_config({**MIN, "task": "text_classification",
                      "model": {"backbone": "", "bakbone": "x", "augment": {"p": 0.9, "x": 1}}})
    lines = str(exc.value).splitlines()
    assert 'model.backbone: must be a backbone name or a non-empty list of names, none empty, got ""' in lines
    assert any(line.startswith("model.bakbone: unknown key (did you mean 'backbone'?); allowed: backbone, method")
               for line in lines)
    assert any(line.startswith("model.augment.p: ") and line.endswith("got 0.9") for line in lines)
    assert "model.augment.x: unknown key; allowed: enabled, synonyms, n_per_example, p, ops" in lines
    cfg = parse_config({**MIN, "task": "text_classification", "model": {"method": "lora"}})
    from modelloop.families import get_family

    schema = get_family("text").settings_schema()
    assert isinstance(cfg.model, schema) and cfg.model == schema(method="lora")  # the family's typed settings
    assert parse_config({**MIN, "task": "text_classification"}).model.method == "head"  # left out: defaults
    assert parse_config(cfg.model_dump(mode="json")).model == cfg.model  # the served worker's round trip
    assert parse_config({**MIN, "task": "regression", "model": {}}).model is None


def test_a_new_family_only_declares_its_settings_schema(monkeypatch):
    # the tabular family given a model section: the config takes it, types it and names its keys
    from pydantic import BaseModel, ConfigDict, Field

    from modelloop.families import get_family

    class Trees(BaseModel):
        model_config = ConfigDict(extra="forbid")
        depth: int = Field(6, ge=1)

    monkeypatch.setattr(type(get_family("tabular")), "settings_schema", lambda self: Trees)
    assert parse_config({**MIN, "task": "regression", "model": {"depth": 3}}).model == Trees(depth=3)
    assert parse_config(MIN).model == Trees()  # a left-out task: the family that serves it until inferred
    with pytest.raises(ConfigError) as exc:
        parse_config({**MIN, "task": "classification", "model": {"dpth": 3, "depth": 0}})
    assert str(exc.value).splitlines() == [
        "model.depth: must be greater than or equal to 1, got 0",
        "model.dpth: unknown key (did you mean 'depth'?); allowed: depth"]


def test_a_typo_in_the_model_section_exits_2_naming_the_key(tmp_path, capsys):
    from clirun import cli

    (tmp_path / "modelloop.yaml").write_text("task: text_classification\ndata: {source: a.jsonl, target: y, "
                                             "text: t}\nmodel: {methd: lora}\n")
    code, out, err = cli(["ingest"], capsys, tmp_path)
    assert code == 2 and "model.methd: unknown key (did you mean 'method'?)" in err + out
    assert "Traceback" not in err + out
