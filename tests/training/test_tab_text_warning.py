"""A tabular model drops free text: the train result says so and how to use it, instead of leaving a user
to wonder why the words in a column never mattered."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelloop import Project, parse_config
from modelloop.families.tabular.task import text_warning


def test_text_warning_names_the_text_columns_and_the_settings_that_use_them():
    kinds = {"amount": "numeric", "note": "text", "memo": "text", "id": "identifier", "y": "text"}
    message = text_warning(kinds, {"y", "id"})
    assert message is not None and message.startswith("'note', 'memo' hold free text")
    assert "task: text_classification and data.text: note" in message and "{note: categorical}" in message
    assert text_warning({"amount": "numeric", "y": "text"}, {"y", None}) is None  # the target is not a feature


def test_training_a_table_with_a_text_column_warns_that_the_text_is_not_read(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    words = ["late", "refund", "gift", "urgent", "new", "card", "travel", "shop"]
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(5)})
    df["note"] = [" ".join(rng.choice(words, 5)) + f" #{i}" for i in range(n)]
    df["y"] = (df["x0"] + rng.normal(0, 0.5, n) > 0).astype(int)
    df.to_csv(tmp_path / "t.csv", index=False)
    p = Project(parse_config({"data": {"source": "t.csv", "target": "y"},
                              "train": {"budget": 10, "trials": 2, "families": ["linear"]}}, root=tmp_path))
    p.ingest()
    assert p.config.task == "classification"  # five numbers beside the text: a table, not a text task
    result = p.train()
    assert any("'note' holds free text, which a tabular model does not read" in w for w in result["warnings"])


def test_interactions_warning_knows_a_ratings_log_from_a_table_with_ids():
    from modelloop.families.tabular.task import interactions_warning

    log = {"userId": "numeric", "movieId": "numeric", "rating": "numeric", "timestamp": "numeric"}
    message = interactions_warning(log, {"rating", None}, "rating")
    assert message is not None and "(userId x movieId)" in message
    assert "task: recommendation with data.user: userId, data.item: movieId and data.rating: rating" in message
    wide = {"customer_id": "identifier", "product_id": "categorical", **{f"x{i}": "numeric" for i in range(3)}}
    assert interactions_warning(wide, {"returned", None}, "returned") is None  # a table that has ids, not a log
    assert interactions_warning({"user": "categorical", "amount": "numeric"}, {None}, "y") is None


def test_training_on_a_ratings_log_suggests_a_recommender(tmp_path):
    """Users' ratings of items with the task left out train as classes of the rating from two id
    columns read as numbers: at chance, and nothing said why. The result now names the recommender."""
    rng = np.random.default_rng(1)
    pd.DataFrame({"user_id": rng.integers(0, 60, 400), "item_id": rng.integers(0, 40, 400),
                  "rating": rng.integers(1, 6, 400)}).to_csv(tmp_path / "ratings.csv", index=False)
    p = Project(parse_config({"data": {"source": "ratings.csv", "target": "rating"},
                              "train": {"budget": 10, "trials": 2, "families": ["linear"]}}, root=tmp_path))
    p.ingest()
    result = p.train()
    assert any("set task: recommendation with data.user: user_id, data.item: item_id" in w for w in result["warnings"])
