"""Side tables (data.item_features, data.user_features): an item no one took yet joins the catalog and
is scored by content; a user with features and no interaction gets what similar users like
(``fallback: similar_users``); a side table's columns can be filtered on; a bad side table exits 2."""

from __future__ import annotations

import pandas as pd
import pytest

from modelloop.config import parse_config
from modelloop.errors import DataError


def _project(tmp_path, **data):
    from recommend_toy import write_project

    from modelloop.project import Project

    raw = write_project(tmp_path, users=60, items=40, models=["content"])
    ratings = pd.read_csv(tmp_path / "ratings.csv")
    items = ratings.drop_duplicates("item")[["item", "category"]].assign(brand="acme")
    items = pd.concat([items, pd.DataFrame({"item": ["i_new"], "category": ["books"], "brand": ["acme"]})])
    items.to_csv(tmp_path / "items.csv", index=False)
    interests = ratings.groupby("user")["category"].agg(lambda c: c.value_counts().index[0])
    users = pd.DataFrame({"user": [*interests.index, "newcomer"], "interest": [*interests, "books"]})
    users.to_csv(tmp_path / "users.csv", index=False)
    raw["data"].update({"item_features": "items.csv", "user_features": "users.csv", **data})
    project = Project(parse_config(raw, root=tmp_path))
    project.ingest()
    return project, ratings


def test_side_tables_add_new_items_and_featured_new_users(tmp_path):
    from modelloop.families import family_of

    project, ratings = _project(tmp_path)
    summary = project.train(trials=2)
    ws = project.workspace
    row = ws.catalog.get_model("shop", summary["model"]["version"])
    model = family_of(row).load(ws, row)
    assert "i_new" in model.item_pos_ and model.counts_[model.item_pos_["i_new"]] == 0
    answer, fallback = model.recommend("newcomer", 5)
    assert fallback == "similar_users" and len(answer) == 5
    assert model.recommend("nobody-at-all", 5)[1] == "popular"
    listed = [r["item"] for r in model.recommend("u1", 40, where={"brand": "acme", "category": "books"})[0]]
    books = set(ratings["item"][ratings["category"] == "books"]) | {"i_new"}
    assert "i_new" in listed and set(listed) <= books  # side-table columns filter; the new item is listed
    book_lover = ratings.groupby("user")["category"].agg(lambda c: (c == "books").mean()).idxmax()
    top = [r["item"] for r in model.recommend(book_lover, 40)[0]]
    assert "i_new" in top[: len(books)]  # content scores the new item like any other book


def test_a_side_table_without_its_id_column_is_refused_naming_the_key(tmp_path):
    project, _ = _project(tmp_path)
    pd.DataFrame({"sku": ["i1"], "brand": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    project.workspace.config.data.item_features = "bad.csv"
    with pytest.raises(DataError, match=r"^data\.item_features: column 'item' \(the id\) is not in bad\.csv"):
        project.train(trials=1)
