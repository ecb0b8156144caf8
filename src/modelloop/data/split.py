"""Reproducible splits: the frozen test set and the cross-validation folds inside training.

The test split is stored with the dataset version (keyed by the split settings) so every model of a
project is compared on the same rows; derived versions inherit the assignment of the rows they keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ..errors import ConfigError, DataError, cap_list
from ._tables import pandas_dtype
from .snapshot import ROW_ID

if TYPE_CHECKING:  # pandas on first use: a new version's split of a Parquet source is made with Polars
    import pandas as pd

__all__ = ["FoldGroups", "check_target", "column_sides", "fold_groups", "fold_scheme", "group_counts", "group_sides", "make_folds", "make_split",
           "whole_groups"]


def check_target(y: pd.Series | pl.Series, task: str, target: str) -> None:
    """A target read as classes (its task's head's ``target_kind``) needs at least two; a numeric one numbers.

    A Polars ``y`` is checked by Polars where its type reads in pandas as numbers, booleans, text or
    categories (``_tables.pandas_dtype``), with the same outcome and message as pandas would give."""
    if isinstance(y, pl.Series):
        read_as = pandas_dtype(y.dtype, bool(y.null_count()))
        if read_as is None or read_as.startswith("datetime") or read_as == "category":
            y = y.to_pandas()  # pandas counts a category's unused levels too: it decides those
        else:
            kept = (y.fill_nan(None) if y.dtype.is_float() else y).drop_nulls()
            numbers = read_as.startswith(("int", "uint", "float")) or read_as == "bool"
            # the value as pandas shows it: a NumPy scalar of its dtype for numbers
            first = None if kept.is_empty() else np.dtype(read_as).type(kept[0]) if numbers else kept[0]
            return _judge(target, task, rows=len(kept), numbers=numbers, classes=lambda: kept.n_unique(),
                          first=first)
    import pandas as pd

    kept_pd = y.dropna()
    first = None if kept_pd.empty else kept_pd.iloc[0]
    return _judge(target, task, rows=len(kept_pd), numbers=pd.api.types.is_numeric_dtype(kept_pd),
                  classes=lambda: len(kept_pd.value_counts()), first=first)  # unused levels count, as before


def _judge(target: str, task: str, *, rows: int, numbers: bool, classes: Any, first: Any) -> None:
    """The one place the target's messages are worded (pandas and Polars give the same facts)."""
    from .task import target_kind

    if rows == 0:
        raise DataError(f"target column '{target}' has no values")
    kind = target_kind(task)
    if kind == "numeric" and not numbers:
        raise DataError(f"target column '{target}' must be numeric for task {task}, "
                        f"got values like {first!r}; use task: classification")
    if kind == "categorical" and classes() < 2:
        raise DataError(f"target column '{target}' has a single class ({first!r}); "
                        f"classification needs at least two")


def make_split(df: pd.DataFrame | pl.DataFrame, *, strategy: str, test_size: float, seed: int, target: str,
               time: str | None = None, group: str | None = None,
               inherit: pd.DataFrame | None = None, user: str | None = None,
               column: str | None = None) -> pd.DataFrame | pl.DataFrame:
    """``_row_id`` -> ``split`` ('train' | 'test'). Inherited rows keep their side; new rows are split.
    ``user``: the user column of strategy ``user`` (a share of each user's rows); ``column``: the column of
    strategy ``column`` (each row's side as the data says it, ``column_sides``).

    A Polars ``df`` (a new version's role columns at ingest) is split without pandas, into the same rows
    (``_codes``, ``_times``), and gives a Polars frame; with ``inherit`` it is split as pandas."""
    if strategy == "user":
        group = user
    if strategy == "column":
        group = column
    if isinstance(df, pl.DataFrame):
        if inherit is None:  # the sides as an Enum: a byte a row, where a million strings took 16 MiB
            is_test = pl.Series("split", _split_new(df, strategy, test_size, seed, target, time, group))
            side = pl.Enum(["train", "test"])
            sides = is_test.to_frame().select(pl.when(pl.first()).then(pl.lit("test", dtype=side))
                                           .otherwise(pl.lit("train", dtype=side)).alias("split"))
            return pl.DataFrame([df.get_column(ROW_ID), sides.to_series()])
        df = df.to_pandas()
    import pandas as pd

    if inherit is None:  # a new version: no lookup, no copy of the rows to split
        test = _split_new(df, strategy, test_size, seed, target, time, group)
        return pd.DataFrame({ROW_ID: df[ROW_ID].to_numpy(), "split": _sides(test)})
    known = dict(zip(inherit[ROW_ID], inherit["split"], strict=True))
    assigned = df[ROW_ID].map(known)
    if group is not None and strategy in ("random", "stratified", "group") and group in df.columns:
        # a new row of a group already split goes where its group is (test wins: see group_sides)
        assigned = assigned.fillna(group_sides(df[group], assigned))
    todo = df[assigned.isna()]
    if len(todo):
        test = _split_new(todo, strategy, test_size, seed, target, time, group, adding=True)
        assigned.loc[todo.index] = _sides(test).to_numpy()
    return pd.DataFrame({ROW_ID: df[ROW_ID].to_numpy(), "split": assigned.to_numpy()})


_SIDE_RANK = {"train": 1, "recent": 2, "test": 3}


def group_sides(groups: pd.Series, sides: pd.Series) -> pd.Series:
    """The side each row's group is on (``groups``: ``data.group``'s values; ``sides``: each row's side, NaN
    for a row not split yet), NaN for a group with no row split. A group split before the sides kept groups
    whole (on both sides) counts as ``test``, and one with a ``recent`` row (the retrain gate's slice) as
    ``recent``: its new rows then stay out of training, where they would teach a model the group it is
    scored on."""
    import pandas as pd

    codes = pd.factorize(groups, use_na_sentinel=False)[0]
    rank = sides.map(_SIDE_RANK).fillna(0).to_numpy(dtype=np.int64)
    best = np.zeros(int(codes.max()) + 1 if len(codes) else 0, dtype=np.int64)
    np.maximum.at(best, codes, rank)
    names = np.array([None, "train", "recent", "test"], dtype=object)
    return pd.Series(names[best[codes]], index=sides.index, dtype=object)


def group_counts(df: pd.DataFrame | pl.DataFrame, split: pd.DataFrame | pl.DataFrame, group: str) -> dict[str, Any]:
    """The groups of ``group`` on each side of ``split`` (``make_split``'s frame, in ``df``'s row order) and
    on both (``both``: 0 for a split that keeps groups whole), kept with the split's settings."""
    codes = _codes(df, group)
    sides = split["split"]
    test = (sides.cast(pl.String) == "test").to_numpy() if isinstance(sides, pl.Series) else sides.to_numpy() == "test"
    n = int(codes.max()) + 1 if len(codes) else 0
    in_test, in_train = np.bincount(codes[test], minlength=n) > 0, np.bincount(codes[~test], minlength=n) > 0
    return {"column": group, "train": int(in_train.sum()), "test": int(in_test.sum()),
            "both": int((in_test & in_train).sum())}


def _sides(test: np.ndarray) -> pd.Series:
    """'test' where ``test`` holds, else 'train', as text, built by Arrow from codes: a million Python
    strings took longer than the split itself."""
    import pandas as pd
    import pyarrow as pa

    names = pa.DictionaryArray.from_arrays(pa.array(test.astype(np.int8)), pa.array(["train", "test"]))
    return pd.Series(names.cast(pa.large_string()).to_pandas(), name="split")


def _split_new(df: pd.DataFrame | pl.DataFrame, strategy: str, test_size: float, seed: int, target: str,
               time: str | None, group: str | None, adding: bool = False) -> np.ndarray:
    """The test rows (a mask) among the rows of ``df`` (``adding``: the new rows of a split version).
    Under strategy ``column``, ``group`` is the column marking the sides (``make_split``)."""
    n = len(df)
    if strategy == "column":
        return column_sides(df, group, adding=adding)
    if strategy == "group" and not adding:
        _split_groups(_codes(df, group) if n else np.zeros(0, dtype=np.int64), group)
    if n < 2 and not adding:  # new rows of a split version may be one: they train
        raise DataError(f"the table has {n} row{'' if n == 1 else 's'} to split; the frozen test split needs at "
                        f"least 2 (one to train on, one to score the model on): add rows to the data source")
    if n < 2:
        return np.zeros(n, dtype=bool)
    if strategy == "time":
        order = np.argsort(_times(df, time), kind="stable")
        test = np.zeros(n, dtype=bool)
        cut = int(round(n * (1 - test_size)))  # the latest test_size of the rows, rounded
        if not adding:  # a new version: at least the latest row tests and the earliest trains (2 rows, 0.2: 2)
            cut = min(max(cut, 1), n - 1)
        test[order[cut:]] = True
        return test
    # numpy rather than scikit-learn's splitters: importing scikit-learn (and SciPy behind it) cost a
    # 1M-row ingest 1 s and 80 MiB, and a split is a shuffle
    rng = np.random.default_rng(seed)
    if strategy == "user":
        when = _times(df, time) if time else None
        return _per_user(_codes(df, group), test_size, rng, when)
    if strategy == "group":
        groups = _codes(df, group)
        names = int(groups.max()) + 1
        chosen = rng.permutation(names)[:_test_count(names, test_size)]
        return np.isin(groups, chosen)
    if group is not None and group in df.columns:  # random or stratified with data.group: whole groups
        classes = _codes(df, target) if strategy == "stratified" else np.zeros(n, dtype=np.int64)
        return whole_groups(_codes(df, group), classes, test_size, rng, column=None if adding else group)
    if strategy == "stratified":
        labels = _codes(df, target)
        single = (np.bincount(labels) == 1)[labels]
        if not single.any():
            return _test_rows(labels, test_size, rng)
        # a class with one row cannot be on both sides: its row trains (a model that never saw the label
        # could not be scored on it: evaluation refused the test set), the other classes are stratified
        test = np.zeros(n, dtype=bool)
        rest = np.flatnonzero(~single)
        if len(rest) >= 2:
            test[rest] = _test_rows(_first_seen(labels[rest]), test_size, rng)
        elif not adding:  # every class has one row: nothing could test (new rows of a split version train)
            _no_class_to_test(df, target)
        return test
    return _test_rows(np.zeros(n, dtype=np.int64), test_size, rng)


TEST_MARKS = ("test", "true", "1")
TRAIN_MARKS = ("train", "false", "0")


def column_sides(df: pd.DataFrame | pl.DataFrame, column: str | None, *, adding: bool = False) -> np.ndarray:
    """The test mask ``split.column`` gives (strategy ``column``): a row is test when its value is test, true
    or 1 and train when it is train, false or 0 (text in any case and spacing, booleans, integers). Any other
    value, a missing one included, stops the ingest naming the values and how many rows hold them; so does a
    new version with no row on one side (``adding``, the new rows of a split version, may be all one side).

    Why: a team with a holdout of its own (a golden set, last quarter's cases, a competition's test file)
    scores every model on exactly those rows, as Ludwig's ``split: fixed`` does, instead of a share drawn
    from them."""
    import pandas as pd

    assert column is not None
    values = df.get_column(column).to_pandas() if isinstance(df, pl.DataFrame) else df[column]
    text = values.astype("string").str.strip().str.lower()
    text = text.mask(text.isin(["1.0"]), "1").mask(text.isin(["0.0"]), "0")
    test, train = text.isin(TEST_MARKS).to_numpy(bool), text.isin(TRAIN_MARKS).to_numpy(bool)
    bad = ~(test | train)
    if bad.any():
        counts = pd.Series(values[bad].astype(object).where(values[bad].notna(), "<missing>")).value_counts()
        shown = cap_list(f"{v!r}: {n} row{'' if n == 1 else 's'}" for v, n in counts.items())
        raise DataError(f"split.column '{column}': {int(bad.sum())} row{'' if bad.sum() == 1 else 's'} say neither "
                        f"test nor train ({shown}); allowed: test or train (any case), true or false, 1 or 0 "
                        f"(a validation row is a training row here: the search draws its own folds from them)")
    if not adding and len(df) and (test.all() or not test.any()):
        side = "test" if test.all() else "train"
        raise DataError(f"split.column '{column}': all {len(df)} rows say {side}; the frozen test split needs "
                        f"rows on both sides (training rows to fit on, test rows to score on)")
    return test


def _no_class_to_test(df: pd.DataFrame | pl.DataFrame, target: str) -> None:
    """Stop a stratified split of a new version whose every class has a single row: each trains, so the
    frozen test split would be empty (it was frozen so before, and the model never scored)."""
    values = df[target].to_list()
    raise DataError(f"split.strategy stratified: every class of target '{target}' has 1 row "
                    f"({cap_list(f'{v!r}: 1' for v in values)}); a class's only row trains (a model that never "
                    f"saw a label cannot be scored on it), so the frozen test split would be empty: it needs a "
                    f"class with at least 2 rows (one to train on, one to test): add rows to the data source")


def _split_groups(groups: np.ndarray, column: str | None) -> None:
    """Refuse a ``group`` split of fewer than 2 groups (``groups``: each row's group code): its test set
    would be empty (the split keeps a group to train on), so no model could be scored on it. Ingest froze
    that empty test set before, and train then failed saying the test set held the other groups."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups >= 2:
        return
    raise ConfigError(f"data.group: column '{column}' has {n_groups} group{'' if n_groups == 1 else 's'} among the "
                      f"{len(groups)} rows to split; split.strategy 'group' puts whole groups in the test set and "
                      f"keeps at least one to train on, so it needs at least 2 (3 to train: one for the test set "
                      f"and two for the validation folds): name a column with more groups, or split.strategy "
                      f"random or stratified without data.group")


def whole_groups(groups: np.ndarray, classes: np.ndarray, share: float, rng: np.random.Generator, *,
                 column: str | None) -> np.ndarray:
    """A test mask of whole groups (``groups``: each row's group code) holding about ``share`` of the rows and
    of each class's rows (``classes``: each row's class code; one class for a random split), as scikit-learn's
    ``StratifiedGroupKFold`` balances its folds. With ``data.group`` a random or stratified test split drew
    rows, not groups: a customer's rows on both sides let the test score learn the customer.

    The groups, in an order shuffled by ``rng``, each go to the test side when that brings its share of every
    class nearer ``share`` (the distance in each class's share of its rows, so a 2 % class counts as much as
    the rest). Not largest first: on the fraud example that made the test set the 64 busiest of 1,073
    customers (21 % of the rows); in a random order it holds customers of every size. A class none of whose rows
    would train sends its smallest test group back to train (a model that never saw a label cannot be scored
    on it); each side keeps at least one group. Fewer than two groups: a ConfigError naming ``column``, or,
    ``column`` None (new rows of a split version, in groups not split yet), all train."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < 2 and column is None:
        return np.zeros(len(groups), dtype=bool)
    if n_groups < 2:
        raise ConfigError(f"data.group: column '{column}' has {n_groups} group{'' if n_groups == 1 else 's'} among "
                          f"the {len(groups)} rows to split; a test or validation split that keeps each group on one side needs "
                          f"at least 2: name a column with more groups, or leave data.group out")
    groups, classes = groups.astype(np.int64), classes.astype(np.int64)
    k = int(classes.max()) + 1
    pairs, counts = np.unique(groups * k + classes, return_counts=True)  # a group's classes, in group order
    starts = np.searchsorted(pairs // k, np.arange(n_groups + 1)).tolist()
    pair_class, pair_rows = (pairs % k).tolist(), counts.tolist()
    sizes = np.bincount(groups, minlength=n_groups)
    order = rng.permutation(n_groups)
    per_class = np.bincount(classes, minlength=k)
    weight = (1.0 / np.maximum(per_class, 1) ** 2).tolist()
    deficit = (per_class * share).tolist()  # rows of each class the test side still wants
    taken = []
    for g in order.tolist():  # take the group when ||d - v||^2 < ||d||^2 (weighted): 2 d.v > v.v
        first, end = starts[g], starts[g + 1]
        if end - first == 1:  # a group of one class (most groups): no sum over its classes
            c, rows = pair_class[first], pair_rows[first]
            if 2 * deficit[c] > rows:
                taken.append(g)
                deficit[c] -= rows
            continue
        span = range(first, end)
        if sum(weight[pair_class[i]] * pair_rows[i] * (2 * deficit[pair_class[i]] - pair_rows[i]) for i in span) > 0:
            taken.append(g)
            for i in span:
                deficit[pair_class[i]] -= pair_rows[i]
    test_group = np.zeros(n_groups, dtype=bool)
    test_group[taken] = True
    _keep_classes_trained(groups, classes, sizes, test_group)
    if not test_group.any():
        test_group[int(np.argmin(sizes))] = True
    if test_group.all():
        test_group[int(np.argmax(sizes))] = False
    return test_group[groups]


def _keep_classes_trained(groups: np.ndarray, classes: np.ndarray, sizes: np.ndarray, test_group: np.ndarray) -> None:
    """Send test groups back to train until every class has a training row (its smallest test group first)."""
    while True:
        test = test_group[groups]
        trained = np.bincount(classes[~test], minlength=int(classes.max()) + 1)
        missing = np.flatnonzero((trained == 0) & (np.bincount(classes[test], minlength=len(trained)) > 0))
        if not len(missing):
            return
        holding = np.unique(groups[test & (classes == missing[0])])
        test_group[holding[np.argmin(sizes[holding])]] = False


def _codes(df: pd.DataFrame | pl.DataFrame, column: Any) -> np.ndarray:
    """``pd.factorize(df[column], use_na_sentinel=False)[0]``: each value's code, numbered in the order the
    values first appear (a missing value gets one too); the split's draws follow that order."""
    if not isinstance(df, pl.DataFrame):
        import pandas as pd

        return pd.factorize(df[column], use_na_sentinel=False)[0]
    values = df.get_column(column)
    values = values.fill_nan(None) if values.dtype.is_float() else values  # NaN is missing, as to pandas
    seen = values.unique(maintain_order=True)  # equal values as pandas' hash table has them (-0.0 is 0.0)
    if len(seen) <= _FEW_VALUES:  # a pass per value into a byte a row: a million codes took 60 MiB more
        codes = np.zeros(len(values), dtype=np.int8)  # by a dense rank, as many by a Polars mapping
        for code, value in enumerate(seen.to_list()[1:], start=1):
            codes[(values.is_null() if value is None else (values == value).fill_null(False)).to_numpy()] = code
        return codes
    nulls = [i for i, v in enumerate(seen.to_list()) if v is None]
    positions = pl.Series([i for i in range(len(seen)) if i not in nulls], dtype=pl.UInt32)
    mapped = values.replace_strict(seen.drop_nulls(), positions, return_dtype=pl.UInt32)
    return (mapped.fill_null(nulls[0]) if nulls else mapped).to_numpy()


_FEW_VALUES = 32  # values coded a pass each (classes, a few groups)


def _first_seen(codes: np.ndarray) -> np.ndarray:
    """``codes`` (integers) renumbered 0, 1, ... in the order each first appears (``pd.factorize``'s)."""
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.empty(len(first), dtype=np.intp)
    order[np.argsort(first, kind="stable")] = np.arange(len(first))
    return order[inverse.reshape(-1)]


def _times(df: pd.DataFrame | pl.DataFrame, column: Any) -> np.ndarray:
    """``df[column]`` as datetimes to sort by (text read as ``pd.to_datetime`` reads it, NaT where not)."""
    if isinstance(df, pl.DataFrame):
        values = df.get_column(column)
        if values.dtype == pl.Date or (isinstance(values.dtype, pl.Datetime) and values.dtype.time_zone is None):
            return values.to_numpy()  # the same instants, NaT for a gap: sorted as pandas' would be
        df = values.to_frame().to_pandas()
    import pandas as pd

    return pd.to_datetime(df[column], errors="coerce", format="mixed").to_numpy()


def _per_user(codes: np.ndarray, test_size: float, rng: np.random.Generator,
              times: np.ndarray | None = None) -> np.ndarray:
    """``test_size`` of each user's rows (rounded, at least one, never all: a user with one row stays in
    train): drawn at random, or with ``times`` each user's latest (leave the last ones out); every test
    user is also a training user, and no row is on both sides. ``codes``: each row's user (``_codes``)."""
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


def fold_scheme(df: pd.DataFrame, *, strategy: str, n_folds: int, target: str, group: str | None = None) -> str:
    """How :func:`make_folds` partitions these rows: ``holdout`` (one fold, or a time split),
    ``group-holdout`` (one fold with ``data.group``: whole groups, :func:`whole_groups`), ``group`` (the
    group strategy: scikit-learn's ``GroupKFold``), ``stratified``, ``stratified-group``
    (``StratifiedGroupKFold``), ``grouped`` (groups dealt in a seeded order: a random split with
    ``data.group``, or a stratified one that cannot stratify its groups) or ``kfold``. A search names its
    study after the schemes whose folds changed (``families/tabular/stage``), so one rule decides both.

    ``data.group`` with one group among the rows is refused (ConfigError): no fold can keep a group apart
    from its siblings, and the folds used to split that group silently (or, under the group strategy,
    scikit-learn failed with a traceback)."""
    return _scheme(df, strategy, n_folds, target, group)[0]


_GROUPED = ("group", "stratified-group", "grouped")


def _scheme(df: pd.DataFrame, strategy: str, n_folds: int, target: str, group: str | None) -> tuple[str, int]:
    """(:func:`fold_scheme`, the groups of ``group`` among the rows: 0 when not counted)."""
    if strategy == "time" or (n_folds == 1 and (group is None or group not in df.columns)):
        return "holdout", 0
    n_groups = int(df[group].astype(str).nunique()) if group is not None and group in df.columns else 0
    if group is not None and group in df.columns and n_groups < 2:
        _too_few_groups(group, n_groups, len(df), strategy)
    if n_folds == 1:
        return "group-holdout", n_groups
    if strategy == "group":
        return "group", n_groups
    if strategy == "stratified":
        smallest = _smallest_class(df, target)
        if smallest >= 2 and not n_groups:
            return "stratified", n_groups
        if smallest >= 2 and n_groups >= min(n_folds, smallest):
            return "stratified-group", n_groups
    return ("grouped" if n_groups >= 2 else "kfold"), n_groups


def _smallest_class(df: pd.DataFrame, target: str) -> int:
    import pandas as pd

    return int(pd.Series(df[target].astype(str).to_numpy()).value_counts().min())


def _too_few_groups(group: str, n_groups: int, rows: int, strategy: str) -> None:
    """Refuse ``data.group`` with fewer than 2 groups among the training rows, saying what is needed."""
    if strategy == "group":
        test = (" (split.strategy 'group' put the others in the test set: it needs at least 3 groups in all, "
                "one for the test set and two for the folds)")
        fix = "name a column with more groups, or split.strategy random or stratified without data.group"
    else:
        test, fix = "", "name a column with more groups, or leave data.group out"
    raise ConfigError(f"data.group: column '{group}' has {n_groups} group{'' if n_groups == 1 else 's'} among the "
                      f"{rows} training rows{test}; cross-validation folds grouped by it need at least 2 (one to "
                      f"validate on while the others train): {fix}")


@dataclass(frozen=True)
class FoldGroups:
    """The groups of ``data.group`` among the rows a search folds, and the folds each partition has."""

    column: str
    rows: int
    groups: int
    folds: int   # folds a partition has: train.cv_folds, fewer when the groups (or a class's rows) are fewer
    asked: int   # train.cv_folds
    asked_by: str = "train.cv_folds"  # what asked for the folds (the text search: its cross-validation folds)

    @property
    def one_partition(self) -> bool:
        """Each group is a fold of its own: every seed gives the same partition, so repeats of k-fold
        (``search.cv_repeats``) would add fits and no evidence, and report a spread over copies."""
        return self.groups <= self.folds

    @property
    def warning(self) -> str | None:
        """What the user should know when the groups, not train.cv_folds, decide the folds."""
        if self.groups >= self.asked:
            return None
        meant = f" (set train.cv_folds: {self.groups} to say this is meant)" if self.asked_by == "train.cv_folds" else ""
        return (f"data.group: column '{self.column}' has {self.groups} groups among the {self.rows} training rows, "
                f"fewer than {self.asked_by} ({self.asked}): the search validates on {self.folds} folds, "
                f"{'one group each, as one partition (not repeated)' if self.one_partition else 'of whole groups'}, "
                f"so its validation score rests on {self.groups} groups; a column with at least {self.asked} groups "
                f"gives the folds asked for{meant}")


def fold_groups(df: pd.DataFrame, *, strategy: str, n_folds: int, target: str,
                group: str | None = None, asked_by: str = "train.cv_folds") -> FoldGroups | None:
    """The groups :func:`make_folds` keeps whole and how many folds it makes of them; None when its folds
    are not grouped (no ``data.group``, one fold, a time split). ``asked_by``: what set ``n_folds``, as its
    :attr:`FoldGroups.warning` names it (the text search's fixed folds are not train.cv_folds)."""
    scheme, groups = _scheme(df, strategy, n_folds, target, group)
    if scheme not in _GROUPED:
        return None
    assert group is not None
    limit = _smallest_class(df, target) if scheme == "stratified-group" else groups  # stratified: groups >= it
    return FoldGroups(column=group, rows=len(df), groups=groups, folds=min(n_folds, limit), asked=n_folds,
                      asked_by=asked_by)


def make_folds(df: pd.DataFrame, *, strategy: str, n_folds: int, seed: int, target: str,
               time: str | None = None, group: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation folds over the training rows (positions), by :func:`fold_scheme`. ``n_folds == 1`` or a
    time split: one holdout of the latest/random 20% (with ``data.group`` and not a time split, 20 % in
    whole groups: the holdout drew rows, so the search scored its trials on customers they trained on).
    With ``group`` (``data.group``) a group's rows stay in one fold under every strategy (stratified:
    ``StratifiedGroupKFold``), not only under the ``group`` test split: a customer's rows on both sides of a
    fold let the out-of-fold figures, and the threshold and blend chosen on them, learn that customer. On the fraud example (bursts of frauds on one card) the
    folds grouped by ``customer_id`` scored new traffic f1_macro +0.047 / +0.016 (seeds 0 / 1) and the
    shifted quarter +0.050 / +0.060, while the validation score fell from 0.788 / 0.775 (above what new
    traffic gave) to 0.744 / 0.732 (just below it)."""
    import pandas as pd
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    scheme = fold_scheme(df, strategy=strategy, n_folds=n_folds, target=target, group=group)
    plan = fold_groups(df, strategy=strategy, n_folds=n_folds, target=target, group=group) \
        if scheme in _GROUPED else None
    n = len(df)
    idx = np.arange(n)
    if scheme == "holdout":
        if strategy == "time":
            order = np.argsort(pd.to_datetime(df[time], errors="coerce", format="mixed").to_numpy(), kind="stable")
        else:
            order = np.random.default_rng(seed).permutation(n)
        cut = int(round(n * 0.8))
        return [(np.sort(order[:cut]), np.sort(order[cut:]))]
    if scheme == "group-holdout":  # 20 % of the rows in whole groups (of each class's, stratified)
        classes = pd.factorize(df[target].astype(str))[0] if strategy == "stratified" else np.zeros(n, np.int64)
        valid = whole_groups(pd.factorize(df[group].astype(str))[0], classes, 0.2, np.random.default_rng(seed),
                             column=str(group))
        return [(idx[~valid], idx[valid])]
    if scheme == "stratified":
        y = df[target].astype(str).to_numpy()
        k = min(n_folds, _smallest_class(df, target))
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y))
    if scheme == "kfold":
        return list(KFold(n_splits=min(n_folds, n), shuffle=True, random_state=seed).split(idx))
    assert plan is not None and group is not None
    groups_of = df[group].astype(str).to_numpy()
    if scheme == "group":
        return list(GroupKFold(n_splits=plan.folds).split(idx, groups=groups_of))
    if scheme == "stratified-group":
        # data.group: a group's rows (a customer's, a card's burst of frauds) stay in one fold, or the
        # out-of-fold figures, and the threshold tuned on them, learn it from its siblings
        from sklearn.model_selection import StratifiedGroupKFold

        y = df[target].astype(str).to_numpy()
        return list(StratifiedGroupKFold(n_splits=plan.folds, shuffle=True, random_state=seed).split(idx, y,
                                                                                                    groups_of))
    return _dealt_group_folds(groups_of, plan.folds, seed)


def _dealt_group_folds(groups_of: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds keeping each group whole: the groups, in an order shuffled by ``seed``, each go to the
    fold with the fewest rows so far. A small table's repeats of k-fold (``search.cv_repeats``: seeds seed,
    seed + 1, ...) are then other partitions (unshuffled, ``GroupKFold`` gave every repeat the same folds),
    and the folds stay within one group's size of each other (``GroupKFold(shuffle=True)`` deals the
    groups by count: on 279 rows in 30 groups its folds held 36 to 76 rows)."""
    names, inverse, sizes = np.unique(groups_of, return_inverse=True, return_counts=True)
    load = np.zeros(k, dtype=np.int64)
    fold_of = np.empty(len(names), dtype=np.int64)
    for g in np.random.default_rng(seed).permutation(len(names)):
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    row_fold = fold_of[inverse]
    idx = np.arange(len(groups_of))
    return [(idx[row_fold != f], idx[row_fold == f]) for f in range(k)]
