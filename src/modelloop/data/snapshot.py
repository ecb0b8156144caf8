"""Content-addressed dataset versions: Parquet data plus a JSON manifest, written atomically.

A version's id is a hash of its content (column names, dtypes and every value), so re-ingesting
unchanged data finds the existing version instead of creating a new one. Each row carries a stable
``_row_id`` that derived versions (clean, feedback merge) keep, so a frozen test split survives them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas on first use: `modelloop profile` reads versions with Polars
    import pandas as pd

__all__ = ["ROW_ID", "assign_row_ids", "content_hash", "read_manifest", "read_snapshot", "snapshot_file",
           "write_snapshot"]

ROW_ID = "_row_id"


def assign_row_ids(df: pd.DataFrame) -> pd.DataFrame:
    """Give each row a stable id from its content and its occurrence number (duplicates differ)."""
    import numpy as np
    import pandas as pd

    if ROW_ID in df.columns:
        return df
    h = pd.util.hash_pandas_object(df, index=False).to_numpy()
    occ = pd.Series(h).groupby(h).cumcount().to_numpy().astype(np.uint64)
    ids = (h ^ (occ * np.uint64(0x9E3779B97F4A7C15))).view(np.int64)
    out = df.copy()
    out.insert(0, ROW_ID, ids)
    return out


def content_hash(df: pd.DataFrame) -> str:
    """A 12-hex-digit id: equal for equal tables, whatever file they came from."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps([[c, str(df[c].dtype)] for c in df.columns]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:12]


def write_snapshot(df: pd.DataFrame, directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``data.parquet`` + ``manifest.json`` into ``directory`` atomically (temp dir + rename)."""
    directory = Path(directory)
    if (directory / "manifest.json").exists():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    try:
        df.to_parquet(tmp / "data.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (directory / "manifest.json").exists():
            raise
    return directory


def snapshot_file(directory: Path | str) -> Path:
    """The Parquet file holding a version's rows (for readers that scan it rather than load it)."""
    return Path(directory) / "data.parquet"


def read_snapshot(directory: Path, columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(snapshot_file(directory), columns=columns)


def read_manifest(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / "manifest.json").read_text())
