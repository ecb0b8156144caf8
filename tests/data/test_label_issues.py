"""The label-issue folds are scikit-learn's, drawn with numpy (the profile does not import scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest

from modelloop.data.label_issues import assign_folds


@pytest.mark.parametrize(("counts", "folds", "seed"), [
    ([500, 500], 5, 0), ([50, 23, 7, 300], 5, 1), ([3, 40], 5, 2), ([6, 6, 6], 3, 3), ([1000, 2, 30], 3, 4),
    ([700, 300], 10, 11),
])
def test_folds_are_scikit_learns(counts: list[int], folds: int, seed: int) -> None:
    """StratifiedKFold when every class has ``folds`` rows, else KFold; shuffled, same random_state."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))  # codes in any order
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if min(counts) >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    expected = np.empty(len(y), dtype=np.int64)
    for f, (_, te) in enumerate(splitter.split(np.zeros(len(y)), y)):
        expected[te] = f
    assert np.array_equal(assign_folds(y, folds, seed), expected)
