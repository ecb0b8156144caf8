"""The tabular model object and its estimators (the tabular family's model; the family protocol and
the text family live in :mod:`modelloop.families`).

The names below load on first use: importing the package must not pay for scikit-learn and LightGBM.
"""

from __future__ import annotations

__all__ = ["FAMILIES", "TASKS", "TabularModel", "build_estimator", "prepare_features"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import tabular

        return getattr(tabular, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
