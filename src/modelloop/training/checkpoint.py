"""Per-epoch training checkpoints, one way for every neural family (text, image, generative).

A killed fine-tuning trial resumes from its last finished epoch. The file is written to a temporary name
and renamed, so a kill mid-write leaves the previous checkpoint whole. It is read back with
``torch.load(weights_only=True)``: tensors and plain containers only, never code unpickled from a file.
A file that is torn, foreign or written for other trial parameters (its ``key``) is ignored: the trial
starts over rather than failing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["load_checkpoint", "load_tensors", "save_checkpoint", "save_tensors"]


def save_tensors(path: Path, blob: Any) -> None:
    """Write ``blob`` (tensors and plain containers of them) to ``path`` through a temporary name."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_tensors(path: Path) -> Any:
    """What :func:`save_tensors` wrote at ``path``, or None (no file, a torn or foreign one); never code."""
    if not path.is_file():
        return None
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: the caller trains again
        return None


def save_checkpoint(path: Path | None, key: str, blob: dict[str, Any]) -> None:
    """Write ``blob`` (tensors, numbers, strings, lists and dicts of them) under ``key``; no-op for None."""
    if path is not None:
        save_tensors(path, {**blob, "key": key})


def load_checkpoint(path: Path | None, key: str) -> dict[str, Any] | None:
    """The blob saved under ``key`` at ``path``, or None (no file, a torn or foreign one, another key)."""
    blob = None if path is None else load_tensors(path)
    return blob if isinstance(blob, dict) and blob.get("key") == key else None
