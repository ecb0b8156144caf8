"""The recommenders and their metrics: the figures by hand on small cases, training items never counted,
each recommender learning the example's taste structure (better than chance; ratings better than the
mean), seeded determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelloop.data.schema import Schema
from modelloop.examples.recommend import generate_interactions
from modelloop.families.recommend.content import item_matrix
from modelloop.families.recommend.data import Interactions, item_features
from modelloop.families.recommend.metrics import ranking_metrics, top_k
from modelloop.families.recommend.model import RecommenderModel
from modelloop.families.recommend.kinds import DEFAULTS, build_recommender


def test_top_k_is_best_first_breaks_ties_by_position_and_never_picks_excluded():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf], [-np.inf, -np.inf, 1.0, -np.inf, -np.inf]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [2, -1, -1]]
    # one row (a served request): every item tied with the k-th score is a candidate, the lowest positions win
    tied = np.array([[0.0, 2.0, 1.0, 1.0, 1.0, 3.0, 1.0, 1.0]])
    assert top_k(tied, 4).tolist() == [[5, 1, 2, 3]]


def test_ranking_figures_by_hand():
    scores = np.array([[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]])
    truth = [np.array([0]), np.array([1, 3])]  # user 0: hit at rank 1; user 1: one hit at rank 2
    figures, per_user = ranking_metrics(np.array([0, 1]), truth, lambda users: scores[users], k=2,
                                        counts=np.array([4.0, 2.0, 1.0, 1.0]), n_train_users=4)
    assert figures["precision"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert figures["recall"] == pytest.approx((1 + 1 / 2) / 2)
    assert figures["hit_rate"] == 1.0
    ideal = 1 + 1 / np.log2(3)
    assert per_user.tolist() == pytest.approx([1.0, (1 / np.log2(3)) / ideal])
    assert figures["map"] == pytest.approx((1.0 + 0.5 / 2) / 2)
    assert figures["coverage"] == 0.5  # items 0 and 1 of 4 were ever listed
    assert figures["novelty"] == pytest.approx(np.mean([0.0, 1.0, 0.0, 1.0]))  # -log2(4/4), -log2(2/4)


@pytest.fixture(scope="module")
def shop():
    df = generate_interactions(users=120, items=60, per_user=12, seed=1)
    test = np.random.default_rng(0).random(len(df)) < 0.2
    return df, np.flatnonzero(~test), df[test].reset_index(drop=True)


def _model(df, train_rows, name, explicit, seed=0):
    inter = Interactions.from_frame(df, "user", "item", "rating" if explicit else None)
    rows = Interactions(inter.users, inter.items, inter.u[train_rows], inter.i[train_rows], inter.values[train_rows])
    side = item_matrix(item_features(df, "item", {"user", "rating", "ts"}), inter.items)
    rec = build_recommender(name, DEFAULTS[name]).fit(rows.matrix(explicit=explicit), explicit=explicit, seed=seed,
                                                      epochs=8, side=side)
    return RecommenderModel.build(schema=Schema(columns={}), columns=("user", "item", "rating" if explicit else None,
                                                                      None),
                                  inter=inter, train_rows=train_rows, recommender=rec, name=name, params={}, k=10,
                                  features={}, selection={})


class _Random:
    baseline_ = None

    def __init__(self, n_items):
        self.rng, self.n = np.random.default_rng(0), n_items

    def user_scores(self, users):
        return self.rng.random((len(users), self.n))


@pytest.mark.parametrize("name", ["popularity", "itemknn", "userknn", "als", "bpr", "hybrid"])
def test_each_recommender_ranks_held_out_items_better_than_chance(shop, name):
    df, train_rows, test = shop
    model = _model(df, train_rows, name, explicit=False)
    chance = _model(df, train_rows, "popularity", explicit=False)
    chance.rec_ = _Random(len(chance.items_))
    assert model.evaluate_interactions(test)["metrics"]["ndcg"] > 1.5 * chance.evaluate_interactions(test)["metrics"]["ndcg"]


def test_biased_mf_and_itemknn_predict_ratings_better_than_the_mean(shop):
    df, train_rows, test = shop
    mean = df["rating"].iloc[train_rows].mean()
    rmse_of_mean = float(np.sqrt(np.mean((test["rating"] - mean) ** 2)))
    for name in ("mf", "itemknn", "popularity"):
        assert _model(df, train_rows, name, explicit=True).evaluate_interactions(test)["metrics"]["rmse"] < rmse_of_mean


def test_a_users_training_items_are_never_recommended_nor_counted(shop):
    df, train_rows, test = shop
    model = _model(df, train_rows, "itemknn", explicit=False)
    seen_pairs = test.iloc[:5].copy()  # held-out rows that repeat a training pair count for nothing
    train = df.iloc[train_rows]
    seen_pairs["item"] = [train["item"][train["user"] == u].iloc[0] for u in seen_pairs["user"]]
    assert model.evaluate_interactions(seen_pairs)["users"] == 0
    for u in range(5):
        listed = model.masked_scores(np.array([u]))[0]
        assert np.isneginf(listed[model.seen(u)]).all()


def test_content_recommends_the_categories_a_user_took(shop):
    df, train_rows, _ = shop
    model = _model(df, train_rows, "content", explicit=False)
    category = dict(zip(df["item"], df["category"], strict=False))
    for u in range(5):
        took = [category[str(model.items_[p])] for p in model.seen(u)]
        top = [category[r["item"]] for r in model.recommend(str(model.users_[u]), 5)[0]]
        assert set(top) <= set(took), (took, top)  # the user's own categories, not the popular ones


@pytest.mark.parametrize("name", ["mf", "bpr", "als", "hybrid"])
def test_a_seeded_fit_is_reproducible(shop, name):
    df, train_rows, _ = shop
    explicit = name == "mf"
    a, b = (_model(df, train_rows, name, explicit=explicit, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a.rec_.user_scores(np.arange(10)), b.rec_.user_scores(np.arange(10)))
    frame = pd.DataFrame({"user": ["u1", "nobody"], "item": ["i2", "i3"]})
    np.testing.assert_array_equal(a.predict(frame), b.predict(frame))
