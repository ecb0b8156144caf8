"""Chinese text helpers for cleaning and augmentation: traditional -> simplified folding (OpenCC).

``opencc-python-reimplemented`` (``from opencc import OpenCC``, the ``multilingual`` extra) holds
OpenCC's dictionaries in pure Python; the converter loads once per process (~0.1 s) and converts a
short text in tens of microseconds. Folding makes 這個產品很好 and 这个产品很好 one text for a model
trained mostly on one script, at training and at inference alike (the cleaning plan replays it).
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import ConfigError

__all__ = ["to_simplified"]


@functools.cache
def _converter() -> Any:
    try:
        from opencc import OpenCC
    except ImportError:
        raise ConfigError("clean: traditional_to_simplified needs opencc-python-reimplemented; install it with "
                          "`pip install 'modelloop[multilingual]'`") from None
    return OpenCC("t2s")


def to_simplified(text: str | None) -> str | None:
    """``text`` with traditional Chinese characters folded to simplified (None stays None)."""
    return None if text is None else str(_converter().convert(text))
