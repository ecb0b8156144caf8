"""How closely a student follows its teacher: the perturbed rows both are compared on, and the
decision threshold that makes a student flag as many rows as its teacher. Shared by distillation
(``optimize.py``) and tree pruning (``tree_prune.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["matching_threshold", "perturbed"]


def perturbed(X: pd.DataFrame, seed: int, share: float = 0.3) -> pd.DataFrame:
    """Extra rows near the data for the teacher to label: each cell swapped, with probability
    ``share``, for the same column's value in another random row (MUNGE-style, Bucila et al. 2006)."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    n = len(X)
    for c in X.columns:
        swap = rng.random(n) < share
        donors = rng.integers(0, n, int(swap.sum()))
        out.loc[swap, c] = X[c].to_numpy()[donors]
    return out


def matching_threshold(teacher_flags: np.ndarray, student_p1: np.ndarray) -> float:
    """The student threshold that flags the same share of rows as the teacher's decision did."""
    share = float(np.mean(teacher_flags))
    if share <= 0.0:
        return float(student_p1.max() + 1e-9)
    return float(np.quantile(student_p1, 1.0 - share))
