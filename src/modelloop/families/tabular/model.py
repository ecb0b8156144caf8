"""Tabular models: feature preparation, the four estimator families, and the served model object.

The same three pieces are used at train time (the search), at predict time (evaluate, serving) and at
export time (ONNX), so they must be deterministic functions of the raw frame and the schema:

* :func:`prepare_features` turns a raw frame into the *prepared frame*: numerics as float64,
  categoricals as ``object`` strings with ``np.nan`` for missing, datetimes split into numeric parts.
* :func:`build_estimator` returns an unfitted scikit-learn ``Pipeline`` (``prep`` ColumnTransformer
  + ``model``) that takes the prepared frame. The ColumnTransformer output is a plain numpy array, so
  XGBoost sees feature names ``f0, f1, ...`` (its ONNX converter requires that).
* :class:`TabularModel` ties a fitted estimator to the schema, the original class labels and the
  decision threshold; it is what gets registered, pickled and served.

Encoding choices (each one also converts to ONNX, see ``modelloop.families.tabular.export``):

* boosting: numerics pass through (NaN handled natively); categoricals go through
  ``OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=nan)``, so unseen *and* missing
  categories both reach the trees as NaN (native missing-value handling). LightGBM is told which
  columns are categorical (``categorical_feature`` indices); XGBoost treats the codes as ordered
  numbers because its ONNX converter has no categorical splits.
* linear: median imputation with missing indicators + scaling for numerics; most-frequent imputation
  + one-hot encoding (rare levels merged, unseen levels ignored) for categoricals.
* catboost: numerics pass through (NaN native); categoricals stay strings (missing as
  ``CATBOOST_MISSING``) and CatBoost encodes them itself with ordered target statistics, its strength on
  small and categorical tables (issue 27). CatBoost's ONNX exporter has no categorical features, so a
  CatBoost model over categoricals is served natively (the runtime says so); over numerics only it
  converts (``export.py``).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from ...data.dates import parse_datetimes
from ...data.schema import Schema
from ...errors import ConfigError, DataError, StateError, cap_list
from ...evaluation.metrics import labels_from_proba
from .columns import DATETIME_PARTS, prepared_columns

__all__ = [
    "categorical_indices",
    "DATETIME_PARTS",
    "FAMILIES",
    "TASKS",
    "TabularModel",
    "balanced_weights",
    "multiclass_weights",
    "build_estimator",
    "encode_labels",
    "fit_estimator",
    "jsonable",
    "prepare_features",
    "prepared_columns",
    "raw_column",
]

FAMILIES: tuple[str, ...] = ("lightgbm", "xgboost", "linear", "catboost")
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}
_EPOCH = pd.Timestamp("1970-01-01")
CATBOOST_MISSING = "__missing__"  # a missing categorical as CatBoost sees it (it takes no NaN in a category)


# --------------------------------------------------------------------------- feature preparation
def prepare_features(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The prepared frame for ``schema.features()``: one deterministic mapping for train and serving.

    numeric/boolean -> float64 (True = 1), categorical -> object strings with ``np.nan`` for missing
    (empty strings count as missing, so ONNX callers can feed ``""``), datetime -> float64 parts
    ``{col}__year, __month, __day, __dayofweek, __hour, __epoch`` (epoch in seconds, UTC).
    """
    features = schema.features()
    if not features:
        raise DataError(_no_features(schema))
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise DataError(f"missing feature column(s) {missing}; the model expects columns {features}")
    out: dict[str, pd.Series] = {}
    for col in features:
        kind = schema.columns[col]
        if kind == "datetime":
            out.update(_datetime_parts(df[col], col, schema.datetime_format(col)))
        elif kind == "categorical":
            out[col] = _categorical(df[col])
        elif kind == "boolean":
            out[col] = _boolean(df[col])
        else:
            out[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return pd.DataFrame(out, index=df.index)


def _categorical(s: pd.Series) -> pd.Series:
    values = s.to_numpy(dtype=object, na_value=np.nan)
    missing = pd.isna(values)
    text = np.where(missing, "", values).astype(str).astype(object)
    text[missing | (text == "")] = np.nan
    return pd.Series(text, index=s.index, dtype=object)


def _boolean(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.astype("float64")
    lowered = s.astype(object).map(lambda v: str(v).strip().lower() if pd.notna(v) else None)
    mapped = lowered.map(lambda v: 1.0 if v in _TRUE else 0.0 if v in _FALSE else np.nan)
    return mapped.astype("float64")


def _no_features(schema: Schema) -> str:
    """Why a table gives a tabular model nothing to read, naming its columns and their kinds: a table of
    Chinese reviews with ``task: classification`` said only 'the schema has no feature columns (numeric,
    categorical, boolean or datetime)', not that its review column is text, which a text model reads."""
    others = {c: k for c, k in schema.columns.items() if c not in (schema.target, schema.id)}
    text = [c for c, k in others.items() if k == "text"]
    hint = (f"; a text column ({cap_list(text)}) is read by a text model: set task: text_classification"
            if text else "; set data.columns to give a column its kind")
    shown = cap_list(f"{c} ({k})" for c, k in others.items()) or "none"
    return (f"the table has no column a tabular model reads (numeric, categorical, boolean or datetime); "
            f"its columns besides the target and id: {shown}{hint}")


def _datetime_parts(s: pd.Series, col: str, fmt: str | None) -> dict[str, pd.Series]:
    """Text is read by ``data.dates``' rules, the server's (ISO 8601, the column's one format, a
    dated spelling), each value on its own: pandas' default infers one format from the first value
    and turned every other spelling into NaT, so a column mixing ``2024-03-02 00:53:31`` (a CSV) and
    ``2024-06-14T02:29:54`` (logged JSON requests, merged by retrain) lost half its timestamps."""
    if not pd.api.types.is_datetime64_any_dtype(s):
        s = parse_datetimes(s, fmt)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    parts = {
        "year": s.dt.year, "month": s.dt.month, "day": s.dt.day,
        "dayofweek": s.dt.dayofweek, "hour": s.dt.hour,
        "epoch": (s - _EPOCH) / pd.Timedelta(seconds=1),
    }
    return {f"{col}__{p}": parts[p].astype("float64") for p in DATETIME_PARTS}


def raw_column(prepared: str, schema: Schema) -> str:
    """The raw column a prepared column came from (datetime parts map back to their column)."""
    if prepared in schema.columns:
        return prepared
    base, _, part = prepared.rpartition("__")
    return base if part in DATETIME_PARTS and base in schema.columns else prepared


# --------------------------------------------------------------------------- estimators
def build_estimator(
    family: str,
    params: dict[str, Any] | None = None,
    *,
    task: str,
    numeric_cols: list[str],
    categorical_cols: list[str],
    seed: int = 0,
    class_weight: str = "balanced",
    n_jobs: int = 1,
) -> Pipeline:
    """An unfitted ``Pipeline(prep, model)`` over the prepared frame.

    ``params`` are the family's native constructor arguments (e.g. ``num_leaves`` for LightGBM, ``C``
    or ``alpha`` for linear; ``min_frequency`` sets the linear one-hot encoder, off by default because
    skl2onnx cannot convert infrequent-category grouping). XGBoost cannot take a
    class weight in its constructor: pass :func:`balanced_weights` as ``model__sample_weight``
    (:func:`fit_estimator` does).
    """
    _check_choice("family", family, FAMILIES)
    _check_choice("task", task, TASKS)
    _check_choice("class_weight", class_weight, ("balanced", "none"))
    params = dict(params or {})
    if family == "linear":
        prep = _linear_prep(numeric_cols, categorical_cols, params.pop("min_frequency", None))
        model = _linear_model(task, params, seed, class_weight)
    elif family == "catboost":
        prep = _catboost_prep(numeric_cols, categorical_cols)
        model = _catboost_model(task, params, seed, class_weight, n_jobs, len(numeric_cols), len(categorical_cols))
    else:
        prep = _tree_prep(numeric_cols, categorical_cols)
        builder = _lightgbm_model if family == "lightgbm" else _xgboost_model
        model = builder(task, params, seed, class_weight, n_jobs)
    return Pipeline([("prep", prep), ("model", model)])


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: '{value}' is not allowed; allowed: {', '.join(allowed)}")


def _tree_prep(numeric_cols: list[str], categorical_cols: list[str]) -> ColumnTransformer:
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                             encoded_missing_value=np.nan, dtype=np.float64)
    return ColumnTransformer(
        [("num", "passthrough", list(numeric_cols)), ("cat", encoder, list(categorical_cols))],
        remainder="drop", sparse_threshold=0.0,
    )


def _catboost_prep(numeric_cols: list[str], categorical_cols: list[str]) -> ColumnTransformer:
    """Numerics as they are, then categoricals as strings (the same column order as ``_tree_prep``)."""
    parts: list[tuple[str, Any, list[str]]] = [("num", "passthrough", list(numeric_cols))]
    if categorical_cols:
        parts.append(("cat", SimpleImputer(strategy="constant", fill_value=CATBOOST_MISSING,
                                           keep_empty_features=True), list(categorical_cols)))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _linear_prep(numeric_cols: list[str], categorical_cols: list[str], min_frequency: Any) -> ColumnTransformer:
    # Missing indicators come from a separate MissingIndicator rather than SimpleImputer(add_indicator=
    # True): same columns, but skl2onnx cannot convert add_indicator (export.py converts this one).
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler())])
    indicator = MissingIndicator(features="missing-only", error_on_new=False)
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
        ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=min_frequency,
                                 sparse_output=False, dtype=np.float64)),
    ])
    return ColumnTransformer(
        [("num", numeric, list(numeric_cols)), ("missing", indicator, list(numeric_cols)),
         ("cat", categorical, list(categorical_cols))],
        remainder="drop", sparse_threshold=0.0,
    )


def _linear_model(task: str, params: dict[str, Any], seed: int, class_weight: str) -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == "regression":
        return Ridge(**{"alpha": 1.0, **params})
    weight = "balanced" if class_weight == "balanced" and task == "binary" else None  # multiclass: fit_estimator
    return LogisticRegression(**{"C": 1.0, "max_iter": 2000, "class_weight": weight,
                                 "random_state": seed, **params})


def _lightgbm_model(task: str, params: dict[str, Any], seed: int, class_weight: str, n_jobs: int) -> BaseEstimator:
    import lightgbm as lgb

    base: dict[str, Any] = {"random_state": seed, "n_jobs": n_jobs, "verbose": -1}
    if task == "regression":
        return lgb.LGBMRegressor(**{**base, **params})
    weight = "balanced" if class_weight == "balanced" and task == "binary" else None  # multiclass: fit_estimator
    return lgb.LGBMClassifier(**{**base, "class_weight": weight, **params})


def _xgboost_model(task: str, params: dict[str, Any], seed: int, class_weight: str, n_jobs: int) -> BaseEstimator:
    import xgboost as xgb

    base: dict[str, Any] = {"random_state": seed, "n_jobs": n_jobs, "verbosity": 0, "tree_method": "hist"}
    cls = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
    return cls(**{**base, **params})


def _catboost_model(task: str, params: dict[str, Any], seed: int, class_weight: str, n_jobs: int,
                    n_numeric: int, n_categorical: int) -> BaseEstimator:
    import catboost as cb

    base: dict[str, Any] = {"random_seed": seed, "thread_count": n_jobs, "verbose": 0,
                            "allow_writing_files": False,
                            "cat_features": list(range(n_numeric, n_numeric + n_categorical)) or None}
    if task == "regression":
        return cb.CatBoostRegressor(**{**base, **params})
    if task == "multiclass":
        base["loss_function"] = "MultiClass"
    weight = "Balanced" if class_weight == "balanced" and task == "binary" else None  # multiclass: fit_estimator
    return cb.CatBoostClassifier(**{**base, "auto_class_weights": weight, **params})


MAX_CLASS_WEIGHT_RATIO = 10.0  # multiclass: the rarest class weighs at most this many times the commonest


def balanced_weights(y_idx: np.ndarray, task: str, class_weight: str) -> np.ndarray | None:
    """Per-row weights for ``class_weight: balanced``; None when not weighting.

    Binary: sklearn's ``"balanced"`` (the tuned threshold settles the rest). Multiclass: the square root
    of it, capped at ``MAX_CLASS_WEIGHT_RATIO`` times the commonest class's (:func:`multiclass_weights`):
    full balancing gives a 0.1 % class of a 7-level target ~140 times a common row's weight, and the
    model then trades accuracy on the common levels for a class it still cannot find (issue 27)."""
    if task == "regression" or class_weight != "balanced":
        return None
    if task == "multiclass":
        return multiclass_weights(y_idx)[y_idx]
    return compute_sample_weight("balanced", y_idx)


def multiclass_weights(y_idx: np.ndarray) -> np.ndarray:
    """One weight per class index: sqrt(n / (K n_c)), capped at ``MAX_CLASS_WEIGHT_RATIO`` times the
    smallest, scaled so the rows' weights sum to n (a weighted row is worth one on average)."""
    counts = np.bincount(np.asarray(y_idx, dtype=np.int64)).astype(float)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = np.sqrt(counts.sum() / (present.sum() * counts[present]))
    w[present] = np.minimum(w[present], MAX_CLASS_WEIGHT_RATIO * w[present].min())
    return w * counts.sum() / float((counts * w).sum())


def fit_estimator(
    pipe: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    task: str,
    class_weight: str = "balanced",
    valid: tuple[pd.DataFrame, np.ndarray] | None = None,
    early_stopping_rounds: int = 50,
    deadline: float = math.inf,
) -> int | None:
    """Fit ``pipe`` in place; with ``valid``, boosting stops early on it. Returns the best iteration.

    Use this rather than ``pipe.fit``: it passes what the constructors cannot hold (LightGBM's
    categorical column indices, XGBoost's balanced sample weights), and early stopping needs the
    validation rows *after* preprocessing, so the two steps are fitted one after the other.

    ``deadline`` (``time.monotonic()``): boosting stops after the first round that ends past it, once
    ``DEADLINE_MIN_ROUNDS`` rounds are fitted, and keeps the rounds fitted so far (with ``valid``: the
    best of them), so ``train.budget`` bounds every trial. A linear model cannot stop inside its fit
    (scikit-learn's solvers have no callback): it runs to the end, and the caller checks the deadline
    between fits.
    """
    prep, model = pipe.named_steps["prep"], pipe.named_steps["model"]
    family = _family_of(model)
    Xt = prep.fit_transform(X, y)
    # XGBoost takes no class weight in its constructor; multiclass weights are tempered for every family
    weights = balanced_weights(y, task, class_weight) if family == "xgboost" or task == "multiclass" else None
    if family == "linear":
        model.fit(Xt, y, sample_weight=weights)
        return None
    Xv = prep.transform(valid[0]) if valid is not None else None
    if family == "lightgbm":
        return _fit_lightgbm(model, Xt, y, weights, categorical_indices(prep), Xv, valid, early_stopping_rounds,
                             deadline)
    if family == "catboost":
        return _fit_catboost(model, Xt, y, weights, Xv, valid, early_stopping_rounds, deadline)
    return _fit_xgboost(model, Xt, y, weights, Xv, valid, early_stopping_rounds, deadline)


DEADLINE_MIN_ROUNDS = 10  # boosting rounds a fit keeps even past its deadline (one round is no model)


def _past(deadline: float, rounds_done: int) -> bool:
    """Whether a boosting fit with ``rounds_done`` rounds should stop at ``deadline``."""
    return rounds_done >= DEADLINE_MIN_ROUNDS and time.monotonic() > deadline


def _fit_lightgbm(model: Any, Xt: np.ndarray, y: np.ndarray, weights: np.ndarray | None, cat_idx: list[int],
                  Xv: np.ndarray | None, valid: tuple[pd.DataFrame, np.ndarray] | None, rounds: int,
                  deadline: float) -> int | None:
    import lightgbm as lgb

    best: dict[str, Any] = {}  # the best round so far on the first valid metric, as early stopping keeps

    def stop_at_deadline(env: Any) -> None:  # LightGBM's own early stop: the model keeps the rounds so far
        results = env.evaluation_result_list or []
        if results:
            value, higher = results[0][2], results[0][3]
            if not best or (value > best["value"] if higher else value < best["value"]):
                best.update(value=value, iteration=env.iteration, results=results)
        if _past(deadline, env.iteration + 1):
            raise lgb.callback.EarlyStopException(best.get("iteration", env.iteration),
                                                  best.get("results", results))

    callbacks: list[Any] = [stop_at_deadline] if math.isfinite(deadline) else []
    kwargs: dict[str, Any] = {"categorical_feature": cat_idx or "auto", "sample_weight": weights}
    if valid is not None:
        callbacks.append(lgb.early_stopping(rounds, verbose=False))
        # LightGBM 4.7 deprecates eval_set in favour of eval_X/eval_y; older versions only know eval_set.
        if "eval_X" in inspect.signature(model.fit).parameters:
            kwargs.update(eval_X=(Xv,), eval_y=(valid[1],))
        else:
            kwargs["eval_set"] = [(Xv, valid[1])]
    model.fit(Xt, y, callbacks=callbacks or None, **kwargs)
    return int(model.best_iteration_ or model.n_estimators) if valid is not None else None


def _fit_xgboost(model: Any, Xt: np.ndarray, y: np.ndarray, weights: np.ndarray | None, Xv: np.ndarray | None,
                 valid: tuple[pd.DataFrame, np.ndarray] | None, rounds: int, deadline: float) -> int | None:
    import xgboost as xgb

    class StopAtDeadline(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return _past(deadline, epoch + 1)

    # callbacks and early stopping live in the constructor's parameters: set for this fit only
    model.set_params(callbacks=[StopAtDeadline()] if math.isfinite(deadline) else None,
                     early_stopping_rounds=rounds if valid is not None else None)
    try:
        if valid is None:
            model.fit(Xt, y, sample_weight=weights, verbose=False)
            return None
        model.fit(Xt, y, sample_weight=weights, eval_set=[(Xv, valid[1])], verbose=False)
    finally:
        model.set_params(callbacks=None, early_stopping_rounds=None)
    return int(model.best_iteration) + 1


class _CatBoostDeadline:
    """CatBoost's fit callback: ``after_iteration`` returning False stops the fit (its best model kept)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def after_iteration(self, info: Any) -> bool:
        return not _past(self.deadline, int(info.iteration))


def _fit_catboost(model: Any, Xt: np.ndarray, y: np.ndarray, weights: np.ndarray | None, Xv: np.ndarray | None,
                  valid: tuple[pd.DataFrame, np.ndarray] | None, rounds: int, deadline: float) -> int | None:
    callbacks = [_CatBoostDeadline(deadline)] if math.isfinite(deadline) else None
    if valid is None:
        model.fit(Xt, y, sample_weight=weights, callbacks=callbacks)
        return None
    model.fit(Xt, y, sample_weight=weights, eval_set=(Xv, valid[1]), early_stopping_rounds=rounds,
              use_best_model=True, callbacks=callbacks)
    return int(model.get_best_iteration() or 0) + 1


def categorical_indices(prep: ColumnTransformer) -> list[int]:
    """Output positions of the ordinal-encoded categoricals (they follow the numerics)."""
    cat = prep.output_indices_.get("cat", slice(0, 0))
    return list(range(cat.start, cat.stop))


def _family_of(model: Any) -> str:
    module = type(model).__module__
    if module.startswith("lightgbm"):
        return "lightgbm"
    if module.startswith("xgboost"):
        return "xgboost"
    if module.startswith("catboost"):
        return "catboost"
    return "linear"


def encode_labels(y: pd.Series | np.ndarray, task: str) -> tuple[np.ndarray, list[Any] | None]:
    """(targets, classes): class indices 0..K-1 over the sorted unique labels, or floats for regression."""
    values = pd.Series(y).to_numpy(dtype=object, na_value=np.nan)
    if pd.isna(values).any():
        raise DataError(f"the target has {int(pd.isna(values).sum())} missing value(s); "
                        "drop or label those rows before training")
    if task == "regression":
        try:
            return values.astype("float64"), None
        except (TypeError, ValueError) as exc:
            raise DataError("a regression target must be numeric") from exc
    try:
        classes, idx = np.unique(values, return_inverse=True)
    except TypeError as exc:
        kinds = sorted({type(v).__name__ for v in values})
        raise DataError(f"the target mixes value types {kinds}; give every label the same type") from exc
    if len(classes) < 2:
        raise DataError(f"the target has a single class {list(classes)}; classification needs two or more")
    return idx.astype(np.int64), [_py(c) for c in classes]


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- the served model
class TabularModel(BaseEstimator):
    """A fitted tabular model over *raw* frames: prepare -> estimator -> threshold -> original labels.

    ``fit`` trains one family; :meth:`from_fitted` wraps an estimator built elsewhere (the search's
    refit member or its soft-voting ensemble). ``estimator_`` takes the prepared frame, so it can be
    exported to ONNX on its own.
    """

    def __init__(self, schema: Schema | None = None, task: str = "binary", family: str = "lightgbm",
                 params: dict[str, Any] | None = None, *, seed: int = 0,
                 class_weight: str = "balanced", n_jobs: int = 1) -> None:
        self.schema = schema
        self.task = task
        self.family = family
        self.params = params
        self.seed = seed
        self.class_weight = class_weight
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y: pd.Series | np.ndarray) -> TabularModel:
        """Prepare ``X``, encode ``y`` and fit one pipeline of ``family`` on all rows."""
        schema = self.prepared_schema()
        frame = prepare_features(X, schema)
        target, self.classes_ = encode_labels(y, self.task)
        numeric, categorical = prepared_columns(schema)
        pipe = build_estimator(self.family, self.params, task=self.task, numeric_cols=numeric,
                               categorical_cols=categorical, seed=self.seed,
                               class_weight=self.class_weight, n_jobs=self.n_jobs)
        fit_estimator(pipe, frame, target, task=self.task, class_weight=self.class_weight)
        self.estimator_ = pipe
        self.threshold_: float | None = None
        self.description_ = {"families": [self.family], "members": [], "weights": [1.0],
                             "params": [dict(self.params or {})]}
        return self

    @classmethod
    def from_fitted(cls, *, schema: Schema, task: str, classes: list[Any] | None, estimator: Any,
                    threshold: float | None = None, description: dict[str, Any] | None = None,
                    family: str = "ensemble", params: dict[str, Any] | None = None) -> TabularModel:
        """Wrap an estimator already fitted on the prepared frame (targets as class indices)."""
        model = cls(schema=schema, task=task, family=family, params=params)
        model.classes_ = classes
        model.estimator_ = estimator
        model.threshold_ = threshold if task == "binary" else None
        model.description_ = dict(description or {})
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise StateError("this TabularModel is not fitted yet; call fit() or train a model first")

    def prepared_schema(self) -> Schema:
        """The schema the model prepares its input with (a fitted model always has one)."""
        if self.schema is None:
            raise ConfigError("TabularModel needs a schema (column -> kind)")
        return self.schema

    def clean_inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        """Replay the cleaning steps the training data went through (imputation, text normalisation)."""
        plan = getattr(self, "cleaning_plan_", None)
        if not plan:
            return X
        from ...data.cleaning import CleaningPlan

        return CleaningPlan.from_dict(plan).apply_inference(X)

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        return prepare_features(self.clean_inputs(X), self.prepared_schema())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, K) class probabilities in ``classes_`` order."""
        self._check_fitted()
        if self.task == "regression":
            raise StateError("predict_proba is only defined for classification models")
        return np.asarray(self.estimator_.predict_proba(self._prepare(X)), dtype=float)

    def predict_index(self, X: pd.DataFrame) -> np.ndarray:
        """Class indices (binary: ``p1 >= threshold_`` when one was tuned); floats for regression."""
        self._check_fitted()
        if self.task == "regression":
            return np.asarray(self.estimator_.predict(self._prepare(X)), dtype=float)
        return labels_from_proba(self.predict_proba(X), self.threshold_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Original labels (the values seen in the target column), or floats for regression."""
        out = self.predict_index(X)
        return out if self.task == "regression" else np.asarray(self.classes_)[out]

    def feature_importances(self) -> dict[str, float]:
        """Gain importances summed per raw column (normalised to 1; CatBoost: its PredictionValuesChange);
        empty for linear models."""
        self._check_fitted()
        members, weights = _members(self.estimator_)
        total: dict[str, float] = {}
        for pipe, weight in zip(members, weights, strict=True):
            for col, value in _pipeline_gain(pipe, self.schema).items():
                total[col] = total.get(col, 0.0) + weight * value
        return dict(sorted(total.items(), key=lambda kv: -kv[1]))

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary: task, classes, threshold, families, members, weights, params."""
        self._check_fitted()
        info = {"task": self.task, "classes": self.classes_, "threshold": self.threshold_,
                "features": self.schema.features() if self.schema else []}
        return jsonable({**info, **self.description_})


def _members(estimator: Any) -> tuple[list[Any], list[float]]:
    """The fitted pipelines inside an estimator and their blend weights."""
    inner = getattr(estimator, "estimators_", None)
    if inner is not None and hasattr(estimator, "scale_"):  # a multiclass decision over one estimator
        return _members(inner[0])
    if inner is None or isinstance(estimator, Pipeline):
        return [estimator], [1.0]
    weights = getattr(estimator, "weights", None)
    w = np.ones(len(inner)) if weights is None else np.asarray(weights, dtype=float)
    return list(inner), [float(x) for x in w / w.sum()]


def _pipeline_gain(pipe: Any, schema: Schema | None) -> dict[str, float]:
    if schema is None or not isinstance(pipe, Pipeline):
        return {}
    model = pipe.named_steps.get("model")
    family = _family_of(model)
    if family == "lightgbm":
        gains = model.booster_.feature_importance(importance_type="gain").astype(float)
    elif family == "xgboost":
        score = model.get_booster().get_score(importance_type="total_gain")
        gains = np.array([score.get(f"f{i}", 0.0) for i in range(model.n_features_in_)], dtype=float)
    elif family == "catboost":
        gains = np.asarray(model.get_feature_importance(), dtype=float)
    else:
        return {}
    numeric, categorical = prepared_columns(schema)
    total = gains.sum() or 1.0
    out: dict[str, float] = {}
    for name, gain in zip(numeric + categorical, gains, strict=True):
        raw = raw_column(name, schema)
        out[raw] = out.get(raw, 0.0) + float(gain / total)
    return out


def jsonable(value: Any) -> Any:
    """A model description as JSON values (numpy scalars as Python ones, NaN and infinities as None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
