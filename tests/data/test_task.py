"""The task a config leaves out is inferred from the target at ingest, stored, and followed later."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from modelloop import Project, parse_config
from modelloop.data.task import infer_task
from modelloop.errors import ConfigError

RNG = np.random.default_rng(0)
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "modelloop" / "examples"


@pytest.mark.parametrize("values, task", [
    (RNG.normal(size=500), "regression"),                         # 500 distinct floats
    (np.round(RNG.normal(size=300), 1), "regression"),            # fractional, few values
    (RNG.integers(0, 3, 500), "classification"),                  # 3 integers
    (RNG.integers(0, 1_000_000, 500), "regression"),              # integers, many values
    (RNG.integers(1, 6, 500).astype(float), "classification"),    # ratings read as floats (a NaN in the CSV)
    (RNG.choice(["low", "mid", "high"], 500), "classification"),  # text
    (RNG.choice([True, False], 500), "classification"),
    (np.arange(30) % 2 * 7.5, "classification"),                  # two values, whatever they are
])
def test_infer_task_follows_autogluon_s_rules(values, task):
    got = infer_task(pd.Series(values), "y")
    assert got.task == task and "target 'y'" in got.reason
    # a Polars target (ingest of a Parquet source) is read alike, gaps and infinities included
    with_gaps = np.append(values, [None, np.inf] if np.asarray(values).dtype.kind == "f" else [None])
    assert infer_task(pl.Series(with_gaps.tolist()), "y") == infer_task(pd.Series(with_gaps.tolist()), "y")


def _project(tmp_path, y, **config) -> Project:
    n = len(y)
    pd.DataFrame({"x": RNG.normal(size=n), "c": RNG.choice(["a", "b"], n), "y": y}).to_csv(tmp_path / "d.csv",
                                                                                          index=False)
    return Project(parse_config({"data": {"source": "d.csv", "target": "y"}, **config}, root=tmp_path))


@pytest.mark.parametrize("y, task, split, metric", [
    (RNG.normal(size=400) * 1e5, "regression", "random", "rmse"),
    (RNG.integers(0, 3, 400), "classification", "stratified", "f1_macro"),
    (RNG.choice(["churn", "stay"], 400), "classification", "stratified", "f1_macro"),
])
def test_ingest_infers_the_task_and_later_commands_follow_it(tmp_path, y, task, split, metric):
    p = _project(tmp_path, y)
    ds = p.ingest()
    assert ds["source"]["task"]["task"] == task
    assert (p.config.task, p.config.split.strategy, p.config.metric) == (task, split, metric)
    later = Project(parse_config({"data": {"source": "d.csv", "target": "y"}}, root=tmp_path))
    assert later.status()["metric"] == metric          # a new process reads what ingest recorded
    assert later.config.task_inferred == ds["source"]["task"]


def test_a_cleaned_version_says_its_task_was_inferred_at_an_earlier_ingest(tmp_path):
    """The inference's reason describes the ingested rows: after a clean merged ' yes ' into 'yes', train
    said "(3 distinct values)" of a 2-class target. It now says which version it was inferred on."""
    y = RNG.choice(["yes", "no"], 400).astype(object)
    y[:12] = " yes "
    pd.DataFrame({"x": RNG.normal(size=400), "y": y}).to_csv(tmp_path / "d.csv", index=False)
    raw = {"data": {"source": "d.csv", "target": "y"},
           "clean": {"rules": [{"action": "normalize_text", "columns": ["y"], "strip": True}]}}
    p = Project(parse_config(raw, root=tmp_path))
    p.ingest()
    assert "3 distinct" in p.config.task_inferred["reason"] and "at the ingest" not in p.config.task_inferred["reason"]
    p.clean()
    later = Project(parse_config(raw, root=tmp_path))
    assert later.status()["metric"] == "f1_macro"  # a new process settles the task from the current version
    assert later.config.task == "classification"
    assert later.config.task_inferred["reason"].endswith("(at the ingest of v1, which v2 derives from)")


def test_the_config_s_task_wins(tmp_path):
    p = _project(tmp_path, RNG.integers(0, 3, 400), task="regression")
    ds = p.ingest()
    assert "task" not in ds["source"] and p.config.task_inferred is None
    assert (p.config.task, p.config.split.strategy) == ("regression", "random")


def test_a_setting_that_contradicts_the_inference_fails_before_anything_is_stored(tmp_path):
    p = _project(tmp_path, RNG.normal(size=400), train={"metric": "f1_macro"})
    with pytest.raises(ConfigError, match=r"train.metric: .* for task regression, got .f1_macro. \(task regression was inferred: "
                                          r"target 'y' holds numbers with many distinct values"):
        p.ingest()
    assert not (tmp_path / ".modelloop" / "datasets").exists() or not any((tmp_path / ".modelloop" / "datasets").iterdir())



@pytest.mark.parametrize("kinds, task", [
    ({"review": "text"}, "text_classification"),
    ({"review": "text", "lang": "categorical", "shop": "categorical", "stars": "numeric"}, "text_classification"),
    ({"review": "text", "id": "identifier", **{f"x{i}": "numeric" for i in range(4)}}, "classification"),  # 4 others
    ({"review": "text", "title": "text"}, "classification"),       # which text? the user says (data.text)
    ({"x": "numeric", "c": "categorical"}, "classification"),
])
def test_a_table_of_texts_with_a_class_target_is_a_text_classification(kinds, task):
    got = infer_task(pd.Series(RNG.choice(["pos", "neg"], 200)), "y", kinds)
    assert got.task == task
    if task == "text_classification":
        assert "the free text of 'review'" in got.reason and "a tabular model would drop it" in got.reason
    # a number target stays a regression, whatever the columns
    assert infer_task(pd.Series(RNG.normal(size=200)), "y", kinds).task == "regression"


def test_ingest_of_reviews_infers_a_text_classifier_with_its_family_s_settings(tmp_path):
    """Reviews and their sentiment, task left out: read as a table, the tabular model dropped the text and
    answered one class for every row (test macro-F1 0.33 on the bundled reviews). Ingest now infers the text
    task, and the config takes the text family's default ``model:`` settings, as if it had named the task."""
    from modelloop.families import settings_schema_for

    words = ["great", "terrible", "fine", "broken", "love", "returned", "cheap", "perfect"]
    reviews = [" ".join(RNG.choice(words, 6)) + f" order {i}" for i in range(300)]
    pd.DataFrame({"review": reviews, "lang": RNG.choice(["en", "zh"], 300),
                  "sentiment": RNG.choice(["positive", "negative"], 300)}).to_csv(tmp_path / "r.csv", index=False)
    p = Project(parse_config({"data": {"source": "r.csv", "target": "sentiment"}}, root=tmp_path))
    assert p.config.model is None  # classification or regression: no family settings yet
    ds = p.ingest()
    assert ds["source"]["task"]["task"] == "text_classification"
    assert p.config.task == "text_classification" and isinstance(p.config.model, settings_schema_for(p.config.task))
    later = Project(parse_config({"data": {"source": "r.csv", "target": "sentiment"}}, root=tmp_path))
    assert later.status()["metric"] == "f1_macro" and later.config.task == "text_classification"
    assert isinstance(later.config.model, settings_schema_for("text_classification"))


def test_chinese_reviews_are_text_and_chinese_categories_stay_categories(tmp_path):
    """Chinese is written without spaces: a review (跑鞋退货了，外观不行。) was one "word" under 40 characters,
    so mostly-distinct reviews were read as an identifier and the bundled Chinese reviews, task left out,
    trained a tabular model with no feature ("the schema has no feature columns"). Now they are text and
    the task a text classification; a column of a few Chinese categories is still categorical."""
    from modelloop.data.sources import infer_schema

    zh = pd.read_json(EXAMPLES / "sentiment.jsonl", lines=True).query("lang == 'zh'")
    frame = pd.DataFrame({"评论": zh["review"].to_numpy(), "类别": RNG.choice(["电子产品及其配件", "家用电器", "服装鞋帽"], len(zh)),
                          "情感": zh["sentiment"].to_numpy()})
    kinds = infer_schema(frame, target="情感").columns
    assert (kinds["评论"], kinds["类别"]) == ("text", "categorical")
    assert infer_schema(pl.from_pandas(frame), target="情感").columns == kinds  # a Parquet source alike
    frame.to_csv(tmp_path / "评论.csv", index=False)
    p = Project(parse_config({"data": {"source": "评论.csv", "target": "情感"}}, root=tmp_path))
    assert p.ingest()["source"]["task"]["task"] == "text_classification"


def _image_folder(root, n=6):
    from PIL import Image

    for label, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (16, 16), colour).save(root / label / f"{i}.png")


def test_a_folder_of_images_with_the_task_left_out_is_an_image_classification(tmp_path):
    """``init --source photos --target label`` then ``run``: the folder was read as a folder of texts and
    ingest failed ("no non-empty .txt files in its class folders"). Its images now settle the task."""
    from modelloop.data.task import infer_source_task

    _image_folder(tmp_path / "photos")
    p = Project(parse_config({"data": {"source": "photos", "target": "label"}}, root=tmp_path))
    ds = p.ingest()
    assert ds["rows"] == 12 and ds["source"]["task"] == {
        "task": "image_classification", "reason": "data.source photos/ holds images (12 of its 12 files)"}
    later = Project(parse_config({"data": {"source": "photos", "target": "label"}}, root=tmp_path))
    assert later.status()["metric"] == "f1_macro" and later.config.task == "image_classification"
    # a folder of texts says nothing here (it is read as a table of texts, then inferred as one)
    (tmp_path / "notes" / "a").mkdir(parents=True)
    (tmp_path / "notes" / "a" / "1.txt").write_text("hello")
    assert infer_source_task(tmp_path / "notes") is None


def test_a_folder_of_texts_with_the_task_left_out_is_a_text_classification(tmp_path):
    for label, words in (("pos", "great love"), ("neg", "awful refund")):
        (tmp_path / "t" / label).mkdir(parents=True)
        for i in range(20):
            (tmp_path / "t" / label / f"{i}.txt").write_text(f"{words} item {i}")
    p = Project(parse_config({"data": {"source": "t", "target": "label"}}, root=tmp_path))
    assert p.ingest()["source"]["task"]["task"] == "text_classification"


def test_train_in_a_later_process_trains_the_inferred_family(tmp_path):
    """``modelloop ingest`` then ``modelloop train`` (two processes): train chose its family from the config's
    task before reading the dataset version, so a left-out task was the tabular family's whatever ingest
    had inferred ("the schema has no feature columns" on a table of texts). It settles the task first."""
    _image_folder(tmp_path / "photos", n=8)
    Project(parse_config({"data": {"source": "photos", "target": "label"}}, root=tmp_path)).ingest()
    later = Project(parse_config({"data": {"source": "photos", "target": "label"}, "train": {"budget": 5}},
                                 root=tmp_path))
    result = later.train(trials=1)
    assert result["family"] == "image" and result["task_inferred"]["task"] == "image_classification"


def test_a_text_target_of_answers_beside_a_text_column_is_a_text_generation():
    """Prompts and the answers to them, task left out: the answers read as 200 classes of a text classifier.
    Mostly distinct text in the target is answers to write (the generative family takes data.target as the
    completion and the one other column as the prompt)."""
    answers = pd.Series([f"Open Settings, choose item {i} and follow the steps." for i in range(200)])
    got = infer_task(answers, "response", {"prompt": "text"})
    assert got.task == "text_generation" and "200 distinct values in 200 rows" in got.reason
    assert infer_task(pl.Series(answers.tolist()), "response", {"prompt": "text"}).task == "text_generation"
    labels = pd.Series(RNG.choice(["refund", "shipping", "login"], 200))
    assert infer_task(labels, "intent", {"prompt": "text"}).task == "text_classification"  # few values: classes
    assert infer_task(answers.head(10), "response", {"prompt": "text"}).task == "text_classification"  # 10 rows


def test_a_table_of_image_paths_or_a_zip_of_images_is_an_image_classification(tmp_path):
    """The image family reads a table of image paths and labels, and a zip of images, too: read as a table,
    the path strings trained a text classifier (or a table of identifiers). Ingest now sees the images."""
    import zipfile

    from modelloop.data.task import infer_source_task

    _image_folder(tmp_path / "photos")
    rows = [{"file": f"photos/{c}/{i}.png", "label": c} for c in ("cat", "dog") for i in range(6)]
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    p = Project(parse_config({"data": {"source": "labels.csv", "target": "label"}}, root=tmp_path))
    ds = p.ingest()
    assert ds["rows"] == 12 and ds["source"]["task"] == {
        "task": "image_classification", "reason": "column 'file' of labels.csv holds image paths (12 of the first 12 "
                                                  "values)"}
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for f in sorted((tmp_path / "photos").rglob("*.png")):
            z.write(f, f.relative_to(tmp_path / "photos"))
    assert infer_source_task(tmp_path / "photos.zip").task == "image_classification"
    pd.DataFrame({"note": ["a.txt", "b.png", "c"], "y": [1, 2, 3]}).to_csv(tmp_path / "plain.csv", index=False)
    assert infer_source_task(tmp_path / "plain.csv") is None  # one path in three: a table
