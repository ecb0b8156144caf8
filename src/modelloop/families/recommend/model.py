"""The registered recommender: ids and their positions, the fitted recommender, what each user took in
training (a compact CSR index: ``seen_indptr_``/``seen_indices_``), item popularity (the fallback for a
user it never saw) and the item features a request may filter on.

``predict(frame)`` scores ``(user, item)`` records (a rating for explicit feedback, else the ranking
score): the records ``POST /v1/predict`` takes. ``recommend(user, k, ...)`` is ``POST /v1/recommend``:
the user's scores over the catalog, their training items and the excluded ones at ``-inf``, cut at ``k``
by a partial sort (``metrics.top_k``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ...data.schema import Schema
from ...errors import DataError
from ..heads import label_text
from .data import Interactions, id_text
from .metrics import ACTIVITY_BUCKETS, activity_bucket, ranking_metrics, rating_metrics, relevant, top_k

__all__ = ["NOT_TAKEN", "POPULAR", "SIMILAR_USERS", "RecommenderModel"]

POPULAR = "popular"  # the fallback an answer names when the user is unknown
SIMILAR_USERS = "similar_users"  # ... when only the user's features (a user side table) are known
NOT_TAKEN = frozenset({"impression", "skip", "dismiss"})  # interaction events that say a user did not take it


def _numeric(value: Any) -> bool:
    """A rating: a number, not a bool (JSON's true is no rating)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RecommenderModel:
    """Recommends items to users; ``classes_`` is None (its outputs are scores, not labels)."""

    task = "ranking"
    classes_ = None
    # learned state (``build``): the columns, ids and positions, the training index, the recommender
    schema: Schema
    user_col: str
    item_col: str
    rating_col: str | None
    time_col: str | None
    explicit_: bool
    users_: np.ndarray
    items_: np.ndarray
    user_pos_: dict[str, int]
    item_pos_: dict[str, int]
    seen_indptr_: np.ndarray
    seen_indices_: np.ndarray
    counts_: np.ndarray
    n_train_users_: int
    rec_: Any
    name_: str
    params_: dict[str, Any]
    k_: int
    relevant_rating_: float | None  # model.relevant_rating: held-out ratings below it are no hit (None: all are)
    features_: dict[str, dict[str, Any]]
    selection_: dict[str, Any]
    cold_pos_: dict[str, int]   # users of the user side table without interactions -> their feature row
    user_matrix_: Any           # the users' feature rows (known users first), or None without a side table

    @classmethod
    def build(cls, *, schema: Schema, columns: tuple[str, str, str | None, str | None], inter: Interactions,
              train_rows: np.ndarray, recommender: Any, name: str, params: dict[str, Any], k: int,
              features: dict[str, dict[str, Any]], selection: dict[str, Any],
              user_features: dict[str, dict[str, Any]] | None = None,
              side_users: list[str] | None = None, relevant_rating: float | None = None) -> RecommenderModel:
        model = cls()
        model.schema = schema
        model.user_col, model.item_col, model.rating_col, model.time_col = columns
        model.explicit_ = model.rating_col is not None
        model.users_, model.items_ = inter.users, inter.items
        model.user_pos_ = {u: n for n, u in enumerate(inter.users.tolist())}
        model.item_pos_ = {i: n for n, i in enumerate(inter.items.tolist())}
        seen = inter.matrix(train_rows, explicit=model.explicit_)
        seen.sort_indices()
        model.seen_indptr_, model.seen_indices_ = seen.indptr.astype(np.int64), seen.indices.astype(np.int32)
        model.counts_ = np.asarray((seen > 0).sum(axis=0)).ravel().astype(np.float64)
        model.n_train_users_ = int((np.diff(model.seen_indptr_) > 0).sum())
        model.rec_, model.name_, model.params_, model.k_ = recommender, name, dict(params), int(k)
        model.relevant_rating_ = relevant_rating
        model.features_ = features
        model.selection_ = dict(selection)
        model.with_user_features(user_features or {}, side_users or [])
        return model

    def with_user_features(self, features: dict[str, dict[str, Any]], side_users: list[str]) -> None:
        """Keep the users' feature rows (a user side table): a user with features and no interaction is
        recommended what the training users most like them are (``fallback: similar_users``)."""
        from .content import item_matrix

        cold = [u for u in dict.fromkeys(side_users) if u not in self.user_pos_]
        self.cold_pos_ = {u: len(self.users_) + n for n, u in enumerate(cold)}
        self.user_matrix_ = item_matrix(features, np.concatenate([self.users_, np.asarray(cold, dtype=object)])) \
            if features else None

    def similar_user_scores(self, user: str, neighbours: int = 20) -> np.ndarray | None:
        """Mean scores of the ``neighbours`` training users whose features are most like ``user``'s (a
        user of the side table without interactions); None when there is no such user."""
        matrix: Any = getattr(self, "user_matrix_", None)  # a model registered before side tables has none
        row = self.cold_pos_.get(user) if matrix is not None else None
        if row is None:
            return None
        sims = np.asarray((matrix[: len(self.users_)] @ matrix[row].T).todense()).ravel()
        near = np.argsort(-sims, kind="stable")[:neighbours]
        near = near[sims[near] > 0]
        if not len(near):
            return None
        return np.mean([self.user_row(int(v)) for v in near.tolist()], axis=0)

    # ---- scoring ---------------------------------------------------------------------------------
    def seen(self, u: int) -> np.ndarray:
        """The item positions user ``u`` took in training."""
        return self.seen_indices_[self.seen_indptr_[u]:self.seen_indptr_[u + 1]]

    def precompute(self, max_cells: int = 20_000_000, keep: int = 100) -> bool:
        """Score every known user over the catalog once (the served path then reads a row) when users x
        items is at most ``max_cells`` (160 MB of float64); a larger model scores each request. Also rank,
        once, each known user's ``keep`` best unseen items and the ``keep`` most popular (``ranked``)."""
        if len(self.users_) * len(self.items_) > max_cells:
            return False
        self.scores_ = np.vstack([np.asarray(self.rec_.user_scores(block), dtype=np.float64)
                                  for block in np.array_split(np.arange(len(self.users_)),
                                                              max(1, len(self.users_) // 1024))])
        keep = min(max(int(keep), 1), len(self.items_))
        ranked = np.empty((len(self.users_), keep), dtype=np.int32)
        for block in np.array_split(np.arange(len(self.users_)), max(1, len(self.users_) // 1024)):
            scores = self.scores_[block]  # a copy (fancy indexing): the seen items go to -inf in it only
            for row, u in enumerate(block.tolist()):
                scores[row, self.seen(u)] = -np.inf
            # a stable sort of the negated scores: best first, ties to the lower position (``top_k``'s order)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
            ranked[block] = np.where(np.isneginf(np.take_along_axis(scores, top, axis=1)), -1, top)
        self.ranked_ = ranked
        self.ranked_popular_ = np.argsort(-self.popular_scores(), kind="stable")[:keep].astype(np.int32)
        self._answers: dict[int, list[dict[str, Any]]] = {}
        return True

    def items_with(self, feature: str, value: Any) -> tuple[np.ndarray, frozenset[str]]:
        """The positions and ids of the items whose ``feature`` is ``value`` (compared as text), from an
        index made on the feature's first use (a DataError naming an unknown feature, ``filter.<name>``)."""
        index = self.__dict__.setdefault("_feature_index", {})
        by_value = index.get(feature)
        if by_value is None:
            values = self.features_.get(feature)
            if values is None:
                raise DataError(f"filter.{feature}: not an item feature; allowed: {', '.join(self.features_) or 'none'}")
            groups: dict[str, list[str]] = {}
            for item, v in values.items():
                groups.setdefault(label_text(v), []).append(item)
            by_value = index[feature] = {
                text: (np.array([self.item_pos_[i] for i in ids], dtype=np.int64), frozenset(ids))
                for text, ids in groups.items()}
        return by_value.get(label_text(value), (np.zeros(0, dtype=np.int64), frozenset()))

    def ranked(self, u: int, k: int, exclude: Iterable[Any] = (),
               allowed: frozenset[str] | None = None) -> list[dict[str, Any]] | None:
        """The top ``k`` unseen items of known user ``u`` (-1: the popular fallback's) from the lists
        ranked once by ``precompute``, ``exclude`` (item ids) left out and only the ``allowed`` ids (a
        filter) kept as the list is read; None when those lists were not made or run out before ``k``
        (``recommend`` then scores the whole catalog). The answer's dicts are made once per user and
        shared: never change them."""
        answers = getattr(self, "_answers", None)
        if answers is None:
            return None
        if k < 1:
            return []
        ranked = answers.get(u)
        if ranked is None:
            if len(answers) * self.ranked_.shape[1] >= 500_000:  # at most ~120 MB of answer dicts kept
                answers.clear()
            top = self.ranked_popular_ if u < 0 else self.ranked_[u]
            top = top[top >= 0]
            scores = (self.popular_scores() if u < 0 else self.scores_[u])[top].round(6).tolist()
            ranked = answers[u] = [{"item": i, "score": v}
                                   for i, v in zip(self.items_[top].tolist(), scores, strict=True)]
        complete = len(ranked) < (self.ranked_.shape[1])  # every unseen item is in the list
        if exclude or allowed is not None:
            drop = {label_text(item) for item in exclude}
            out = [answer for answer in ranked
                   if answer["item"] not in drop and (allowed is None or answer["item"] in allowed)][:k]
        else:
            out = ranked[:k]
        return out if len(out) == k or complete or len(ranked) == len(self.items_) else None

    def user_row(self, u: int) -> np.ndarray:
        """A fresh copy of user ``u``'s scores over the catalog (precomputed, or computed now)."""
        table = getattr(self, "scores_", None)
        if table is not None:
            return table[u].copy()
        return np.asarray(self.rec_.user_scores(np.array([u])), dtype=np.float64)[0]

    def masked_scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of known users (positions) over the catalog, each user's training items at ``-inf``."""
        scores = np.asarray(self.rec_.user_scores(users), dtype=np.float64)
        for row, u in enumerate(users.tolist()):
            scores[row, self.seen(u)] = -np.inf
        return scores

    def popular_scores(self) -> np.ndarray:
        """The fallback's scores: the share of training users who took each item."""
        return self.counts_ / max(self.n_train_users_, 1)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """A score per ``(user, item)`` record: the predicted rating (explicit) or ranking score. An
        unknown user gets the item's popularity (explicit: its baseline rating); an unknown item the
        user's baseline (explicit) or 0."""
        users, items = id_text(X[self.user_col]), id_text(X[self.item_col])
        u = np.array([self.user_pos_.get(x, -1) for x in users], dtype=np.int64)
        i = np.array([self.item_pos_.get(x, -1) for x in items], dtype=np.int64)
        out = np.zeros(len(X))
        both = (u >= 0) & (i >= 0)
        if both.any():
            out[both] = self.rec_.predict(u[both], i[both])
        base = getattr(self.rec_, "baseline_", None)
        for n in np.flatnonzero(~both).tolist():
            if base is not None:
                out[n] = base.mu_ + (base.bu_[u[n]] if u[n] >= 0 else 0.0) + (base.bi_[i[n]] if i[n] >= 0 else 0.0)
            elif i[n] >= 0:
                out[n] = self.popular_scores()[i[n]]
        return out

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """The head's scores: those of ``predict`` (a recommender has no classes)."""
        return self.predict(X)

    def recommend(self, user: Any, k: int, *, exclude_seen: bool = True, exclude: Iterable[Any] = (),
                  where: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The top ``k`` items for ``user`` as ``[{"item", "score"}]`` and the fallback used (``popular``
        for a user it never saw, else None). ``where``: item feature -> value (a DataError naming an
        unknown feature, ``filter.<name>``)."""
        name = user if type(user) is str else label_text(user)
        u = self.user_pos_.get(name, -1)
        wanted = [self.items_with(feature, value) for feature, value in (where or {}).items()]
        if exclude_seen if u >= 0 else name not in getattr(self, "cold_pos_", ()):
            allowed = frozenset.intersection(*(ids for _, ids in wanted)) if wanted else None
            listed = self.ranked(u, k, exclude, allowed)  # the lists ranked once (``precompute``), if they answer
            if listed is not None:
                return listed, (POPULAR if u < 0 else None)
        similar = self.similar_user_scores(name) if u < 0 else None
        if similar is not None:
            scores, fallback = similar, SIMILAR_USERS
        elif u < 0:
            scores, fallback = self.popular_scores().copy(), POPULAR
        else:
            scores, fallback = self.user_row(u), None
            if exclude_seen:
                scores[self.seen(u)] = -np.inf
        for item in exclude:
            pos = self.item_pos_.get(label_text(item), -1)
            if pos >= 0:
                scores[pos] = -np.inf
        for keep, _ in wanted:
            mask = np.ones(len(scores), dtype=bool)
            mask[keep] = False
            scores[mask] = -np.inf
        top = top_k(scores[None, :], k)[0]
        top = top[top >= 0].tolist()
        items, values = self.items_[top].tolist(), scores[top].round(6).tolist()
        return [{"item": i, "score": v} for i, v in zip(items, values, strict=True)], fallback

    # ---- the loop ------------------------------------------------------------------------------
    def interaction_rows(self, stored: list[dict[str, Any]]) -> pd.DataFrame:
        """Stored interactions (``POST /v1/interactions``) as rows of the training table, for
        ``modelloop retrain``: the user and item (as text), the rating (``value``; a model of ratings
        learns only the interactions that carry one, ``interaction_note`` counts the others; ``NOT_TAKEN``
        events are never learned), the time, the item's known attributes, and
        ``_request_id`` (a stable id of the interaction, so a retrain adds it once) and ``_feedback_at``."""
        from ...feedback.interactions import interaction_id

        rows = []
        for rec in stored:
            if rec.get("event") in NOT_TAKEN:  # shown or turned down: logged for click-through, never learned
                continue
            value = rec.get("value")
            numeric = _numeric(value)
            if self.explicit_ and not numeric:  # counted by ``interaction_note``
                continue
            item = label_text(rec["item"])
            row: dict[str, Any] = {self.user_col: label_text(rec["user"]), self.item_col: item}
            if self.rating_col is not None and numeric:
                row[self.rating_col] = float(value)  # type: ignore[arg-type]  # numeric: int or float
            if self.time_col is not None:
                row[self.time_col] = str(rec.get("at", ""))[:16].replace("T", " ")
            for name, values in self.features_.items():
                row[name] = values.get(item)
            row["_request_id"] = interaction_id(rec)
            row["_feedback_at"] = pd.Timestamp(rec.get("at"))
            rows.append(row)
        return pd.DataFrame(rows, columns=[self.user_col, self.item_col, *([self.rating_col] if self.rating_col else []),
                                           *([self.time_col] if self.time_col else []), *self.features_,
                                           "_request_id", "_feedback_at"])

    def rating_missing(self, event: Any, value: Any) -> bool:
        """Whether this is a taken interaction (not a ``NOT_TAKEN`` event) without the rating a model of
        ratings needs: it could never be learned, so ``POST /v1/interactions`` refuses it (422) rather
        than acknowledge a record retrain would leave out. Impressions stay accepted (click-through)."""
        return self.explicit_ and event not in NOT_TAKEN and not _numeric(value)

    def rating_required(self) -> str:
        """The refusal's words for an interaction without a rating (``rating_missing``)."""
        return (f"required: this model learns from ratings (data.rating '{self.rating_col}'); send the rating "
                f"the user gave as a number, or event {', '.join(sorted(NOT_TAKEN))} for an item shown and "
                "not taken")

    def interaction_note(self, stored: list[dict[str, Any]]) -> dict[str, Any]:
        """Retrain's count of the stored interactions a model of ratings cannot learn (no rating: logged
        before ``POST /v1/interactions`` refused them), with the reason, so an acknowledged record is never
        left out without a word; empty when there is none."""
        missing = sum(1 for rec in stored if self.rating_missing(rec.get("event"), rec.get("value")))
        if not missing:
            return {}
        one = missing == 1
        return {"interactions": len(stored), "without_rating": missing,
                "why": f"{missing} of the {len(stored)} stored interactions {'carries' if one else 'carry'} no rating "
                       f"(value): a model of ratings (data.rating '{self.rating_col}') cannot learn "
                       f"{'it' if one else 'them'}, so {'it is' if one else 'they are'} not in the new dataset "
                       "(logged before POST /v1/interactions refused an interaction without one, or while the server "
                       "had no model loaded)"}

    # ---- evaluation --------------------------------------------------------------------------------
    def evaluate_interactions(self, df: pd.DataFrame) -> dict[str, Any]:
        """The figures on held-out interactions ``df``: ranking metrics at ``k`` with training items
        excluded (unknown users ranked by popularity), rating errors (explicit), per activity bucket.
        With ``relevant_rating_`` a held-out rating below it is no hit; the ranking figures are means over
        the ``users`` with a relevant held-out item not taken in training (``unscored_users``: the others)."""
        users = id_text(df[self.user_col])
        items = np.array([self.item_pos_.get(x, -1) for x in id_text(df[self.item_col])], dtype=np.int64)
        threshold = getattr(self, "relevant_rating_", None)  # a model registered before the setting: None
        frame = pd.DataFrame({"user": users, "item": items})
        if threshold is not None and self.rating_col is not None:
            frame = frame[relevant(df[self.rating_col].to_numpy(dtype=np.float64), threshold)]
        truth_of: dict[str, np.ndarray] = {}
        for user, group in frame.groupby("user", sort=True):
            u = self.user_pos_.get(user, -1)
            wanted = np.unique(group["item"].to_numpy())
            if u >= 0:
                wanted = wanted[~np.isin(wanted, self.seen(u))]
            if len(wanted):
                truth_of[str(user)] = wanted
        names = list(truth_of)
        known = np.array([self.user_pos_.get(n, -1) for n in names], dtype=np.int64)
        cold = {n: self.similar_user_scores(names[n]) for n in np.flatnonzero(known < 0).tolist()}

        def scores_of(block: np.ndarray) -> np.ndarray:  # ``block``: indices into ``names``
            out = np.tile(self.popular_scores(), (len(block), 1))
            for row, n in enumerate(block.tolist()):  # a user unseen in training, known by their features
                similar = cold.get(n)
                if similar is not None:
                    out[row] = similar
            hit = known[block] >= 0
            if hit.any():
                out[hit] = self.masked_scores(known[block][hit])
            return out

        metrics, ndcg = ranking_metrics(np.arange(len(names)), [truth_of[n] for n in names], scores_of, k=self.k_,
                                        counts=self.counts_, n_train_users=self.n_train_users_)
        if self.explicit_:
            metrics.update(rating_metrics(df[self.rating_col].to_numpy(dtype=np.float64), self.predict(df)))
        activity = np.array([len(self.seen(u)) if u >= 0 else 0 for u in known.tolist()])
        buckets = {}
        for name, _, _ in ACTIVITY_BUCKETS:
            sel = np.array([activity_bucket(a) == name for a in activity.tolist()], dtype=bool)
            buckets[name] = {"users": int(sel.sum()), "ndcg": float(ndcg[sel].mean()) if sel.any() else None}
        return {"metrics": metrics, "rows": int(len(df)), "users": len(names), "k": self.k_,
                "unscored_users": int(pd.Series(users).nunique()) - len(names),
                "relevant_rating": threshold if self.rating_col is not None else None,
                "cold_users": int((known < 0).sum()), "buckets": buckets}

    def evaluation_html(self, df: pd.DataFrame, evaluation: dict[str, Any], *, title: str,
                        context: dict[str, Any]) -> str:
        """The evaluation page (``write_evaluation_report`` asks a model that draws its own)."""
        from .report import recommend_report_html

        return recommend_report_html(self, evaluation, title=title, context=context)

    # ---- what it is --------------------------------------------------------------------------------
    def feature_importances(self) -> dict[str, float]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"family": "recommend", "recommender": self.name_, "params": self.params_, "k": self.k_,
                "relevant_rating": getattr(self, "relevant_rating_", None),
                "explicit": self.explicit_, "users": len(self.users_), "items": len(self.items_),
                "columns": {"user": self.user_col, "item": self.item_col, "rating": self.rating_col,
                            "time": self.time_col},
                "item_features": sorted(self.features_), "selection": self.selection_}
