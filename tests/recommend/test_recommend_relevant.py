"""``model.relevant_rating``: a held-out rating below it (a 1-star item the user disliked) is no hit in the
ranking figures, users left with no relevant held-out item are out of the means; the setting is checked
in config (exit 2 naming it) and reaches the train evaluation, ``modelloop evaluate`` and the retrain
gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from clirun import cli
from recommend_toy import write_project

from modelloop.config import parse_config
from modelloop.data.schema import Schema
from modelloop.errors import ConfigError
from modelloop.families.recommend.data import Interactions
from modelloop.families.recommend.kinds import DEFAULTS, build_recommender
from modelloop.families.recommend.metrics import relevant
from modelloop.families.recommend.model import RecommenderModel
from modelloop.families.recommend.search import RecommendSearch


def _popularity(train: pd.DataFrame, test: pd.DataFrame, relevant_rating: float | None) -> RecommenderModel:
    df = pd.concat([train, test], ignore_index=True)
    inter = Interactions.from_frame(df, "user", "item", "rating")
    rows = np.arange(len(train))
    part = Interactions(inter.users, inter.items, inter.u[rows], inter.i[rows], inter.values[rows])
    rec = build_recommender("popularity", DEFAULTS["popularity"]).fit(part.matrix(explicit=True), explicit=True,
                                                                       seed=0, epochs=1, side=None)
    return RecommenderModel.build(schema=Schema(columns={}), columns=("user", "item", "rating", None), inter=inter,
                                  train_rows=rows, recommender=rec, name="popularity", params={}, k=2, features={},
                                  selection={}, relevant_rating=relevant_rating)


@pytest.fixture(scope="module")
def disliked():
    """Popularity ranks items a (10 users) > b (8) > c (6) > f (5) > d (3) > e (1); the test users took f
    in training, so a and b are their top 2. Each held out a, rated 1 star, and e, rated 5 (liked, never
    in their top 2); user u9 held out only the 1-star a."""
    train = pd.DataFrame({"user": [f"t{n}" for n in range(10) for _ in range(4 - n % 4)],
                          "item": [i for n in range(10) for i in "abcd"[: 4 - n % 4]]})
    users = [f"u{n}" for n in range(4)]
    train = pd.concat([train, pd.DataFrame({"user": ["t0", *users, "u9"], "item": ["e"] + ["f"] * 5})],
                      ignore_index=True)
    train["rating"] = 3.0
    test = pd.DataFrame({"user": [u for u in users for _ in range(2)] + ["u9"],
                         "item": ["a", "e"] * len(users) + ["a"],
                         "rating": [1.0, 5.0] * len(users) + [1.0]})
    return train, test


def test_a_disliked_item_recommended_is_no_hit_with_relevant_rating(disliked):
    train, test = disliked
    every = _popularity(train, test, None).evaluate_interactions(test)
    liked = _popularity(train, test, 4).evaluate_interactions(test)
    assert every["metrics"]["ndcg"] > 0 and every["metrics"]["hit_rate"] == 1.0  # the 1-star a counted as a hit
    for name in ("ndcg", "precision", "recall", "map", "hit_rate"):
        assert liked["metrics"][name] < every["metrics"][name], name
    assert liked["metrics"]["hit_rate"] == 0.0  # e (liked) is never in the top 2
    # u9 held out only a 1-star item: left out of the means rather than counted as a miss
    assert (every["users"], every["unscored_users"]) == (5, 0)
    assert (liked["users"], liked["unscored_users"], liked["relevant_rating"]) == (4, 1, 4)
    assert every["relevant_rating"] is None
    assert liked["metrics"]["rmse"] == every["metrics"]["rmse"]  # rating errors: every held-out rating


def test_relevant_keeps_ratings_at_or_above_the_threshold():
    values = np.array([1.0, 3.5, 4.0, 5.0, np.nan])
    assert relevant(values, None).tolist() == [True] * 5
    assert relevant(values, 4).tolist() == [False, False, True, True, False]


def test_the_search_values_trials_by_the_same_relevance(disliked):
    train, test = disliked
    df = pd.concat([train, test], ignore_index=True)
    inter = Interactions.from_frame(df, "user", "item", "rating")
    held = np.arange(len(train), len(df))
    values = {}
    for threshold in (None, 4):
        job = RecommendSearch(inter, True, ["popularity"], "ndcg", 2, 1, 0, None, 1, relevant_rating=threshold)
        rec = job.fit("popularity", {}, np.arange(len(train)))
        values[threshold] = job.value(rec, np.arange(len(train)), held)
    assert values[None] > 0 and values[4] == 0.0


def _raw(**model):
    return {"name": "shop", "task": "recommendation", "model": model,
            "data": {"source": "r.csv", "user": "u", "item": "i", "rating": "stars"}}


@pytest.mark.parametrize(("raw", "says"), [
    (_raw(relevant_ratings=4), r"model\.relevant_ratings: unknown key.*relevant_rating"),
    (_raw(relevant_rating="four"), r"^model\.relevant_rating: must be a number, .*\(e\.g\. 4 on 1-5 stars\), got \"four\"$"),
    (_raw(relevant_rating=True), r"^model\.relevant_rating: must be a number, .* got true$"),
    (_raw(relevant_rating=float("nan")), r"^model\.relevant_rating: must be a finite number"),
    ({**_raw(relevant_rating=4), "data": {"source": "r.csv", "user": "u", "item": "i"}},
     r"model\.relevant_rating: 4 needs data\.rating .*got data\.rating: null"),
])
def test_a_bad_relevant_rating_is_refused_naming_it(raw, says):
    with pytest.raises(ConfigError, match=says):
        parse_config(raw)


def test_relevant_rating_is_optional_and_takes_a_number():
    assert parse_config(_raw()).model.relevant_rating is None
    assert parse_config(_raw(relevant_rating=3.5)).model.relevant_rating == 3.5


def test_the_cli_exits_2_naming_the_setting(tmp_path, capsys):
    raw = write_project(tmp_path)  # implicit interactions: no rating to compare
    raw["model"]["relevant_rating"] = 4
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = cli(["run"], capsys, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert "model.relevant_rating: 4 needs data.rating" in err, err


def test_the_setting_reaches_train_evaluate_and_the_retrain_gate(tmp_path):
    from modelloop.data.ingest import ensure_split, load_dataset
    from modelloop.feedback.interactions import append_interaction
    from modelloop.project import Project
    from modelloop.registry import load_model, resolve_model

    raw = write_project(tmp_path, explicit=True, models=["popularity", "mf"])
    before = Project(parse_config(raw, root=tmp_path))
    before.ingest()
    first = before.train()  # every held-out interaction relevant
    assert first["scored_users"]["relevant_rating"] is None
    raw["model"]["relevant_rating"] = 4
    project = Project(parse_config(raw, root=tmp_path))
    # `modelloop evaluate` of the model trained before the setting judges it by the setting now
    judged = project.evaluate()
    assert judged["relevant_rating"] == 4 and judged["users"] < first["scored_users"]["users"]
    assert judged["unscored_users"] > 0 and judged["metrics"]["ndcg"] != first["test_metrics"]["ndcg"]
    second = project.train()
    assert second["scored_users"] == {"users": judged["users"], "unscored_users": judged["unscored_users"],
                                      "relevant_rating": 4}
    assert second["recommender"]["relevant_rating"] == 4 and "rating >= 4" in second["evaluation_summary"]
    project.workspace.catalog.set_alias("shop", first["model"]["version"], "production")
    for n in range(30):  # rated feedback; a retrain gates its challenger against the champion trained before
        append_interaction(project.workspace, {"user": f"u{n % 20}", "item": f"i{(n * 7) % 40}", "event": "rating",
                                               "value": 1 + n % 5, "at": f"2026-12-06T10:{n:02d}:00",
                                               "request_id": None, "served_by": None})
    decision = project.retrain()
    champion = load_model(project.workspace, resolve_model(project.workspace, f"shop:{first['model']['version']}"))
    row, df, _ = load_dataset(project.workspace, decision["dataset"])
    holdout = df[ensure_split(project.workspace, row, df) == "test"]
    old = champion.evaluate_interactions(holdout)["metrics"]["ndcg"]
    champion.relevant_rating_ = 4
    new = champion.evaluate_interactions(holdout)["metrics"]["ndcg"]
    assert old != new
    assert decision["champion"]["metrics"]["holdout"]["ndcg"] == pytest.approx(new)
