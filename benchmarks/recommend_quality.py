"""Recommendation quality: the recommend family's search against a popularity baseline, `implicit`'s ALS
and scikit-surprise's SVD, in the same run, on the same split, scored by the same code.

    python benchmarks/recommend_quality.py [--movielens DIR] [--trials 12] [--budget 120] [--json]
    # peers: .venv-bench/bin/python (implicit, scikit-surprise); without them only popularity is compared

**Data.** With ``--movielens DIR``: MovieLens 100k's official ``u1.base`` / ``u1.test`` split (tab-separated
user, item, rating, timestamp; the file is not shipped: its licence forbids redistribution). Without it:
the bundled example (``modelloop.examples.recommend.generate_interactions``, seed 0), split at random
80/20 by interaction (seeded).

**Ranking** (NDCG@10, recall@10, precision@10): interactions read as implicit feedback. Ours is the family's
search on the shared driver (``trials`` trials of popularity, item- and user-kNN, ALS, BPR, content
(the items' own columns: the example's category, title and price; none for MovieLens) and the hybrid,
valued on a validation share of the train split), refitted on the whole train split. Peers: our popularity recommender with no
search, and ``implicit.als.AlternatingLeastSquares()`` with its defaults (100 factors, regularization 0.01,
alpha 1, 15 iterations; seeded, one thread, BLAS at one thread as implicit asks). Every model's scores go through ``RecommenderModel.evaluate_interactions``: each user's
training items excluded, unknown users ranked by popularity, every held-out item relevant.

**Rating** (RMSE, MAE): ours is the search with ``train.metric: rmse`` over popularity (the biased
baseline), item-kNN and biased MF; the peer is ``surprise.SVD(random_state=0)`` with its defaults.

Printed: each figure, ours / best peer for NDCG@10 (goal: >= 1.1) and ours / SVD for RMSE (goal: <= 1.0).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelloop.data.schema import Schema
from modelloop.families.recommend.content import item_matrix
from modelloop.families.recommend.data import Interactions, item_features
from modelloop.families.recommend.model import RecommenderModel
from modelloop.families.recommend.kinds import build_recommender
from modelloop.families.recommend.search import RecommendSearch, run_recommend_search

K = 10


def load(movielens: str | None, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``(train, test, name)`` with columns user, item, rating (ids as text)."""
    if movielens:
        names = ["user", "item", "rating", "ts"]
        read = lambda f: pd.read_csv(Path(movielens) / f, sep="\t", names=names, dtype={"user": str, "item": str})  # noqa: E731
        return read("u1.base"), read("u1.test"), "movielens-100k u1"
    from modelloop.examples.recommend import generate_interactions

    df = generate_interactions(seed=0)
    test = np.random.default_rng(seed).random(len(df)) < 0.2
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True), "generated example (random 80/20)"


class _Factors:
    """A peer's fitted factors as a recommender (``user_scores`` / ``predict``), for the shared evaluation."""

    baseline_ = None

    def __init__(self, users: np.ndarray, items: np.ndarray):
        self.U, self.V = users, items

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return self.U[users] @ self.V.T

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.einsum("nf,nf->n", self.U[u], self.V[i])


def _evaluate(train: pd.DataFrame, test: pd.DataFrame, explicit: bool, recommender: Any, name: str) -> dict[str, Any]:
    inter = Interactions.from_frame(pd.concat([train, test], ignore_index=True), "user", "item",
                                    "rating" if explicit else None)
    model = RecommenderModel.build(schema=Schema(columns={}), columns=("user", "item", "rating" if explicit else None,
                                                                       None),
                                   inter=inter, train_rows=np.arange(len(train)), recommender=recommender, name=name,
                                   params={}, k=K, features={}, selection={})
    return model.evaluate_interactions(test)["metrics"]


def _matrix(train: pd.DataFrame, test: pd.DataFrame, explicit: bool) -> tuple[Interactions, Any]:
    inter = Interactions.from_frame(pd.concat([train, test], ignore_index=True), "user", "item",
                                    "rating" if explicit else None)
    rows = np.arange(len(train))
    return Interactions(inter.users, inter.items, inter.u[rows], inter.i[rows], inter.values[rows]), inter


def ours(train: pd.DataFrame, test: pd.DataFrame, *, explicit: bool, models: list[str], metric: str, trials: int,
         budget: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    train_inter, inter = _matrix(train, test, explicit)
    features = item_features(pd.concat([train, test], ignore_index=True), "item", {"user", "rating", "ts"})
    job = RecommendSearch(train_inter, explicit, models, metric, K, 15, seed, budget, trials,
                          side=item_matrix(features, inter.items))
    with tempfile.TemporaryDirectory() as tmp:
        result = run_recommend_search(job, storage=f"sqlite:///{tmp}/optuna.db", study_name="bench")
    best = result.best_single
    fitted = job.fit(best.family, best.params)
    return _evaluate(train, test, explicit, fitted, best.family), {"recommender": best.family, "params": best.params,
                                                                   "trials": len(result.trials)}


def popularity(train: pd.DataFrame, test: pd.DataFrame, explicit: bool) -> dict[str, Any]:
    train_inter, _ = _matrix(train, test, explicit)
    rec = build_recommender("popularity", {}).fit(train_inter.matrix(explicit=explicit), explicit=explicit, seed=0,
                                                  epochs=1)
    return _evaluate(train, test, explicit, rec, "popularity")


def implicit_als(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict[str, Any] | None:
    try:
        from implicit.als import AlternatingLeastSquares
    except ImportError:
        return None
    train_inter, _ = _matrix(train, test, False)
    user_items = train_inter.matrix().astype(np.float32).tocsr()
    import threadpoolctl

    with threadpoolctl.threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(random_state=seed, num_threads=1)
        als.fit(user_items, show_progress=False)
    to_numpy = lambda a: a.to_numpy() if hasattr(a, "to_numpy") else np.asarray(a)  # noqa: E731
    return _evaluate(train, test, False, _Factors(to_numpy(als.user_factors), to_numpy(als.item_factors)),
                     "implicit-als")


def surprise_svd(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any] | None:
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return None
    low, high = float(train["rating"].min()), float(train["rating"].max())
    data = Dataset.load_from_df(train[["user", "item", "rating"]], Reader(rating_scale=(low, high)))
    svd = SVD(random_state=0)
    svd.fit(data.build_full_trainset())
    predicted = np.array([svd.predict(u, i).est for u, i in zip(test["user"], test["item"], strict=True)])
    err = predicted - test["rating"].to_numpy(dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--movielens", help="folder holding MovieLens 100k's u1.base and u1.test")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds for each of our two searches")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    train, test, name = load(args.movielens, args.seed)
    out: dict[str, Any] = {"data": name, "train": len(train), "test": len(test), "k": K, "ranking": {}, "rating": {}}
    started = time.perf_counter()
    figures, chosen = ours(train, test, explicit=False, models=["popularity", "itemknn", "userknn", "als", "bpr", "content", "hybrid"],
                           metric="ndcg",
                           trials=args.trials, budget=args.budget, seed=args.seed)
    out["ranking"]["ours"] = {**figures, **chosen, "seconds": round(time.perf_counter() - started, 1)}
    out["ranking"]["popularity"] = popularity(train, test, False)
    started = time.perf_counter()
    als = implicit_als(train, test, args.seed)
    if als is not None:
        out["ranking"]["implicit_als"] = {**als, "seconds": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    figures, chosen = ours(train, test, explicit=True, models=["popularity", "itemknn", "mf"], metric="rmse",
                           trials=args.trials, budget=args.budget, seed=args.seed)
    out["rating"]["ours"] = {"rmse": figures["rmse"], "mae": figures["mae"], **chosen,
                             "seconds": round(time.perf_counter() - started, 1)}
    svd = surprise_svd(train, test)
    if svd is not None:
        out["rating"]["surprise_svd"] = svd
    peers = {k: v["ndcg"] for k, v in out["ranking"].items() if k != "ours"}
    best = max(peers, key=lambda k: peers[k])
    out["ratios"] = {"ndcg@10 ours / best peer": round(out["ranking"]["ours"]["ndcg"] / peers[best], 3),
                     "best peer": best}
    if svd is not None:
        out["ratios"]["rmse ours / surprise SVD"] = round(out["rating"]["ours"]["rmse"] / svd["rmse"], 3)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return
    print(f"{name}: {len(train)} train, {len(test)} test interactions, k = {K}")
    for model, f in out["ranking"].items():
        print(f"  ranking {model:14s} ndcg {f['ndcg']:.4f}  recall {f['recall']:.4f}  precision {f['precision']:.4f}"
              + (f"  ({f['recommender']} {f['params']})" if "recommender" in f else ""))
    for model, f in out["rating"].items():
        print(f"  rating  {model:14s} rmse {f['rmse']:.4f}  mae {f['mae']:.4f}")
    for key, value in out["ratios"].items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
