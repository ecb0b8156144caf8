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


def test_a_side_table_without_its_id_column_is_refused_at_ingest_naming_the_key(tmp_path):
    project, _ = _project(tmp_path)
    pd.DataFrame({"sku": ["i1"], "brand": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    project.workspace.config.data.item_features = "bad.csv"
    with pytest.raises(DataError, match=r"^data\.item_features: column 'item' \(the id\) is not in bad\.csv"):
        project.ingest()


def test_side_tables_are_kept_with_the_version_and_a_retrain_reads_them_not_the_file(tmp_path):
    """The dataset version holds a copy of each side table (manifest ``side_tables``); after ingest the
    item file is rewritten and the user file deleted, and a feedback merge (what `modelloop retrain`
    trains on) still carries and trains on the ingested tables."""
    from modelloop.data.snapshot import read_manifest
    from modelloop.families import family_of
    from modelloop.feedback.interactions import append_interaction
    from modelloop.feedback.retrain import merge_feedback

    project, ratings = _project(tmp_path)
    ws = project.workspace
    version = ws.catalog.latest_dataset("shop")
    kept = read_manifest(version["path"])["side_tables"]
    assert set(kept) == {"item_features", "user_features"} and kept["item_features"]["source"] == "items.csv"
    summary = project.train(trials=1)
    champion = ws.catalog.get_model("shop", summary["model"]["version"])
    pd.DataFrame({"item": ["i1"], "category": ["toys"], "brand": ["other"]}).to_csv(tmp_path / "items.csv", index=False)
    (tmp_path / "users.csv").unlink()
    for n in range(4):
        append_interaction(ws, {"at": f"2026-01-0{n + 1}T10:00:00", "user": "u1", "item": f"i{n + 2}",
                                "event": "click", "request_id": f"r{n}"})
    merged = merge_feedback(ws, champion)
    assert merged is not None and read_manifest(merged["path"])["side_tables"] == kept
    retrained = project.train(dataset=merged["id"], trials=1)
    row = ws.catalog.get_model("shop", retrained["model"]["version"])
    model = family_of(row).load(ws, row)
    assert "i_new" in model.item_pos_  # the ingested item table, not the rewritten one
    assert model.recommend("newcomer", 5)[1] == "similar_users"  # the deleted user table still answers
    assert model.features_["brand"]["i1"] == "acme"
