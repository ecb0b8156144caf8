"""The label-issue model through LightGBM's C API (ctypes on the installed package's shared library).

Why: ``import lightgbm`` imports scikit-learn, and both import pandas (with pyarrow) and SciPy:
about +160 MiB of resident memory before the first tree, while loading ``lib_lightgbm`` alone costs
~3 MiB. The data-quality profile needs nothing from them but a small classifier per fold, and on a
1M-row table those imports decide whether its peak stays under 3x the Parquet size
(benchmarks/RESULTS.md). So the profile fits that classifier here, with the parameters
``LGBMClassifier`` would pass (the same probabilities, tests/data/test_label_issues.py); training
(``modelloop.models``) keeps using the lightgbm package. The library is the one inside the
installed ``lightgbm`` package, found without importing the package.

Signatures: ``include/LightGBM/c_api.h`` (LightGBM 4.x); every call returns 0, or -1 with the
reason in ``LGBM_GetLastError()``."""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from functools import cache
from pathlib import Path

import numpy as np

__all__ = ["LightGBMLibError", "available", "fit_predict_proba", "load_library"]

_FLOAT32, _FLOAT64 = 0, 1  # C_API_DTYPE_*
_PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL: probabilities for a classifier
_LIB_NAME = {"win32": "lib_lightgbm.dll", "darwin": "lib_lightgbm.dylib"}.get(sys.platform, "lib_lightgbm.so")


class LightGBMLibError(RuntimeError):
    """LightGBM's shared library is missing or refused a call (the message is LightGBM's own)."""


@cache
def load_library() -> ctypes.CDLL:
    """``lib_lightgbm`` of the installed ``lightgbm`` package, loaded once; raises ``LightGBMLibError``."""
    spec = importlib.util.find_spec("lightgbm")  # a top-level name: finds the package, does not import it
    if spec is None or not spec.submodule_search_locations:
        raise LightGBMLibError("the lightgbm package is not installed; `pip install lightgbm`")
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / _LIB_NAME
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise LightGBMLibError(f"cannot load LightGBM's library {path}: {exc}") from exc
    lib.LGBM_GetLastError.restype = ctypes.c_char_p
    return lib


def available() -> bool:
    """Whether ``load_library`` succeeds (callers fall back to the lightgbm package when not)."""
    try:
        load_library()
    except LightGBMLibError:
        return False
    return True


def _params(n_classes: int, categorical: list[int], seed: int) -> str:
    """``LGBMClassifier(n_estimators=60, learning_rate=0.1, num_leaves=15, min_child_samples=10,
    subsample=0.8, subsample_freq=1, colsample_bytree=0.8, n_jobs=1, random_state=seed, verbose=-1)``
    in LightGBM's own names (without ``num_iterations``: the caller loops over the trees)."""
    p = {"objective": "binary" if n_classes == 2 else "multiclass", "learning_rate": 0.1, "num_leaves": 15,
         "min_data_in_leaf": 10, "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8,
         "num_threads": 1, "seed": seed, "verbose": -1}
    if n_classes > 2:
        p["num_class"] = n_classes
    if categorical:
        p["categorical_feature"] = ",".join(map(str, sorted(categorical)))
    return " ".join(f"{k}={v}" for k, v in p.items())


def fit_predict_proba(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, n_classes: int,
                      categorical: list[int], seed: int, n_trees: int = 60) -> np.ndarray:
    """(len(x_test), n_classes) probabilities from a model fit on ``x_train``, ``y_train`` (codes 0..n_classes-1).

    Float matrices with NaN for missing values; ``categorical`` are column positions holding codes.
    """
    lib = load_library()
    params = _params(n_classes, categorical, seed).encode()
    x_train = np.ascontiguousarray(x_train, dtype=np.float64)
    x_test = np.ascontiguousarray(x_test, dtype=np.float64)
    label = np.ascontiguousarray(y_train, dtype=np.float32)
    dataset, booster = ctypes.c_void_p(), ctypes.c_void_p()
    try:
        _check(lib, lib.LGBM_DatasetCreateFromMat(
            _ptr(x_train), ctypes.c_int(_FLOAT64), ctypes.c_int32(x_train.shape[0]),
            ctypes.c_int32(x_train.shape[1]), ctypes.c_int(1), ctypes.c_char_p(params), None,
            ctypes.byref(dataset)))
        _check(lib, lib.LGBM_DatasetSetField(dataset, ctypes.c_char_p(b"label"), _ptr(label),
                                             ctypes.c_int(len(label)), ctypes.c_int(_FLOAT32)))
        _check(lib, lib.LGBM_BoosterCreate(dataset, ctypes.c_char_p(params), ctypes.byref(booster)))
        finished = ctypes.c_int(0)
        for _ in range(n_trees):  # like lightgbm.train, every round runs even after one that finds no split
            _check(lib, lib.LGBM_BoosterUpdateOneIter(booster, ctypes.byref(finished)))
        width = 1 if n_classes == 2 else n_classes
        out = np.empty((x_test.shape[0], width), dtype=np.float64)  # row-major: row i's K probabilities
        out_len = ctypes.c_int64(0)
        _check(lib, lib.LGBM_BoosterPredictForMat(
            booster, _ptr(x_test), ctypes.c_int(_FLOAT64), ctypes.c_int32(x_test.shape[0]),
            ctypes.c_int32(x_test.shape[1]), ctypes.c_int(1), ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0),
            ctypes.c_int(-1), ctypes.c_char_p(b"num_threads=1"), ctypes.byref(out_len), _ptr(out)))
        if out_len.value != out.size:
            raise LightGBMLibError(f"LightGBM returned {out_len.value} predictions, expected {out.size}")
    finally:
        if booster:
            lib.LGBM_BoosterFree(booster)
        if dataset:
            lib.LGBM_DatasetFree(dataset)
    return np.column_stack([1.0 - out[:, 0], out[:, 0]]) if n_classes == 2 else out


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def _check(lib: ctypes.CDLL, ret: int) -> None:
    if ret != 0:
        raise LightGBMLibError(f"LightGBM: {lib.LGBM_GetLastError().decode('utf-8', 'replace')}")
