"""The ingest stage: source -> checked table -> content-addressed dataset version in the catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import DataError
from ..workspace import Workspace
from .schema import Schema
from .snapshot import ROW_ID, assign_row_ids, content_hash, read_snapshot, write_snapshot

if TYPE_CHECKING:  # pandas (and the readers, the split) on first use: `modelloop profile` reads with Polars
    import pandas as pd
    import polars as pl

__all__ = ["check_row_ids", "dataset_row", "ingest", "load_dataset", "read_config_source", "split_sides"]


def read_config_source(cfg: Config) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """Read ``data.source`` and check it against the config: columns, target, types."""
    from .sources import check_types, infer_schema, read_table
    from .split import check_target

    d = cfg.data
    if d.sources:
        df, report = _read_sources(cfg)
    else:
        assert d.source is not None  # the config requires source or sources
        df, report = read_table(d.source, root=cfg.root, fmt=d.format, query=d.query,
                                encoding=d.encoding, on_bad_lines=d.on_bad_lines)
    if d.target not in df.columns:
        raise DataError(f"data.target: column '{d.target}' is not in {d.source or ', '.join(s.name for s in d.sources)}; "
                        f"columns: {', '.join(map(str, df.columns[:40]))}")
    schema = infer_schema(df, target=d.target, id=d.id, time=d.time, text=d.text,
                          overrides=d.columns, drop=d.drop)
    df, coerced = check_types(df, schema, coerce=d.on_type_error == "coerce")
    check_target(df[d.target], cfg.task, d.target)
    before = len(df)
    df = df[df[d.target].notna()].reset_index(drop=True)
    report["dropped_missing_target"] = before - len(df)
    report["coerced"] = coerced
    return df, schema, dict(report)


def _read_sources(cfg: Config) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Several sources combined (union or join on keys); conflicts become consistency findings."""
    from .integrate import integrate
    from .sources import read_table

    d = cfg.data
    frames, reports = {}, {}
    for s in d.sources:
        frames[s.name], reports[s.name] = read_table(s.source, root=cfg.root, fmt=s.format, query=s.query,
                                                     encoding=s.encoding, on_bad_lines=d.on_bad_lines)
    df, findings = integrate(frames, how=d.combine, keys=d.keys or None)
    report = {"source": [s.name for s in d.sources], "sources": {k: dict(v) for k, v in reports.items()},
              "combine": d.combine, "keys": d.keys, "integration_findings": [f.to_dict() for f in findings]}
    return df.reset_index(drop=True), report


def ingest(ws: Workspace) -> dict[str, Any]:
    """Create (or find) the dataset version for the configured source; ``created`` says which."""
    cfg = ws.config
    df, schema, report = read_config_source(cfg)
    df = assign_row_ids(df)
    vid = content_hash(df)
    path = ws.datasets_dir / vid
    known = [d for d in ws.catalog.list_datasets(cfg.name) if d["id"] == vid]
    if known:
        ensure_split(ws, known[0], df)
        return {**known[0], "created": False}
    manifest = {"id": vid, "step": "ingest", "parents": [], "schema": schema.to_dict(),
                "rows": len(df), "source": report}
    write_snapshot(df, path, manifest)
    row = ws.catalog.add_dataset(id=vid, project=cfg.name, step="ingest", parents=[],
                                 schema=schema.to_dict(), rows=len(df), path=str(path), source=report)
    # the test split is frozen now, while the table is in memory: later stages (profile, train)
    # look it up instead of reading the role columns again to make it
    ensure_split(ws, row, df)
    return {**row, "created": True}


def load_dataset(ws: Workspace, ref: str | None = None) -> tuple[dict[str, Any], pd.DataFrame, Schema]:
    """A dataset version (latest when ``ref`` is None) as catalog row, frame and schema."""
    row = dataset_row(ws, ref)
    df = read_snapshot(row["path"])
    check_row_ids(row, df.columns)
    return row, df, Schema.from_dict(row["schema"])


def dataset_row(ws: Workspace, ref: str | None = None) -> dict[str, Any]:
    """The catalog row of a dataset version (latest when ``ref`` is None), without reading its data."""
    cat = ws.catalog
    row = cat.get_dataset(ref, ws.config.name) if ref else cat.latest_dataset(ws.config.name)
    if row is None:
        raise DataError("no dataset version yet; run `modelloop ingest` (or `modelloop run`) first")
    return row


def check_row_ids(row: dict[str, Any], columns: Any) -> None:
    if ROW_ID not in columns:
        raise DataError(f"dataset {row['id']} has no {ROW_ID} column; re-run `modelloop ingest`")


def split_key(cfg: Config) -> str:
    """The frozen split is keyed by what decides it (strategy, size, seed and the role columns)."""
    import hashlib
    import json

    s = cfg.split
    key = [s.strategy, s.test_size, s.seed, cfg.data.target, cfg.data.time, cfg.data.group]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def ensure_split(ws: Workspace, row: dict[str, Any], df: pd.DataFrame) -> pd.Series:
    """The train/test side of each row of ``df``, made once per dataset version and split settings.

    A derived version (clean, feedback merge) inherits its parent's assignment for the rows it kept,
    so models trained before and after are compared on the same test rows.
    """
    import pandas as pd

    from .split import make_split

    cfg, cat, key = ws.config, ws.catalog, split_key(ws.config)
    stored = cat.get_split(row["id"], key)
    if stored is None:
        inherit = None
        for parent in row.get("parents") or []:
            p = cat.get_split(parent, key)
            if p is not None:
                inherit = pd.read_parquet(p["path"])
        frame = make_split(df, strategy=cfg.split.strategy, test_size=cfg.split.test_size,
                           seed=cfg.split.seed, target=cfg.data.target, time=cfg.data.time,
                           group=cfg.data.group, inherit=inherit)
        path = ws.datasets_dir / row["id"] / f"split-{key}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        counts = {k: int(v) for k, v in frame["split"].value_counts().items()}
        cat.add_split(dataset_id=row["id"], key=key, settings=cfg.split.model_dump(),
                      counts=counts, path=str(path))
        stored = cat.get_split(row["id"], key)
    assert stored is not None
    frame = pd.read_parquet(stored["path"])
    # An index lookup rather than a dict of a million Python objects (several times the table's ids).
    lookup = pd.Series(frame["split"].to_numpy(), index=frame[ROW_ID].to_numpy())
    side = df[ROW_ID].map(lookup[~lookup.index.duplicated(keep="last")])
    if side.isna().any():
        raise DataError(f"split of dataset {row['id']} does not cover {int(side.isna().sum())} rows; "
                        f"re-run `modelloop ingest`")
    return side


def split_sides(ws: Workspace, row: dict[str, Any], data: pl.LazyFrame) -> pl.Series:
    """``ensure_split`` for the version's whole table ``data``, with Polars: the side of each row, in order.

    Only making a new split reads the role columns into pandas (``make_split``); a stored split is
    looked up without pandas, so that reading a version (``modelloop profile``) does not load it.
    """
    import polars as pl

    key = split_key(ws.config)
    if ws.catalog.get_split(row["id"], key) is None:
        cfg = ws.config
        roles = [c for c in dict.fromkeys([ROW_ID, cfg.data.target, cfg.data.time, cfg.data.group])
                 if c in data.collect_schema().names()]
        ensure_split(ws, row, read_snapshot(row["path"], columns=roles))
    stored = ws.catalog.get_split(row["id"], key)
    assert stored is not None
    split = pl.read_parquet(stored["path"], columns=[ROW_ID, "split"])
    ids, sides = data.select(ROW_ID).collect().get_column(ROW_ID), split.get_column("split")
    if split.get_column(ROW_ID).equals(ids):  # the version's own split, in its row order: the usual case
        return sides
    # Otherwise a sorted lookup (the last entry of a repeated id wins, as in ensure_split); a hash
    # join or `unique` costs ~150 MiB more at a million rows.
    import numpy as np

    keys, wanted = split.get_column(ROW_ID).to_numpy(), ids.to_numpy()
    order = np.argsort(keys, kind="stable")
    at = np.searchsorted(keys[order], wanted, side="right") - 1
    found = (at >= 0) & (keys[order[np.maximum(at, 0)]] == wanted)
    if not found.all():
        raise DataError(f"split of dataset {row['id']} does not cover {int((~found).sum())} rows; "
                        f"re-run `modelloop ingest`")
    return sides.gather(order[at])
