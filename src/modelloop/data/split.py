"""Reproducible splits: the frozen test set and the cross-validation folds inside training.

The test split is stored with the dataset version (keyed by the split settings) so every model of a
project is compared on the same rows; derived versions inherit the assignment of the rows they keep.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from .snapshot import ROW_ID

__all__ = ["check_target", "make_folds", "make_split"]


def check_target(y: pd.Series, task: str, target: str) -> None:
    """A classification target needs at least two classes; regression a numeric target."""
    y = y.dropna()
    if y.empty:
        raise DataError(f"target column '{target}' has no values")
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            raise DataError(f"target column '{target}' must be numeric for task regression, "
                            f"got values like {y.iloc[0]!r}; use task: classification")
        return
    counts = y.value_counts()
    if len(counts) < 2:
        raise DataError(f"target column '{target}' has a single class ({counts.index[0]!r}); "
                        f"classification needs at least two")


def make_split(df: pd.DataFrame, *, strategy: str, test_size: float, seed: int, target: str,
               time: str | None = None, group: str | None = None,
               inherit: pd.DataFrame | None = None) -> pd.DataFrame:
    """``_row_id`` -> ``split`` ('train' | 'test'). Inherited rows keep their side; new rows are split."""
    assigned = pd.Series(index=df.index, dtype=object)
    if inherit is not None:
        known = dict(zip(inherit[ROW_ID], inherit["split"], strict=True))
        assigned = df[ROW_ID].map(known)
    todo = df[assigned.isna()]
    if len(todo):
        assigned.loc[todo.index] = _split_new(todo, strategy, test_size, seed, target, time, group)
    return pd.DataFrame({ROW_ID: df[ROW_ID].to_numpy(), "split": assigned.to_numpy()})


def _split_new(df: pd.DataFrame, strategy: str, test_size: float, seed: int, target: str,
               time: str | None, group: str | None) -> np.ndarray:
    n = len(df)
    out = np.full(n, "train", dtype=object)
    if n < 2:
        return out
    idx = np.arange(n)
    if strategy == "time":
        order = np.argsort(pd.to_datetime(df[time], errors="coerce", format="mixed").to_numpy(), kind="stable")
        out[order[int(round(n * (1 - test_size))):]] = "test"
        return out
    # scikit-learn (and SciPy behind it) on first use: ingest only needs check_target.
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if strategy == "group":
        gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        _, test = next(gss.split(idx, groups=df[group].astype(str).to_numpy()))
    else:
        strat = df[target].astype(str).to_numpy() if strategy == "stratified" else None
        if strat is not None and pd.Series(strat).value_counts().min() < 2:
            strat = None  # a class with one row cannot be stratified; fall back to random
        _, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
    out[test] = "test"
    return out


def make_folds(df: pd.DataFrame, *, strategy: str, n_folds: int, seed: int, target: str,
               time: str | None = None, group: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation folds over the training rows (positions). ``n_folds == 1`` or a time split: one
    holdout of the latest/random 20%."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    n = len(df)
    idx = np.arange(n)
    if strategy == "time" or n_folds == 1:
        if strategy == "time":
            order = np.argsort(pd.to_datetime(df[time], errors="coerce", format="mixed").to_numpy(), kind="stable")
        else:
            order = np.random.default_rng(seed).permutation(n)
        cut = int(round(n * 0.8))
        return [(np.sort(order[:cut]), np.sort(order[cut:]))]
    if strategy == "group":
        groups = df[group].astype(str).to_numpy()
        k = min(n_folds, len(np.unique(groups)))
        return [(a, b) for a, b in GroupKFold(n_splits=k).split(idx, groups=groups)]
    if strategy == "stratified":
        y = df[target].astype(str).to_numpy()
        smallest = int(pd.Series(y).value_counts().min())
        if smallest >= 2:
            k = min(n_folds, smallest)
            return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y))
    return list(KFold(n_splits=min(n_folds, n), shuffle=True, random_state=seed).split(idx))
