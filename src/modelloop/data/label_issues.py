"""Rows whose given label is probably wrong, by confident learning on out-of-fold probabilities.

A quick model (small LightGBM with one thread, or a logistic regression) is cross-validated so that
every row gets a predicted probability from a model that never saw it. Per class ``j`` the
threshold ``t_j`` is the mean probability of ``j`` among rows labelled ``j`` (the class's average
self-confidence). A row is *confidently* of class ``j`` when ``p_j >= t_j`` (the largest such
``j`` when several pass); rows confidently of a class other than their label sit off the diagonal
of the confident joint and are the suspects, ranked by ``p(suggested) - p(given)``
(Northcutt et al., "Confident Learning", JAIR 2021).

The folds are drawn with numpy (scikit-learn's folds) and the LightGBM model is fit through LightGBM's C API
(``_lgbm_capi``), so the profile imports neither the lightgbm package nor the pandas, SciPy and
scikit-learn that it pulls in; without the shared library the lightgbm package is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl

from ..errors import DataError
from . import _lgbm_capi
from ._profile import json_value
from ._tables import check_columns, is_internal, is_numeric, is_stringy, to_polars

__all__ = ["LabelIssues", "assign_folds", "confident_learning", "encode_features", "find_label_issues",
           "out_of_fold_proba", "suspects_per_class"]

ROW_ID = "_row_id"
MAX_CATEGORIES = 200  # categorical features with more distinct values are left out (ids, free text)


@dataclass
class LabelIssues:
    """Suspects (best first) and the confident joint they come from."""

    suspects: list[dict[str, Any]]
    checked_rows: int
    classes: list[Any]
    thresholds: list[float]
    confident_joint: list[list[int]]
    features: list[str] = field(default_factory=list)
    total: int = 0  # suspects found (``suspects`` may list only the top ones)
    per_class: list[dict[str, Any]] = field(default_factory=list)  # see ``suspects_per_class``

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confident_learning(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """``(is_issue, suggested, thresholds, confident_joint)`` for integer ``labels`` (n,) and ``proba`` (n, K)."""
    n, k = proba.shape
    self_conf = proba[np.arange(n), labels]
    thresholds = np.array([self_conf[labels == j].mean() if (labels == j).any() else 1.0 for j in range(k)])
    above = proba >= thresholds[None, :] - 1e-12
    masked = np.where(above, proba, -1.0)
    suggested = masked.argmax(axis=1)
    confident = above.any(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[confident], suggested[confident]), 1)
    is_issue = confident & (suggested != labels)
    return is_issue, np.where(confident, suggested, labels), thresholds, joint


def suspects_per_class(labels: np.ndarray, is_issue: np.ndarray, suggested: np.ndarray, classes: Sequence[Any]
                       ) -> list[dict[str, Any]]:
    """Per given class: ``label``, ``rows``, ``suspects``, ``share`` (suspects / rows) and ``suggested``
    (the label most suspects of the class are given instead; None without suspects).

    The overall share hides what matters on an imbalanced target: 1% of all rows can be half of the
    minority class, and a class that loses that many rows to the suggestions has not been mislabelled,
    it overlaps another one.
    """
    out = []
    for j, label in enumerate(classes):
        mine = labels == j
        hit = is_issue & mine
        n, k = int(mine.sum()), int(hit.sum())
        instead = int(np.bincount(suggested[hit], minlength=len(classes)).argmax()) if k else None
        out.append({"label": json_value(label), "rows": n, "suspects": k, "share": round(k / n, 4) if n else 0.0,
                    "suggested": None if instead is None else json_value(classes[instead])})
    return out


def encode_features(df: pl.DataFrame, features: Sequence[str]) -> tuple[np.ndarray, list[int], list[str]]:
    """A float matrix for the quick model: numbers as is, dates as epoch, categories as codes.

    Returns ``(X, categorical_positions, used_features)``; missing values are NaN.
    """
    cols, cats, used = [], [], []
    for c in features:
        s = df.get_column(c)
        t = s.dtype
        if is_numeric(t) or t == pl.Boolean:
            cols.append(s.cast(pl.Float64).to_numpy())
        elif t.is_temporal():
            cols.append(s.to_physical().cast(pl.Float64).to_numpy())
        elif is_stringy(t) and s.n_unique() <= MAX_CATEGORIES:
            cats.append(len(cols))
            cols.append(s.cast(pl.String).rank("dense").cast(pl.Float64).to_numpy() - 1.0)
        else:
            continue
        used.append(c)
    x = np.column_stack(cols) if cols else np.empty((df.height, 0))
    return x, cats, used


def assign_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's test fold in ``0..folds-1`` for codes ``y``: the folds of scikit-learn's
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` when every class has at least ``folds``
    rows, else of its ``KFold(folds, shuffle=True, random_state=seed)``, drawn here with numpy.

    The same folds as before the profile stopped importing scikit-learn, so its reports did not change.
    Stratified: the label-sorted rows are dealt to the folds in turn, which fixes how many rows of each
    class a fold gets; then each class, in the order classes first appear, shuffles its fold numbers.
    """
    rng = np.random.RandomState(seed)  # the legacy generator: scikit-learn's integer random_state
    fold = np.empty(len(y), dtype=np.int64)
    n_classes = int(y.max()) + 1
    if np.bincount(y, minlength=n_classes).min() < folds:
        shuffled = np.arange(len(y))
        rng.shuffle(shuffled)
        sizes = np.full(folds, len(y) // folds)
        sizes[: len(y) % folds] += 1
        fold[shuffled] = np.repeat(np.arange(folds), sizes)
        return fold
    by_appearance = np.argsort(np.unique(y, return_index=True)[1])  # class codes, first seen first
    seen_rank = np.empty(n_classes, dtype=np.int64)
    seen_rank[by_appearance] = np.arange(n_classes)
    dealt = np.sort(seen_rank[y])
    per_fold = np.stack([np.bincount(dealt[f::folds], minlength=n_classes) for f in range(folds)])
    for rank, code in enumerate(by_appearance):
        members = np.repeat(np.arange(folds), per_fold[:, rank])
        rng.shuffle(members)
        fold[y == code] = members
    return fold


def out_of_fold_proba(x: np.ndarray, y: np.ndarray, *, model: str = "lightgbm", folds: int = 5, seed: int = 0,
                      categorical: list[int] | None = None) -> np.ndarray:
    """(n, K) probabilities, each row's from a model trained on the other folds (``y`` in 0..K-1).

    The folds' models are fit two at a time on a machine of two cores or more (``_parallel_folds``): each
    is one thread of LightGBM's, run without the GIL, and independent of the others, so the
    probabilities are the same as one after the other.
    """
    from concurrent.futures import ThreadPoolExecutor

    n_classes = int(y.max()) + 1
    counts = np.bincount(y, minlength=n_classes)
    proba = np.tile(counts / counts.sum(), (len(y), 1))
    fold = assign_folds(y, folds, seed)
    todo = []
    for f in range(folds):
        te, tr = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        present = np.unique(y[tr])
        if len(te) and len(present) >= 2:
            todo.append((te, tr, present))

    def fit(job: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        te, tr, present = job
        return _fit_predict(model, x[tr], np.searchsorted(present, y[tr]), x[te], len(present),
                            categorical or [], seed)

    with ThreadPoolExecutor(_parallel_folds(x)) as pool:
        for (te, _, present), got in zip(todo, pool.map(fit, todo), strict=True):
            proba[te] = 0.0
            proba[np.ix_(te, present)] = got
    return proba


_PARALLEL_BYTES = 64 << 20  # a feature matrix above this is fit a fold at a time: each fit copies it


def _parallel_folds(x: np.ndarray) -> int:
    """Folds fit at once: two (``worker_threads``) when ``x`` is small enough that two fits' copies of
    it are cheap, else one."""
    from ._tables import worker_threads

    return worker_threads() if x.nbytes <= _PARALLEL_BYTES else 1


def _fit_predict(model: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int,
                 categorical: list[int], seed: int) -> np.ndarray:
    """Probabilities of classes ``0..n_classes-1`` (all present in ``y_train``) for ``x_test``."""
    if model == "lightgbm" and _lgbm_capi.available():
        return _lgbm_capi.fit_predict_proba(x_train, y_train, x_test, n_classes=n_classes,
                                            categorical=categorical, seed=seed)
    est = _model(model, seed)  # logistic, or lightgbm without a loadable shared library
    if model == "lightgbm":
        est.fit(x_train, y_train, categorical_feature=categorical or "auto")
    else:
        est.fit(x_train, y_train)
    return np.asarray(est.predict_proba(x_test))


def _model(kind: str, seed: int) -> Any:
    """The scikit-learn estimator for ``kind`` (``lightgbm``: the same model as ``_lgbm_capi``)."""
    if kind == "lightgbm":
        import lightgbm as lgb

        return lgb.LGBMClassifier(n_estimators=60, learning_rate=0.1, num_leaves=15, min_child_samples=10,
                                  subsample=0.8, subsample_freq=1, colsample_bytree=0.8, n_jobs=1,
                                  random_state=seed, verbose=-1)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=300))


def find_label_issues(df: Any, target: str, *, features: Sequence[str] | None = None, model: str = "lightgbm",
                      folds: int = 5, seed: int = 0, max_rows: int | None = None,
                      top: int | None = None) -> LabelIssues:
    """Suspected wrong labels in ``df[target]``, best suspects first.

    Each suspect: ``row`` (position in ``df``), ``row_id`` (when ``_row_id`` exists), ``given_label``,
    ``suggested_label``, ``confidence`` (model probability of the suggested label) and
    ``given_label_prob``. ``max_rows`` checks a seeded sample only (the report says how many).
    """
    data = to_polars(df)
    check_columns([target, *(features or [])], data.columns, "label issues")
    feats = list(features) if features is not None else [c for c in data.columns
                                                          if c != target and not is_internal(c)]
    data = data.with_row_index("__pos").filter(pl.col(target).is_not_null())
    if max_rows is not None and data.height > max_rows:
        data = data.sample(max_rows, seed=seed)
    y_raw = data.get_column(target)
    classes = y_raw.unique().sort().to_list()
    if len(classes) < 2:
        raise DataError(f"label issues: target '{target}' has {len(classes)} class(es); need at least 2")
    y = y_raw.cast(pl.String).rank("dense").cast(pl.Int64).to_numpy() - 1
    order = sorted(set(zip(y_raw.cast(pl.String).to_list(), y.tolist(), strict=True)), key=lambda p: p[1])
    by_code = {code: raw for (raw, code) in order}
    classes = [_original(y_raw, by_code[j]) for j in range(int(y.max()) + 1)]
    x, cats, used = encode_features(data, feats)
    if not used:
        raise DataError(f"label issues: no usable feature columns besides '{target}'")
    proba = out_of_fold_proba(x, y, model=model, folds=folds, seed=seed, categorical=cats)
    is_issue, suggested, thresholds, joint = confident_learning(y, proba)
    idx = np.flatnonzero(is_issue)
    margin = proba[idx, suggested[idx]] - proba[idx, y[idx]]
    idx = idx[np.argsort(-margin, kind="stable")]
    pos = data.get_column("__pos").to_numpy()
    row_ids = data.get_column(ROW_ID).to_list() if ROW_ID in data.columns else None
    suspects = []
    for i in idx[: top if top is not None else len(idx)]:
        s = {"row": int(pos[i]), "given_label": json_value(classes[y[i]]),
             "suggested_label": json_value(classes[suggested[i]]),
             "confidence": round(float(proba[i, suggested[i]]), 4),
             "given_label_prob": round(float(proba[i, y[i]]), 4)}
        if row_ids is not None:
            s["row_id"] = json_value(row_ids[i])
        suspects.append(s)
    return LabelIssues(suspects=suspects, checked_rows=data.height, classes=[json_value(c) for c in classes],
                       thresholds=[round(float(t), 4) for t in thresholds],
                       confident_joint=joint.tolist(), features=used, total=len(idx),
                       per_class=suspects_per_class(y, is_issue, suggested, classes))


def _original(series: pl.Series, text: str) -> Any:
    """The label in its own type (e.g. the int 1, not the string '1')."""
    if series.dtype == pl.String:
        return text
    return series.filter(series.cast(pl.String) == text).item(0)
