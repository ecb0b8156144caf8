"""The recommenders, on a CSR user x item matrix (``data.Interactions.matrix``), numpy and SciPy only:

* ``popularity``: items by how many users took them; ratings by the regularised baseline
  ``mu + b_user + b_item``;
* ``itemknn``: item-item cosine similarity of who took them (each item's ``neighbors`` most similar kept,
  shrunk by ``shrink``); a user's score of an item is the similarity to what they took; a rating is the
  baseline plus the similarity-weighted deviations of the user's own ratings from it;
* ``mf``: biased matrix factorization for explicit ratings, fitted by alternating least squares on the
  baseline's residuals (deterministic, no learning rate to tune);
* ``als``: implicit ALS (Hu, Koren and Volinsky 2008): confidence ``1 + alpha * count``;
* ``bpr``: Bayesian personalised ranking (Rendle et al. 2009) by mini-batch SGD with item biases;
* ``userknn``: the most similar users' items (cosine over who took what).

The content-based model and the hybrid are in ``content.py``; ``kinds.py`` names them all.

Every recommender answers ``user_scores(users)`` (a dense ``(len(users), n_items)`` block, higher is
better) and ``predict(u, i)`` (a rating for explicit models, the ranking score otherwise). All are seeded
and deterministic. Written here rather than taken from ``implicit``: its multithreaded CG solver is not
reproducible run to run, which the registry's round trip asks for (``benchmarks/recommend_quality.py``
runs it as a peer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BPR", "Baseline", "BiasedMF", "ImplicitALS", "ItemKNN", "Popularity", "Recommender", "UserKNN"]

class Baseline:
    """``mu + b_user + b_item``, biases regularised towards 0 (``reg_user``/``reg_item``: pseudo-counts)."""

    def __init__(self, reg_user: float = 10.0, reg_item: float = 25.0):
        self.reg_user, self.reg_item = reg_user, reg_item

    def fit(self, R: Any) -> Baseline:
        coo = R.tocoo()
        self.mu_ = float(coo.data.mean()) if coo.nnz else 0.0
        n_u, n_i = R.shape
        bu, bi = np.zeros(n_u), np.zeros(n_i)
        for _ in range(3):
            res = coo.data - self.mu_ - bu[coo.row]
            bi = np.bincount(coo.col, res, n_i) / (np.bincount(coo.col, minlength=n_i) + self.reg_item)
            res = coo.data - self.mu_ - bi[coo.col]
            bu = np.bincount(coo.row, res, n_u) / (np.bincount(coo.row, minlength=n_u) + self.reg_user)
        self.bu_, self.bi_ = bu, bi
        return self

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self.mu_ + self.bu_[u] + self.bi_[i]


class Recommender:
    """The base of every recommender: popularity counts, the baseline for ratings, ``user_scores`` and
    ``predict`` (the defaults are popularity's)."""

    explicit = False

    def fit(self, R: Any, *, explicit: bool, seed: int, epochs: int, side: Any = None) -> Recommender:
        """Fit on the user x item matrix ``R``; ``side``: the items' feature matrix (content models)."""
        self.explicit = explicit
        self.counts_ = np.asarray((R > 0).sum(axis=0)).ravel().astype(np.float64)
        self.baseline_ = Baseline().fit(R) if explicit else None
        self.side = side
        self._fit(R, np.random.default_rng(seed), epochs)
        return self

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        pass

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts_, (len(users), 1))

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.baseline_ is not None:
            return self.baseline_.predict(u, i)
        return self.user_scores(u)[np.arange(len(u)), i] if len(u) else np.zeros(0)


class Popularity(Recommender):
    def __init__(self, **params: Any):
        self.params = params


class ItemKNN(Recommender):
    def __init__(self, neighbors: int = 50, shrink: float = 10.0):
        self.neighbors, self.shrink = int(neighbors), float(shrink)

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        import scipy.sparse as sp

        X = (R > 0).astype(np.float64).tocsr()
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
        co = (X.T @ X).toarray()
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        k = min(self.neighbors, sim.shape[0] - 1)
        if 0 < k < sim.shape[0] - 1:  # keep each item's k most similar (stable: ties by position)
            drop = np.argsort(-sim, axis=1, kind="stable")[:, k:]
            np.put_along_axis(sim, drop, 0.0, axis=1)
        self.S_ = sp.csr_matrix(sim.T)  # S_[j, i]: how much taking j says about i
        self.X_ = X
        self.R_ = R.tocsr()

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.X_[users] @ self.S_).todense())

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.baseline_ is None:
            return np.array([float((self.X_[a] @ self.S_[:, b]).sum()) for a, b in zip(u, i, strict=True)])
        out = self.baseline_.predict(u, i)
        for n, (a, b) in enumerate(zip(u.tolist(), i.tolist(), strict=True)):
            row = self.R_[a]
            if row.nnz == 0:
                continue
            w = np.asarray(self.S_[row.indices, b].todense()).ravel()
            if np.abs(w).sum() > 0:
                dev = row.data - self.baseline_.predict(np.full(row.nnz, a), row.indices)
                out[n] += float(w @ dev / np.abs(w).sum())
        return out


class UserKNN(Recommender):
    """A user's score of an item: the cosine similarity of the ``neighbors`` most similar users who took
    it (shrunk by ``shrink``), summed."""

    def __init__(self, neighbors: int = 50, shrink: float = 10.0):
        self.neighbors, self.shrink = int(neighbors), float(shrink)

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        self.X_ = (R > 0).astype(np.float64).tocsr()
        self.norms_ = np.sqrt(np.asarray(self.X_.multiply(self.X_).sum(axis=1)).ravel())

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        sim = np.asarray((self.X_[users] @ self.X_.T).todense())
        sim /= np.outer(self.norms_[users], self.norms_) + self.shrink + 1e-12
        sim[np.arange(len(users)), users] = 0.0
        k = min(self.neighbors, sim.shape[1] - 1)
        if 0 < k < sim.shape[1] - 1:
            drop = np.argsort(-sim, axis=1, kind="stable")[:, k:]
            np.put_along_axis(sim, drop, 0.0, axis=1)
        return np.asarray(self.X_.T @ sim.T).T

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.baseline_ is not None:
            return self.baseline_.predict(u, i)
        return self.user_scores(u)[np.arange(len(u)), i] if len(u) else np.zeros(0)


def _ridge_rows(R: Any, fixed: np.ndarray, reg: float, target: Any = None) -> np.ndarray:
    """For each row r of ``R``: argmin_x sum_(j in r) (t_rj - x . fixed_j)^2 + reg |x|^2 (``target``: the
    values t, default R's own)."""
    T = (target if target is not None else R).tocsr()
    f = fixed.shape[1]
    out = np.zeros((R.shape[0], f))
    eye = reg * np.eye(f)
    for r in range(R.shape[0]):
        lo, hi = T.indptr[r], T.indptr[r + 1]
        if lo == hi:
            continue
        F = fixed[T.indices[lo:hi]]
        out[r] = np.linalg.solve(F.T @ F + eye, F.T @ T.data[lo:hi])
    return out


class BiasedMF(Recommender):
    def __init__(self, factors: int = 32, reg: float = 5.0):
        self.factors, self.reg = int(factors), float(reg)

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        coo = R.tocoo()
        base = self.baseline_ if self.baseline_ is not None else Baseline().fit(R)
        self.baseline_ = base
        resid = coo.copy()
        resid.data = coo.data - base.predict(coo.row, coo.col)
        resid_u, resid_i = resid.tocsr(), resid.T.tocsr()
        self.Q_ = rng.normal(0.0, 0.1, (R.shape[1], self.factors))
        self.P_ = np.zeros((R.shape[0], self.factors))
        for _ in range(epochs):
            self.P_ = _ridge_rows(resid_u, self.Q_, self.reg)
            self.Q_ = _ridge_rows(resid_i, self.P_, self.reg)

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        assert self.baseline_ is not None
        return self.P_[users] @ self.Q_.T + self.baseline_.bi_[None, :]

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        assert self.baseline_ is not None
        return self.baseline_.predict(u, i) + np.einsum("nf,nf->n", self.P_[u], self.Q_[i])


class ImplicitALS(Recommender):
    def __init__(self, factors: int = 32, reg: float = 50.0, alpha: float = 20.0):
        self.factors, self.reg, self.alpha = int(factors), float(reg), float(alpha)

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        C = R.tocsr().astype(np.float64)  # implicit: the count of a pair's interactions; a rating: one
        if self.explicit:
            C.data = np.ones_like(C.data)
        Cu, Ci = C, C.T.tocsr()
        self.Y_ = rng.normal(0.0, 0.01, (R.shape[1], self.factors))
        self.X_ = np.zeros((R.shape[0], self.factors))
        for _ in range(epochs):
            self.X_ = self._solve(Cu, self.Y_)
            self.Y_ = self._solve(Ci, self.X_)

    def _solve(self, C: Any, Y: np.ndarray) -> np.ndarray:
        YtY = Y.T @ Y + self.reg * np.eye(Y.shape[1])
        out = np.zeros((C.shape[0], Y.shape[1]))
        for r in range(C.shape[0]):
            lo, hi = C.indptr[r], C.indptr[r + 1]
            if lo == hi:
                continue
            Yr, c = Y[C.indices[lo:hi]], self.alpha * C.data[lo:hi]
            out[r] = np.linalg.solve(YtY + (Yr.T * c) @ Yr, Yr.T @ (1.0 + c))
        return out

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return self.X_[users] @ self.Y_.T

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.baseline_ is not None:
            return self.baseline_.predict(u, i)
        return np.einsum("nf,nf->n", self.X_[u], self.Y_[i])


class BPR(Recommender):
    def __init__(self, factors: int = 32, lr: float = 0.02, reg: float = 0.001, batch: int = 256):
        self.factors, self.lr, self.reg, self.batch = int(factors), float(lr), float(reg), int(batch)

    def _fit(self, R: Any, rng: np.random.Generator, epochs: int) -> None:
        coo = R.tocoo()
        n_u, n_i = R.shape
        users, pos = coo.row.astype(np.int64), coo.col.astype(np.int64)
        taken = np.sort(users * n_i + pos)
        P, Q, b = rng.normal(0, 0.1, (n_u, self.factors)), rng.normal(0, 0.1, (n_i, self.factors)), np.zeros(n_i)
        for _ in range(epochs * 2):
            order = rng.permutation(len(users))
            neg = rng.integers(0, n_i, len(users))
            for start in range(0, len(order), self.batch):
                idx = order[start:start + self.batch]
                u, i, j = users[idx], pos[idx], neg[idx]
                keep = ~np.isin(u * n_i + j, taken)  # a sampled negative the user took is no negative
                u, i, j = u[keep], i[keep], j[keep]
                x = np.einsum("nf,nf->n", P[u], Q[i] - Q[j]) + b[i] - b[j]
                g = 1.0 / (1.0 + np.exp(np.clip(x, -30, 30)))  # d log sigmoid(x) / dx
                gu = g[:, None] * (Q[i] - Q[j]) - self.reg * P[u]
                gi = g[:, None] * P[u] - self.reg * Q[i]
                gj = -g[:, None] * P[u] - self.reg * Q[j]
                np.add.at(P, u, self.lr * gu)
                np.add.at(Q, i, self.lr * gi)
                np.add.at(Q, j, self.lr * gj)
                np.add.at(b, i, self.lr * (g - self.reg * b[i]))
                np.add.at(b, j, self.lr * (-g - self.reg * b[j]))
        self.P_, self.Q_, self.b_ = P, Q, b

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        return self.P_[users] @ self.Q_.T + self.b_[None, :]

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.baseline_ is not None:
            return self.baseline_.predict(u, i)
        return np.einsum("nf,nf->n", self.P_[u], self.Q_[i]) + self.b_[i]
