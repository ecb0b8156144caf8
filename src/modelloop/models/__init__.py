"""Model families behind one small protocol (tabular and text models share the same shape).

The names below load on first use: ``modelloop.models.text_config`` is read by the config, and
importing the config (every CLI command) must not pay for scikit-learn and LightGBM.
"""

from __future__ import annotations

__all__ = ["FAMILIES", "TASKS", "TabularModel", "build_estimator", "prepare_features"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import tabular

        return getattr(tabular, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
