"""What kind of place ``data.source`` names, told from its text alone.

The config's checks (``config.sql_source_has_query``), the scaffold and the readers (``data.sources``) ask
the same question; it lives here, apart from the readers, because loading a config must not import them
(Polars and NumPy: ~0.25 s on every command).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FILE_KINDS", "file_kind", "is_sql_source"]


def is_sql_source(source: str) -> bool:
    """A database URL (``data.source: postgresql://...``) rather than a file path (``file://`` is a file)."""
    return "://" in source and not source.startswith("file://")


FILE_KINDS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
              ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".xlsx": "excel", ".xlsm": "excel"}


def file_kind(path: str | Path, fmt: str = "auto") -> str | None:
    """How a source file is read: ``fmt`` (``data.format``) unless ``auto``, else by its suffix
    (``FILE_KINDS``); None for a suffix it does not know."""
    return fmt if fmt != "auto" else FILE_KINDS.get(Path(path).suffix.lower())
