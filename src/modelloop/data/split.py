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
    """A target read as classes (its task's head's ``target_kind``) needs at least two; a numeric one numbers."""
    from .task import target_kind

    y = y.dropna()
    if y.empty:
        raise DataError(f"target column '{target}' has no values")
    kind = target_kind(task)
    if kind == "numeric":
        if not pd.api.types.is_numeric_dtype(y):
            raise DataError(f"target column '{target}' must be numeric for task {task}, "
                            f"got values like {y.iloc[0]!r}; use task: classification")
        return
    if kind != "categorical":
        return
    counts = y.value_counts()
    if len(counts) < 2:
        raise DataError(f"target column '{target}' has a single class ({counts.index[0]!r}); "
                        f"classification needs at least two")


def make_split(df: pd.DataFrame, *, strategy: str, test_size: float, seed: int, target: str,
               time: str | None = None, group: str | None = None,
               inherit: pd.DataFrame | None = None, user: str | None = None) -> pd.DataFrame:
    """``_row_id`` -> ``split`` ('train' | 'test'). Inherited rows keep their side; new rows are split.
    ``user``: the user column of strategy ``user`` (a share of each user's rows)."""
    if strategy == "user":
        group = user
    if inherit is None:  # a new version: no lookup, no copy of the rows to split
        test = _split_new(df, strategy, test_size, seed, target, time, group)
        return pd.DataFrame({ROW_ID: df[ROW_ID].to_numpy(), "split": _sides(test)})
    known = dict(zip(inherit[ROW_ID], inherit["split"], strict=True))
    assigned = df[ROW_ID].map(known)
    todo = df[assigned.isna()]
    if len(todo):
        test = _split_new(todo, strategy, test_size, seed, target, time, group)
        assigned.loc[todo.index] = _sides(test).to_numpy()
    return pd.DataFrame({ROW_ID: df[ROW_ID].to_numpy(), "split": assigned.to_numpy()})


def _sides(test: np.ndarray) -> pd.Series:
    """'test' where ``test`` holds, else 'train', as text, built by Arrow from codes: a million Python
    strings took longer than the split itself."""
    import pyarrow as pa

    names = pa.DictionaryArray.from_arrays(pa.array(test.astype(np.int8)), pa.array(["train", "test"]))
    return pd.Series(names.cast(pa.large_string()).to_pandas(), name="split")


def _split_new(df: pd.DataFrame, strategy: str, test_size: float, seed: int, target: str,
               time: str | None, group: str | None) -> np.ndarray:
    """The test rows (a mask) among the rows of ``df``."""
    n = len(df)
    if n < 2:
        return np.zeros(n, dtype=bool)
    if strategy == "time":
        order = np.argsort(pd.to_datetime(df[time], errors="coerce", format="mixed").to_numpy(), kind="stable")
        test = np.zeros(n, dtype=bool)
        test[order[int(round(n * (1 - test_size))):]] = True
        return test
    # numpy rather than scikit-learn's splitters: importing scikit-learn (and SciPy behind it) cost a
    # 1M-row ingest 1 s and 80 MiB, and a split is a shuffle
    rng = np.random.default_rng(seed)
    if strategy == "user":
        when = pd.to_datetime(df[time], errors="coerce", format="mixed").to_numpy() if time else None
        return _per_user(df[group], test_size, rng, when)
    if strategy == "group":
        groups, names = pd.factorize(df[group], use_na_sentinel=False)
        chosen = rng.permutation(len(names))[:_test_count(len(names), test_size)]
        return np.isin(groups, chosen)
    if strategy == "stratified":
        labels = pd.factorize(df[target], use_na_sentinel=False)[0]
        single = np.bincount(labels)[labels] == 1
        if not single.any():
            return _test_rows(labels, test_size, rng)
        # a class with one row cannot be on both sides: its row trains (a model that never saw the label
        # could not be scored on it: evaluation refused the test set), the other classes are stratified
        test = np.zeros(n, dtype=bool)
        rest = np.flatnonzero(~single)
        if len(rest) >= 2:
            test[rest] = _test_rows(pd.factorize(labels[rest])[0], test_size, rng)
        return test
    return _test_rows(np.zeros(n, dtype=np.int64), test_size, rng)


def _per_user(users: pd.Series, test_size: float, rng: np.random.Generator,
              times: np.ndarray | None = None) -> np.ndarray:
    """``test_size`` of each user's rows (rounded, at least one, never all: a user with one row stays in
    train): drawn at random, or with ``times`` each user's latest (leave the last ones out); every test
    user is also a training user, and no row is on both sides."""
    codes = pd.factorize(users, use_na_sentinel=False)[0]
    order = rng.permutation(len(codes)) if times is None else np.argsort(times, kind="stable")[::-1]
    rows = order[np.argsort(codes[order], kind="stable")]  # each user's rows together: random, or latest first
    counts = np.bincount(codes)
    quota = np.where(counts >= 2, np.clip(np.round(counts * test_size), 1, counts - 1), 0)
    rank = np.arange(len(rows)) - (np.cumsum(counts) - counts)[codes[rows]]
    test = np.zeros(len(codes), dtype=bool)
    test[rows[rank < quota[codes[rows]]]] = True
    return test


def _test_count(n: int, test_size: float) -> int:
    """Test items out of ``n``: ``test_size`` rounded up, leaving at least one on each side."""
    return min(max(int(np.ceil(test_size * n)), 1), n - 1)


def _test_rows(classes: np.ndarray, test_size: float, rng: np.random.Generator) -> np.ndarray:
    """A test mask holding ``test_size`` of each class (the rows left over from rounding go to the
    classes with the largest remainders), each class's test rows drawn at random."""
    n = len(classes)
    counts = np.bincount(classes)
    exact = counts * _test_count(n, test_size) / n
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(quota - exact, kind="stable")[:_test_count(n, test_size) - quota.sum()]] += 1
    by_class = np.argsort(classes, kind="stable")  # the rows of each class, together
    ends = np.cumsum(counts)
    test = np.zeros(n, dtype=bool)
    for c, (start, end) in enumerate(zip(ends - counts, ends, strict=True)):
        test[rng.choice(by_class[start:end], quota[c], replace=False)] = True
    return test


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
