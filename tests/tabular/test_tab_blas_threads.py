"""The tabular search fits with BLAS limited to its ``n_jobs`` threads: BLAS's threads spin-wait for
each other, and two of them on a loaded 2-core machine made one linear trial 10x the CPU (issue 27)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info, threadpool_limits

from modelloop.data.schema import Schema
from modelloop.data.split import make_folds
from modelloop.families.tabular import search


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_linear_trials_and_the_refit_run_with_one_blas_thread(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({f"x{i}": rng.normal(size=200) for i in range(4)})
    y = pd.Series((X["x0"] + rng.normal(0, 0.5, 200) > 0).astype(int), name="y")
    seen: list[set[int]] = []
    fit = search.fit_estimator

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return fit(*args, **kwargs)

    monkeypatch.setattr(search, "fit_estimator", spy)
    folds = make_folds(pd.DataFrame({"y": y}), strategy="stratified", n_folds=3, seed=0, target="y")
    settings = search.SearchSettings(task="binary", metric="f1_macro", families=["linear"], budget=None,
                                     n_trials=2)
    with threadpool_limits(limits=2, user_api="blas"):  # as a 2-core machine starts, whatever this one has
        before = _blas_threads()
        search.run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds,
                          settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s",
                          work_dir=tmp_path / "w")
        after = _blas_threads()
    assert before == {2}
    assert len(seen) == 2 * 3 + 1  # two trials of three folds, then the refit on all rows
    assert all(s == {1} for s in seen)
    assert after == before
