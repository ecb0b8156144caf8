"""Model families behind one small protocol (tabular today; text and image build on the same shape)."""

from __future__ import annotations

from .tabular import FAMILIES, TASKS, TabularModel, build_estimator, prepare_features

__all__ = ["FAMILIES", "TASKS", "TabularModel", "build_estimator", "prepare_features"]
