"""Ranking and rating metrics of a recommender on held-out interactions.

A user's training items are excluded from their list before it is cut at ``k`` (recommending what the
user already took is no hit), so a model is never rewarded for echoing the train split. Every held-out
item of a user is relevant (for ratings too: what a user chose to rate is what they found), unless
``model.relevant_rating`` is set: then a held-out rating below it (a 1-star item the user disliked) is
no hit (``relevant``). A user with no relevant held-out item is left out of the means (the IR
convention: there is nothing to find for them).

* precision@k, recall@k, hit rate@k, NDCG@k (binary gains, log2 discount), MAP@k (average precision over
  ``min(k, relevant)``), averaged over test users;
* catalog coverage: the share of the catalog that appears in some user's top k;
* novelty: the mean self-information ``-log2(share of train users who took the item)`` of recommended
  items (higher: less obvious);
* RMSE and MAE of predicted ratings (explicit feedback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["ACTIVITY_BUCKETS", "RANKING_METRICS", "activity_bucket", "ranking_metrics", "rating_metrics",
           "relevant", "top_k"]

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")
# users by their number of training interactions: the report's per-bucket table
ACTIVITY_BUCKETS = (("cold", 0, 5), ("medium", 5, 20), ("heavy", 20, None))


def activity_bucket(n: int) -> str:
    return next(name for name, lo, hi in ACTIVITY_BUCKETS if n >= lo and (hi is None or n < hi))


def relevant(values: np.ndarray, relevant_rating: float | None) -> np.ndarray:
    """Which held-out interactions count as relevant: all (``relevant_rating`` None: implicit feedback,
    or ratings taken as chosen), else those rated at least ``relevant_rating`` (a missing rating: not)."""
    values = np.asarray(values, dtype=np.float64)
    if relevant_rating is None:
        return np.ones(len(values), dtype=bool)
    return np.nan_to_num(values, nan=-np.inf) >= relevant_rating


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column positions of the ``k`` highest scores of each row, best first (ties: the lower position);
    ``-inf`` (excluded) never chosen: such slots are -1."""
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.full((scores.shape[0], 0), -1, dtype=np.int64)
    if len(scores) == 1 and k < n:  # one user (a request): the 1-D partition, then every item tied with
        row = scores[0]               # the k-th score, so that ties at the cut go to the lower position
        kth = row[np.argpartition(-row, k - 1)[:k]].min()
        part = np.flatnonzero(row >= kth)
        top = part[np.argsort(-row[part], kind="stable")[:k]]
        return np.where(np.isneginf(row[top]), -1, top)[None, :]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    return np.where(np.isneginf(np.take_along_axis(scores, top, axis=1)), -1, top)


def ranking_metrics(users: np.ndarray, truth: Sequence[np.ndarray], scores_of: Callable[[np.ndarray], np.ndarray],
                    *, k: int, counts: np.ndarray, n_train_users: int,
                    batch: int = 1024) -> tuple[dict[str, float | None], np.ndarray]:
    """Figures over ``users`` (whatever ``scores_of`` takes: positions, indices) with their held-out items
    ``truth``; ``scores_of(users)`` gives their scores with training items already at ``-inf``. Returns the
    means and the per-user NDCG."""
    per = {m: np.zeros(len(users)) for m in RANKING_METRICS}
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    shown: set[int] = set()
    novelty: list[float] = []
    info = -np.log2(np.maximum(counts, 1.0) / max(n_train_users, 1))
    for start in range(0, len(users), batch):
        tops = top_k(scores_of(users[start:start + batch]), k)
        for row, top in enumerate(tops):
            n = start + row
            relevant = truth[n]
            top = top[top >= 0]
            shown.update(top.tolist())
            novelty.extend(info[top].tolist())
            hits = np.isin(top, relevant)
            h = int(hits.sum())
            per["precision"][n] = h / k
            per["recall"][n] = h / len(relevant) if len(relevant) else 0.0
            per["hit_rate"][n] = float(h > 0)
            ideal = discount[: min(len(relevant), k)].sum()
            per["ndcg"][n] = float(discount[: len(top)][hits].sum() / ideal) if ideal else 0.0
            precision_at = np.cumsum(hits) / np.arange(1, len(top) + 1)
            per["map"][n] = float((precision_at * hits).sum() / min(len(relevant), k)) if len(relevant) else 0.0
    out: dict[str, float | None] = {m: float(v.mean()) if len(users) else None for m, v in per.items()}
    out["coverage"] = len(shown) / len(counts) if len(counts) else None
    out["novelty"] = float(np.mean(novelty)) if novelty else None
    return out, per["ndcg"]


def rating_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    if not len(y):
        return {"rmse": None, "mae": None}
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}
