"""Side tables of a dataset version: files a family reads beside ``data.source`` (a recommender's
``data.item_features`` / ``data.user_features``), copied into the version at ingest.

Why: read from their configured path at each train, a retrain months later silently used whatever the
file held then. A version now holds its own copy under ``side/`` with the manifest's ``side_tables``
(``{key: {"file", "source", "sha256"}}``); its id covers their content, so an edited side table makes a new
version at the next ingest. A derived version (clean, feedback merge) carries its parent's copies. A
version made before (no ``side_tables`` in its manifest) still reads the configured path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import DataError
from .snapshot import read_manifest

__all__ = ["configured_side_tables", "inherited_side_tables", "side_table_source", "side_version_id",
           "snapshot_side_tables"]


def configured_side_tables(cfg: Any) -> dict[str, Path]:
    """``{config key: file}`` of the task's family's side tables (``Family.side_tables(cfg)``: key ->
    configured path); a configured file that does not exist is a DataError naming the key."""
    if cfg.task is None:
        return {}
    from ..families import family_for_task

    hook = getattr(family_for_task(cfg.task), "side_tables", None)
    out: dict[str, Path] = {}
    for key, source in (hook(cfg) if hook is not None else {}).items():
        path = Path(source) if Path(source).is_absolute() else cfg.root / source
        if not path.is_file():
            raise DataError(f"data.{key}: file not found: {path}")
        out[key] = path
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot_side_tables(cfg: Any) -> tuple[dict[str, Any], dict[str, Path]]:
    """The manifest's ``side_tables`` for the configured side tables and ``{file in the version: source
    file}`` to copy into it."""
    entries: dict[str, Any] = {}
    files: dict[str, Path] = {}
    for key, path in sorted(configured_side_tables(cfg).items()):
        name = f"side/{key}{''.join(path.suffixes)}"
        entries[key] = {"file": name, "source": str(getattr(cfg.data, key)), "sha256": _sha256(path)}
        files[name] = path
    return entries, files


def side_version_id(vid: str, entries: dict[str, Any]) -> str:
    """The version id of the table ``vid`` with the side tables ``entries``: ``vid`` itself without any
    (the ids of projects without side tables are what they were)."""
    if not entries:
        return vid
    h = hashlib.sha256(f"modelloop-side-1:{vid}".encode())
    for key in sorted(entries):
        h.update(f"{key}={entries[key]['sha256']};".encode())
    return h.hexdigest()[: len(vid)]


def inherited_side_tables(parent_path: Path | str) -> tuple[dict[str, Any] | None, dict[str, Path]]:
    """A derived version's ``side_tables`` and files to copy: its parent's (None: the parent has none
    recorded, a version made before side tables were kept)."""
    try:
        entries = read_manifest(Path(parent_path)).get("side_tables")
    except (OSError, ValueError):
        return None, {}
    if entries is None:
        return None, {}
    return entries, {e["file"]: Path(parent_path) / e["file"] for e in entries.values()}


def side_table_source(cfg: Any, key: str, dataset_path: Path | str | None) -> tuple[str | None, Path]:
    """``(what to name it, path to read)`` of side table ``key`` for the version at ``dataset_path``: its
    own copy; ``(None, ...)`` when the version was made without one; the configured path (relative to
    the project) for a version made before side tables were kept, or when no version is given."""
    configured = getattr(cfg.data, key, None)
    if dataset_path is not None:
        try:
            entries = read_manifest(Path(dataset_path)).get("side_tables")
        except (OSError, ValueError):
            entries = None
        if entries is not None:
            entry = entries.get(key)
            if entry is None:
                return None, Path()
            return str(entry["source"]), Path(dataset_path) / entry["file"]
    if configured is None:
        return None, Path()
    return str(configured), Path(configured) if Path(configured).is_absolute() else cfg.root / configured
