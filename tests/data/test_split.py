"""The frozen test split of a classification table: stratified, and a class with one row trains."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from modelloop.data.snapshot import ROW_ID
from modelloop.data.split import make_split


def _table(counts: dict[str, int]) -> pd.DataFrame:
    y = [c for c, k in counts.items() for _ in range(k)]
    return pd.DataFrame({ROW_ID: np.arange(len(y)), "y": y})


def test_a_class_with_one_row_always_trains_and_the_others_stay_stratified():
    df = _table({"a": 300, "b": 200, "c": 90, "d": 9, "rare": 1})
    for seed in range(20):
        split = make_split(df, strategy="stratified", test_size=0.2, seed=seed, target="y")
        sides = dict(zip(split[ROW_ID], split["split"], strict=True))
        assert sides[df.index[df["y"] == "rare"][0]] == "train"  # in test, the model could not be scored on it
        test = df[split["split"].to_numpy() == "test"]["y"].value_counts()
        assert test.to_dict() == {"a": 60, "b": 40, "c": 18, "d": 2}  # each other class keeps its 20 %


def test_every_class_with_two_rows_or_more_is_stratified_exactly():
    df = _table({"a": 50, "b": 30, "c": 20})
    split = make_split(df, strategy="stratified", test_size=0.2, seed=0, target="y")
    assert df[split["split"].to_numpy() == "test"]["y"].value_counts().to_dict() == {"a": 10, "b": 6, "c": 4}


@pytest.mark.parametrize("strategy", ["stratified", "random"])
def test_cv_folds_keep_a_groups_rows_together_under_any_split(strategy):
    """data.group keeps a group's rows in one fold whatever split.strategy (a card's burst of frauds on
    both sides of a fold let the out-of-fold figures learn the card); stratified folds keep the class share."""
    from modelloop.data.split import make_folds

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 300, 3000)
    y = (rng.random(3000) < np.where(groups % 10 == 0, 0.5, 0.02)).astype(int)  # some groups rich in positives
    df = pd.DataFrame({"y": y, "card": [f"c{g}" for g in groups]})
    folds = make_folds(df, strategy=strategy, n_folds=5, seed=0, target="y", group="card")
    assert len(folds) == 5 and sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(3000))
    for tr, va in folds:
        assert not set(df["card"].iloc[tr]) & set(df["card"].iloc[va])
        if strategy == "stratified":
            assert abs(y[va].mean() - y.mean()) < 0.02
    ungrouped = make_folds(df, strategy=strategy, n_folds=5, seed=0, target="y")
    assert any(set(df["card"].iloc[tr]) & set(df["card"].iloc[va]) for tr, va in ungrouped)


def test_fewer_groups_than_folds_still_keep_each_group_in_one_fold():
    """Three groups and five stratified folds: grouped folds (three), never a group on both sides."""
    from modelloop.data.split import make_folds

    df = pd.DataFrame({"y": [0, 1] * 30, "card": ["a", "b", "c"] * 20})
    folds = make_folds(df, strategy="stratified", n_folds=5, seed=0, target="y", group="card")
    assert len(folds) == 3 and all(not set(df["card"].iloc[tr]) & set(df["card"].iloc[va]) for tr, va in folds)


def test_grouped_folds_of_each_repeat_are_another_partition():
    """A small table's repeats of k-fold are make_folds with seeds 0, 1, ... (search.cv_repeats): grouped
    folds under a random split must differ between seeds, or every repeat re-fits the same partition and
    the repeats buy nothing (GroupKFold unshuffled did)."""
    from modelloop.data.split import make_folds

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=400), "card": [f"c{g}" for g in rng.integers(0, 40, 400)]})
    partitions = [make_folds(df, strategy="random", n_folds=5, seed=seed, target="y", group="card")
                  for seed in range(3)]
    for folds in partitions:
        assert len(folds) == 5
        assert all(not set(df["card"].iloc[tr]) & set(df["card"].iloc[va]) for tr, va in folds)
    as_sets = [{frozenset(va.tolist()) for _, va in folds} for folds in partitions]
    assert as_sets[0] != as_sets[1] and as_sets[1] != as_sets[2]


def test_dealt_group_folds_stay_balanced_and_a_stratified_search_that_cannot_stratify_deals_them():
    """Groups of very different sizes: each seeded partition's folds stay within one group's size of each
    other (scikit-learn's shuffled GroupKFold dealt them by count: 36 to 76 rows on 279); a stratified
    search whose smallest class has one row cannot stratify and deals its groups (scheme 'grouped')."""
    from modelloop.data.split import fold_scheme, make_folds

    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 20, 30)
    df = pd.DataFrame({"card": np.repeat([f"c{i}" for i in range(30)], sizes), "y": rng.normal(size=sizes.sum())})
    for seed in range(3):
        folds = make_folds(df, strategy="random", n_folds=5, seed=seed, target="y", group="card")
        rows = [len(va) for _, va in folds]
        assert max(rows) - min(rows) <= sizes.max() and sum(rows) == len(df)
    labels = df.assign(y=["a"] + ["b", "c"] * ((len(df) - 1) // 2) + ["b"] * ((len(df) - 1) % 2))
    assert fold_scheme(labels, strategy="stratified", n_folds=5, target="y", group="card") == "grouped"
    assert fold_scheme(labels, strategy="stratified", n_folds=5, target="y") == "kfold"
    assert fold_scheme(labels.iloc[1:], strategy="stratified", n_folds=5, target="y", group="card") == \
        "stratified-group"
    assert fold_scheme(df, strategy="group", n_folds=5, target="y", group="card") == "group"


@pytest.mark.parametrize("strategy", ["stratified", "random", "group"])
def test_a_group_column_with_one_group_is_a_config_error_naming_it(strategy):
    """data.group with one group among the training rows: no fold can keep a group apart, so the search
    refuses it (exit 2) naming the column, its count and what is needed. Before, random and stratified
    splits silently folded that group's rows on both sides, and the group strategy (two groups in all, the
    test set taking one) failed in scikit-learn's GroupKFold with a traceback."""
    from modelloop.data.split import make_folds
    from modelloop.errors import ConfigError

    df = pd.DataFrame({"y": [0, 1] * 30, "site": ["s0"] * 60})
    with pytest.raises(ConfigError, match=r"data.group: column 'site' has 1 group among the 60 training rows.*"
                                          r"need at least 2"):
        make_folds(df, strategy=strategy, n_folds=5, seed=0, target="y", group="site")


def test_no_more_groups_than_folds_is_one_partition_and_says_so():
    """Three groups and five folds: three folds of one group each, the same partition for every seed (so a
    small table's repeats would be copies: fold_groups.one_partition), and a warning naming the column,
    its groups and the folds asked for. Five groups and five folds: one partition, nothing to warn of."""
    from modelloop.data.split import fold_groups, make_folds

    df = pd.DataFrame({"y": [0, 1] * 30, "site": ["a", "b", "c"] * 20})
    for strategy in ("random", "stratified", "group"):
        plan = fold_groups(df, strategy=strategy, n_folds=5, target="y", group="site")
        assert plan is not None and plan.one_partition and plan.folds == 3
        assert plan.warning is not None and all(s in plan.warning for s in ("'site'", "3 groups", "cv_folds (5)"))
        folds = make_folds(df, strategy=strategy, n_folds=5, seed=0, target="y", group="site")
        assert sorted(len(set(df["site"].iloc[va])) for _, va in folds) == [1, 1, 1]
    five = df.assign(site=[f"s{i % 5}" for i in range(60)])
    plan = fold_groups(five, strategy="random", n_folds=5, target="y", group="site")
    assert plan is not None and plan.one_partition and plan.warning is None
    many = df.assign(site=[f"s{i % 12}" for i in range(60)])
    plan = fold_groups(many, strategy="random", n_folds=5, target="y", group="site")
    assert plan is not None and not plan.one_partition and plan.folds == 5 and plan.warning is None
    assert fold_groups(df, strategy="random", n_folds=5, target="y") is None


def _grouped_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Cards with bursts: some cards rich in positives (a card's frauds come together), 2 % elsewhere."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 300, n)
    y = (rng.random(n) < np.where(groups % 10 == 0, 0.5, 0.02)).astype(int)
    return pd.DataFrame({ROW_ID: np.arange(n), "y": y, "card": [f"c{g}" for g in groups]})


@pytest.mark.parametrize("strategy", ["stratified", "random"])
def test_the_frozen_test_split_keeps_each_group_on_one_side(strategy):
    """data.group under a random or stratified split: whole groups in the test set (it drew rows: a card's
    rows on both sides, so the test score knew the card), about test_size of the rows, and the stratified
    split keeps the positives' share (StratifiedGroupKFold-like); Polars gives the same sides as pandas."""
    import polars as pl

    df = _grouped_table()
    for seed in range(3):
        split = make_split(df, strategy=strategy, test_size=0.2, seed=seed, target="y", group="card")
        test = split["split"].to_numpy() == "test"
        assert not set(df["card"][test]) & set(df["card"][~test])
        assert 0.17 <= test.mean() <= 0.23
        if strategy == "stratified":
            assert abs(df["y"][test].mean() - df["y"].mean()) < 0.01
        as_polars = make_split(pl.from_pandas(df), strategy=strategy, test_size=0.2, seed=seed, target="y", group="card")
        assert (as_polars["split"].cast(pl.String).to_numpy() == split["split"].to_numpy()).all()
    other = make_split(df, strategy=strategy, test_size=0.2, seed=1, target="y", group="card")
    assert (other["split"] != split["split"]).any()  # the seed draws other groups
    ungrouped = make_split(df, strategy=strategy, test_size=0.2, seed=0, target="y")
    test = ungrouped["split"].to_numpy() == "test"
    assert set(df["card"][test]) & set(df["card"][~test])  # without data.group rows are drawn, as before


def test_whole_groups_keep_a_class_trained_and_refuse_a_single_group():
    """A class whose rows all lie in one group trains (a model that never saw it cannot be scored on it);
    one group cannot be split into two sides: a ConfigError naming the column."""
    from modelloop.errors import ConfigError

    df = pd.DataFrame({ROW_ID: np.arange(60), "y": ["a", "b"] * 29 + ["rare", "rare"],
                       "card": [f"c{i % 10}" for i in range(58)] + ["solo", "solo"]})
    for seed in range(10):
        split = make_split(df, strategy="stratified", test_size=0.2, seed=seed, target="y", group="card")
        assert set(split["split"][df["card"] == "solo"]) == {"train"}
    with pytest.raises(ConfigError, match=r"data.group: column 'card' has 1 group among the 60 rows"):
        make_split(df.assign(card="one"), strategy="random", test_size=0.2, seed=0, target="y", group="card")


def test_a_new_row_of_a_split_group_goes_where_its_group_is():
    """A derived version's new rows (not in the parent's split) join their group's side: a new row of a test
    card is tested, never trained on; a card of an older split on both sides counts as test."""
    df = _grouped_table(600)
    parent = make_split(df, strategy="stratified", test_size=0.2, seed=0, target="y", group="card")
    test_card = df["card"][parent["split"].to_numpy() == "test"].iloc[0]
    train_card = df["card"][parent["split"].to_numpy() == "train"].iloc[0]
    new = pd.DataFrame({ROW_ID: [10_000, 10_001, 10_002, 10_003], "y": [0, 1, 0, 1],
                        "card": [test_card, train_card, "new", "new"]})
    inherit = parent.copy()
    inherit.loc[inherit[ROW_ID] == int(df[ROW_ID][df["card"] == train_card].iloc[0]), "split"] = "test"  # an old split
    split = make_split(pd.concat([df, new], ignore_index=True), strategy="stratified", test_size=0.2, seed=0,
                       target="y", group="card", inherit=inherit)
    sides = dict(zip(split[ROW_ID], split["split"], strict=True))
    assert sides[10_000] == "test" and sides[10_001] == "test"
    assert sides[10_002] == sides[10_003] == "train"  # a new card alone among the new rows: not split, it trains


@pytest.mark.parametrize("strategy", ["stratified", "random", "group"])
def test_a_single_holdout_keeps_each_group_on_one_side(strategy):
    """train.cv_folds 1 with data.group: the search's holdout is 20 % of the rows in whole groups (it drew
    20 % of the rows, scoring trials on cards they trained on), stratified where the split is."""
    from modelloop.data.split import fold_scheme, make_folds

    df = _grouped_table().drop(columns=[ROW_ID])
    assert fold_scheme(df, strategy=strategy, n_folds=1, target="y", group="card") == "group-holdout"
    for seed in range(3):
        [(train, valid)] = make_folds(df, strategy=strategy, n_folds=1, seed=seed, target="y", group="card")
        assert not set(df["card"].iloc[train]) & set(df["card"].iloc[valid])
        assert sorted([*train, *valid]) == list(range(len(df))) and 0.17 <= len(valid) / len(df) <= 0.23
        if strategy == "stratified":
            assert abs(df["y"].iloc[valid].mean() - df["y"].mean()) < 0.01
    assert fold_scheme(df, strategy="time", n_folds=1, target="y", group="card") == "holdout"
    assert fold_scheme(df, strategy=strategy, n_folds=1, target="y") == "holdout"


def test_whole_groups_hold_groups_of_every_size():
    """Groups of very different sizes (a few busy customers, many quiet ones): the test set holds about
    test_size of the groups too, of every size. Placing the largest first made it the 64 busiest of the
    fraud example's 1,073 customers."""
    rng = np.random.default_rng(0)
    sizes = rng.geometric(0.08, 1000)
    df = pd.DataFrame({ROW_ID: np.arange(sizes.sum()), "y": rng.integers(0, 2, sizes.sum()),
                       "customer": np.repeat(np.arange(1000), sizes)})
    split = make_split(df, strategy="stratified", test_size=0.2, seed=0, target="y", group="customer")
    test = split["split"].to_numpy() == "test"
    tested = df["customer"][test].unique()
    assert 0.15 <= len(tested) / 1000 <= 0.25 and 0.18 <= test.mean() <= 0.22
    assert np.median(sizes[tested]) <= 1.5 * np.median(sizes)
