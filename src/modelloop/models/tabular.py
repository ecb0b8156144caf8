"""Kept so that tabular models registered before the tabular family moved into
:mod:`modelloop.families.tabular` still load: their pickles name ``modelloop.models.tabular.TabularModel``."""

from __future__ import annotations

from ..families.tabular.model import TabularModel

__all__ = ["TabularModel"]
