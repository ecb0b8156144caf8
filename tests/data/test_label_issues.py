"""The label-issue model: the ctypes booster gives LGBMClassifier's probabilities, the numpy folds are
scikit-learn's, and the profile's default path loads neither the lightgbm package nor pandas, SciPy or
scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from modelloop.data import _lgbm_capi
from modelloop.data.label_issues import assign_folds, find_label_issues, out_of_fold_proba


def _table(n_classes: int, n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two numbers (one with NaN), a categorical code column (with NaN) and noise; labels from all three."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 2] = rng.integers(0, 6, n)
    x[rng.random(n) < 0.1, 1] = np.nan
    x[rng.random(n) < 0.05, 2] = np.nan
    score = x[:, 0] + np.nan_to_num(x[:, 1]) + np.isin(x[:, 2], [1, 4]) + rng.normal(0, 0.5, n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return x, y.astype(np.int64)


def _package_oof(x: np.ndarray, y: np.ndarray, folds: int, seed: int, cats: list[int]) -> np.ndarray:
    """The same folds with lightgbm's LGBMClassifier (what out_of_fold_proba used before the C API)."""
    import lightgbm as lgb

    out = np.zeros((len(y), int(y.max()) + 1))
    fold = assign_folds(y, folds, seed)
    for f in range(folds):
        tr, te = fold != f, fold == f
        est = lgb.LGBMClassifier(n_estimators=60, learning_rate=0.1, num_leaves=15, min_child_samples=10,
                                 subsample=0.8, subsample_freq=1, colsample_bytree=0.8, n_jobs=1,
                                 random_state=seed, verbose=-1)
        est.fit(x[tr], y[tr], categorical_feature=cats)
        out[te] = est.predict_proba(x[te])
    return out


@pytest.mark.parametrize("n_classes", [2, 3])
def test_ctypes_booster_matches_lgbmclassifier(n_classes: int) -> None:
    x, y = _table(n_classes)
    ours = out_of_fold_proba(x, y, folds=4, seed=5, categorical=[2])
    assert ours.shape == (len(y), n_classes)
    np.testing.assert_allclose(ours, _package_oof(x, y, 4, 5, [2]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0)


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


def test_a_class_missing_from_a_training_fold_keeps_its_column() -> None:
    x, y = _table(2, n=200)
    y[:2] = 2  # class 2 has 2 rows: some training folds lack it, its column is 0 there
    proba = out_of_fold_proba(x, y, folds=5, seed=0, categorical=[2])
    assert proba.shape == (200, 3) and np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_folds_fit_two_at_a_time_give_the_probabilities_of_one_after_the_other(
        n_classes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _table(n_classes)
    together = out_of_fold_proba(x, y, folds=5, seed=3, categorical=[2])
    monkeypatch.setattr("modelloop.data.label_issues._parallel_folds", lambda x: 1)
    assert np.array_equal(together, out_of_fold_proba(x, y, folds=5, seed=3, categorical=[2]))


def test_planted_flips_are_found() -> None:
    import polars as pl

    x, y = _table(2, n=2000, seed=3)
    flipped = np.random.default_rng(4).choice(len(y), 40, replace=False)
    y[flipped] = 1 - y[flipped]
    df = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": [f"k{v}" for v in x[:, 2]], "d": x[:, 3], "y": y})
    res = find_label_issues(df, "y", folds=5, seed=0)
    assert len(set(s["row"] for s in res.suspects) & set(flipped.tolist())) >= 25
    assert res.features == ["a", "b", "c", "d"] and res.checked_rows == 2000


def test_without_the_shared_library_the_lightgbm_package_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise _lgbm_capi.LightGBMLibError("cannot load LightGBM's library /nowhere/lib_lightgbm.so")

    x, y = _table(3, n=600)
    expected = out_of_fold_proba(x, y, folds=3, seed=0, categorical=[2])
    monkeypatch.setattr(_lgbm_capi, "load_library", missing)
    assert not _lgbm_capi.available()
    np.testing.assert_allclose(out_of_fold_proba(x, y, folds=3, seed=0, categorical=[2]), expected, atol=1e-9)


def test_a_refused_call_raises_lightgbms_message() -> None:
    x, y = _table(3, n=100)
    y[0] = 5  # not one of the model's 3 classes
    with pytest.raises(_lgbm_capi.LightGBMLibError, match=r"LightGBM: Label must be in \[0, 3\), but found 5"):
        _lgbm_capi.fit_predict_proba(x, y, x, n_classes=3, categorical=[2], seed=0)


def test_profile_loads_no_pandas_scipy_sklearn_or_lightgbm_package() -> None:
    """The benchmark's entry point (profile on a Polars frame) in a fresh interpreter."""
    code = textwrap.dedent("""
        import json, sys
        import numpy as np, polars as pl
        from modelloop.data.quality import profile
        from modelloop.data.schema import Schema

        rng = np.random.default_rng(0)
        n = 2000
        x = rng.normal(size=n)
        df = pl.DataFrame({"x": x, "c": rng.choice(["a", "b", "c"], n), "when": pl.datetime_range(
            pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1) + pl.duration(minutes=n - 1), "1m", eager=True),
            "y": ((x + rng.normal(0, 0.5, n)) > 0).astype(np.int64)})
        schema = Schema(columns={"x": "numeric", "c": "categorical", "when": "datetime", "y": "categorical"},
                        target="y")
        report = profile(df, schema)
        report.to_html()
        print(json.dumps({"rows": report.sampled.get("label_issues_rows", 0),
                          "loaded": [m for m in ("lightgbm", "sklearn", "scipy", "pandas", "pyarrow")
                                     if m in sys.modules]}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"rows": 2000, "loaded": []}
