"""Content-based scoring from the items' own columns, and the hybrid that blends recommenders.

* ``item_matrix``: the item features (``data.item_features``: columns with one value per item) as a
  row-normalised matrix: a numeric column standardised, a short text column (a category) one-hot, a
  longer one (a title, a description) as TF-IDF of its words;
* ``content``: a user's profile is the sum of the feature rows of what they took (ratings: weighted by
  how far above the user's mean); an item's score is its cosine with the profile. It ranks items no one
  took alike with popular ones, which the collaborative models cannot;
* ``hybrid``: the per-user standardised scores of item-kNN, a factor model (ALS for implicit feedback,
  biased MF for ratings), content and popularity, blended with weights the search draws. Ratings are
  the factor model's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .recommenders import BiasedMF, ImplicitALS, ItemKNN, Recommender

__all__ = ["Content", "Hybrid", "item_matrix"]


def item_matrix(features: dict[str, dict[str, Any]], items: np.ndarray) -> Any:
    """``(n_items, d)`` CSR feature rows (unit length; an item without features is a zero row), or None
    when there is no item feature. Users' features (a user side table) are read the same way."""
    import pandas as pd
    import scipy.sparse as sp

    blocks = []
    for values in features.values():
        column = pd.Series([values.get(i) for i in items.tolist()], dtype=object)
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.notna().sum() == column.notna().sum() and column.notna().any():
            z = ((numbers - numbers.mean()) / (numbers.std() or 1.0)).fillna(0.0).to_numpy()
            blocks.append(sp.csr_matrix(z[:, None]))
            continue
        text = column.fillna("").astype(str)
        if text.str.split().str.len().mean() > 1.5:
            from sklearn.feature_extraction.text import TfidfVectorizer

            if text.str.strip().any():
                blocks.append(TfidfVectorizer(min_df=1).fit_transform(text).tocsr())
            continue
        codes, _ = pd.factorize(text)
        blocks.append(sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes))))
    if not blocks:
        return None
    F = sp.hstack(blocks).tocsr().astype(np.float64)
    norms = np.sqrt(np.asarray(F.multiply(F).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ F


class Content(Recommender):
    def __init__(self, **params: Any):
        self.params = params

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        import scipy.sparse as sp

        W = R.tocsr().astype(np.float64)
        if self.explicit:  # above the user's own mean counts for, below against
            means = np.asarray(W.sum(axis=1)).ravel() / np.maximum(np.diff(W.indptr), 1)
            W.data = W.data - np.repeat(means, np.diff(W.indptr))
        else:
            W.data = np.ones_like(W.data)
        self.W_ = W
        self.F_ = self.side if self.side is not None else sp.csr_matrix((R.shape[1], 1))

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        profile = np.asarray((self.W_[users] @ self.F_).todense())
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        return np.asarray(self.F_ @ profile.T).T


def _standardised(scores: np.ndarray) -> np.ndarray:
    spread = scores.std(axis=1, keepdims=True)
    return (scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)


class Hybrid(Recommender):
    def __init__(self, w_knn: float = 1.0, w_factors: float = 1.0, w_content: float = 0.5, w_popularity: float = 0.25):
        self.weights = {"knn": float(w_knn), "factors": float(w_factors), "content": float(w_content),
                        "popularity": float(w_popularity)}

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        seed = int(rng.integers(0, 2**31 - 1))
        factor_model = BiasedMF() if self.explicit else ImplicitALS()
        self.parts_ = {"knn": ItemKNN(), "factors": factor_model, "content": Content()}
        for part in self.parts_.values():
            part.fit(R, explicit=self.explicit, seed=seed, epochs=epochs, side=self.side)
        if self.explicit:
            self.baseline_ = factor_model.baseline_

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        blend = self.weights["popularity"] * _standardised(np.tile(np.log1p(self.counts_), (len(users), 1)))
        for name, part in self.parts_.items():
            if self.weights[name]:
                blend += self.weights[name] * _standardised(np.asarray(part.user_scores(users), dtype=np.float64))
        return blend

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.explicit:
            return np.asarray(self.parts_["factors"].predict(u, i))
        return self.user_scores(u)[np.arange(len(u)), i] if len(u) else np.zeros(0)
