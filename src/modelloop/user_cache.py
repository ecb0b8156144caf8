"""The per-user cache: what is worth keeping across projects on one machine.

Converted GGUF models (``gguf/``) and the migrated empty MLflow store new projects start from. It is
``$MODELLOOP_CACHE``, else ``~/.cache/modelloop``; everything in it can be deleted and is rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """The folder (``MODELLOOP_CACHE`` or ``~/.cache/modelloop``); not created here."""
    return Path(os.environ.get("MODELLOOP_CACHE") or Path.home() / ".cache" / "modelloop")
