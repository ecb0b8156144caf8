"""The family registry: tasks to families, lazy loading, and an install hint for a missing dependency."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelloop import families
from modelloop.errors import ConfigError
from modelloop.families import FAMILIES, TASKS, Family, FamilySpec, FamilyUnavailable, family_for_task, get_family


def test_every_config_task_has_one_family_and_each_family_implements_the_protocol():
    assert TASKS == {"classification": "tabular", "regression": "tabular", "text_classification": "text", "text_generation": "generative",
                     "image_classification": "image", "anomaly_detection": "anomaly", "recommendation": "recommend"}
    for name in FAMILIES:
        family = get_family(name)
        assert isinstance(family, Family) and family.name == name
        assert set(family.tasks) == {t for t, f in TASKS.items() if f == name}
    assert family_for_task(None).name == "tabular"  # a left-out task is inferred among tabular ones


def test_an_unknown_task_names_the_registered_ones():
    with pytest.raises(ConfigError, match="task: must be one of classification, regression, text_classification"):
        family_for_task("speech_recognition")


def test_a_family_whose_dependency_is_missing_answers_with_the_install_command(monkeypatch):
    spec = FamilySpec("vision", "modelloop.families.vision", ("image_classification",),
                      requires=("numpy", "no_such_module_xyz"), extra="image")
    monkeypatch.setitem(families.FAMILIES, "vision", spec)
    with pytest.raises(FamilyUnavailable) as err:
        get_family("vision")
    assert str(err.value) == ("the vision model family needs no_such_module_xyz, which is not installed; "
                              "install it with `pip install 'modelloop[image]'`")
    assert isinstance(err.value, ConfigError)  # the CLI's exit 2, one line


def test_importing_the_registry_loads_no_family_and_no_heavy_library():
    code = ("import sys, modelloop.families as f; f.family_for_task('classification');"
            "heavy = [m for m in ('sklearn', 'lightgbm', 'torch', 'transformers', 'onnxruntime') if m in sys.modules];"
            "print(heavy, 'modelloop.families.text' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False"


def test_search_spaces_are_read_off_the_searches():
    from modelloop.config import TrainConfig

    tab = get_family("tabular").search_space(TrainConfig(families=["lightgbm", "linear"]))
    assert tab["family"] == {"type": "categorical", "choices": ["lightgbm", "linear"]}
    assert tab["lgb_num_leaves"] == {"type": "int", "low": 7, "high": 255, "log": True}
    assert "linear_C" in tab and not any(k.startswith("xgb_") for k in tab)
    from modelloop.config import parse_config

    regression = get_family("tabular").search_space(parse_config(
        {"data": {"source": "d.csv", "target": "y"}, "task": "regression", "train": {"families": ["linear"]}}))
    assert set(regression) == {"family", "linear_alpha"}  # a regressor's linear model is tuned by alpha
    pytest.importorskip("torch")
    from modelloop.families.text.config import TextModelConfig

    lora = get_family("text").search_space(TextModelConfig(method="lora", classical=False))
    assert {"learning_rate", "epochs", "batch_size", "lora_r", "lora_alpha"} == set(lora)
    both = get_family("text").search_space(TextModelConfig(method="head"))  # TF-IDF is searched beside
    assert both["candidate"]["choices"] == ["encoder", "tfidf"] and {"head_c", "tfidf_c", "char_max"} <= set(both)
