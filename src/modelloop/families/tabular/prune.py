"""Pruning boosted trees: keep the first rounds of each gradient-boosted model, drop the tail.

A boosted model found by the search often holds hundreds to thousands of trees (a small learning
rate, stopped early on validation), and an ensemble blends several of them: serving cost grows with
the number of trees (in ONNX Runtime about 35 ns per tree and record here), while the last rounds
change few decisions. :func:`prune_rounds` keeps, in every XGBoost / LightGBM model inside the
estimator, the same share of its first rounds: the smallest share whose decisions agree with the
full model's on the training rows and on rows near them (macro-F1 of the pruned labels against the full model's, or R²
against its predictions for regression) at ``min_fidelity`` or more. The optimize stage then scores
the result on the frozen test set like every other variant, so a pruned model that loses quality is
reported and never registered.

Fewer rounds make a boosted model's probabilities less extreme; for a binary model with a tuned
threshold the pruned model gets the threshold that flags as many training rows as the full one did.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SHARES", "NothingToPrune", "boosted_trees", "prune_rounds"]

SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # tried in this order: the first that agrees wins
_SAMPLE = 5000  # training rows the agreement is measured on (and as many perturbed copies)


class NothingToPrune(Exception):
    """The estimator holds no boosted trees, or no shorter model agrees with it closely enough."""


def boosted_trees(estimator: Any) -> list[tuple[Any, int]]:
    """``(model, rounds)`` of each XGBoost / LightGBM model inside ``estimator`` (pipelines, voting blends)."""
    found: list[tuple[Any, int]] = []

    def collect(model: Any, rounds: int) -> Any:
        found.append((model, rounds))
        return model

    _walk(estimator, collect)
    return found


def prune_rounds(teacher: Any, X: pd.DataFrame, *, min_fidelity: float, seed: int = 0,
                 shares: tuple[float, ...] = SHARES) -> tuple[Any, dict[str, Any]]:
    """The teacher (a fitted :class:`~modelloop.families.tabular.model.TabularModel`) with the fewest rounds
    that still agrees with it on ``X`` (raw training rows), and what was kept.

    Raises :class:`NothingToPrune` when there are no boosted trees or no share in ``shares`` agrees.
    """
    from .model import TabularModel
    from .fidelity import matching_threshold, perturbed

    members = boosted_trees(teacher.estimator_)
    if not members:
        raise NothingToPrune("no boosted trees (XGBoost / LightGBM) in the model: nothing to prune")
    before = sum(r for _, r in members)
    sample = X.sample(_SAMPLE, random_state=seed) if len(X) > _SAMPLE else X.reset_index(drop=True)
    # the training rows, where late trees fit noise, and as many rows near them (cells swapped between
    # rows, as distillation does), where the model must generalise: the pruned model agrees on both
    sample = pd.concat([sample, perturbed(sample, seed)], ignore_index=True)
    regression = teacher.task == "regression"
    full = teacher.predict(sample) if regression else teacher.predict_proba(sample)
    threshold = teacher.threshold_
    tried: list[dict[str, float]] = []
    for share in shares:
        estimator = _walk(teacher.estimator_, lambda leaf, rounds, s=share: _truncate(leaf, _keep(rounds, s)))
        kept = sum(r for _, r in boosted_trees(estimator))
        if kept >= before:
            continue
        pruned = TabularModel.from_fitted(
            schema=teacher.schema, task=teacher.task, classes=teacher.classes_, estimator=estimator,
            threshold=threshold, family=teacher.family, params=teacher.params,
            description={**teacher.description_, "pruned": {"share": share, "trees_before": before,
                                                            "trees_after": kept}})
        pruned.cleaning_plan_ = getattr(teacher, "cleaning_plan_", None)
        if regression:
            fidelity = _r2(full, pruned.predict(sample))
        else:
            proba = pruned.predict_proba(sample)
            if teacher.task == "binary" and threshold is not None:
                pruned.threshold_ = matching_threshold(full[:, 1] >= threshold, proba[:, 1])
            fidelity = _label_f1(_labels(full, threshold), _labels(proba, pruned.threshold_))
        tried.append({"share": share, "trees": kept, "fidelity": round(fidelity, 6)})
        if fidelity >= min_fidelity:
            return pruned, {"trees_before": before, "trees_after": kept, "share": share,
                            "fidelity": round(fidelity, 6), "tried": tried}
    raise NothingToPrune(f"every shorter model changes the full model's decisions on the training rows "
                         f"(best agreement {max((t['fidelity'] for t in tried), default=0):.4f} "
                         f"< {min_fidelity:.4f})")


def _keep(rounds: int, share: float) -> int:
    return max(1, math.ceil(rounds * share))


def _walk(estimator: Any, visit: Any) -> Any:
    """``estimator`` with each boosted model replaced by ``visit(model, rounds)`` (the containers
    :func:`boosted_trees` looks into, shallow-copied: the caller's model stays as it was)."""
    inner = getattr(estimator, "estimators_", None)
    if inner is not None and hasattr(estimator, "weights"):  # VotingClassifier / VotingRegressor
        out = copy.copy(estimator)
        out.estimators_ = [_walk(e, visit) for e in inner]
        if hasattr(estimator, "named_estimators_"):
            from sklearn.utils import Bunch

            out.named_estimators_ = Bunch(**dict(zip(estimator.named_estimators_, out.estimators_, strict=True)))
        return out
    steps = getattr(estimator, "steps", None)
    if steps is not None:  # Pipeline: the model is the last step
        out = copy.copy(estimator)
        out.steps = [*steps[:-1], (steps[-1][0], _walk(steps[-1][1], visit))]
        return out
    rounds = _rounds(estimator)
    return estimator if rounds is None else visit(estimator, rounds)


def _rounds(model: Any) -> int | None:
    module = type(model).__module__
    if module.startswith("xgboost"):
        return int(model.get_booster().num_boosted_rounds())
    if module.startswith("lightgbm"):
        return int(model.booster_.current_iteration())
    return None


def _truncate(model: Any, rounds: int) -> Any:
    """A copy of a fitted XGBoost / LightGBM scikit-learn model holding only its first ``rounds``."""
    out = copy.copy(model)
    if type(model).__module__.startswith("xgboost"):
        out._Booster = model.get_booster()[:rounds]
    else:
        import lightgbm as lgb

        out._Booster = lgb.Booster(model_str=model.booster_.model_to_string(num_iteration=rounds))
        out._best_iteration = -1
    out.n_estimators = rounds
    return out


def _labels(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    from ...evaluation.metrics import labels_from_proba

    return labels_from_proba(proba, threshold)


def _label_f1(a: np.ndarray, b: np.ndarray) -> float:
    """Macro-F1 of ``b`` against ``a``: a rare class weighs as much as a common one."""
    from sklearn.metrics import f1_score

    return float(f1_score(a, b, average="macro", labels=np.unique(a)))


def _r2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    spread = float(np.sum((a - a.mean()) ** 2))
    return 1.0 - float(np.sum((a - b) ** 2)) / spread if spread > 0 else float(np.allclose(a, b))
