"""Kept so that text models registered before the text family moved into :mod:`modelloop.families.text`
still load: their pickles name ``modelloop.models.text.TextModel``."""

from __future__ import annotations

from ..families.text.model import TextModel

__all__ = ["TextModel"]
