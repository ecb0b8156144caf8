"""The profile and clean stages: quality report of a dataset version, and cleaning into a new one.

``profile`` scores the latest (or a named) version, compares its train and test splits, stores a
summary in the catalog and writes the report as HTML and JSON. ``clean`` applies the ``clean:``
rules in order and records a new version whose parent is the input, whose manifest holds, per rule,
what changed, and the replayable plan that prediction-time code applies to incoming records.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from ..workspace import Workspace
from .ingest import check_row_ids, dataset_row, load_dataset, split_sides
from .schema import Schema
from .side_tables import inherited_side_tables
from .snapshot import ROW_ID, content_hash, read_manifest, snapshot_file, write_snapshot
from .task import target_kind

if TYPE_CHECKING:  # pandas on first use (clean): the profile reads the version with Polars
    import pandas as pd
    import polars as pl

__all__ = ["profile_dataset", "clean_dataset", "cleaning_plan"]


def profile_dataset(ws: Workspace, dataset: str | None = None, *, write: bool = True) -> dict[str, Any]:
    """The quality report (JSON contract: scores, gate, columns, findings) of a dataset version.

    The version's Parquet file is scanned, not loaded: the profile reads the columns (or rows) each
    step needs, the split its row ids (and the role columns, only to make a new split), and the split
    shift the compared columns.
    """
    import polars as pl

    from .quality import profile

    cfg = ws.config
    row = dataset_row(ws, dataset)
    schema = Schema.from_dict(row["schema"])
    data = pl.scan_parquet(snapshot_file(row["path"]))
    names = data.collect_schema().names()
    check_row_ids(row, names)
    side = split_sides(ws, row, data)
    frame = data.select([c for c in names if not c.startswith("_")])
    if schema.target is not None and _partial_labels(cfg.task):
        # a few analysts' labels (anomaly detection) are no target to profile: mostly missing by design
        frame = frame.drop(schema.target)
        schema = dataclasses.replace(schema, target=None, columns={c: k for c, k in schema.columns.items()
                                                                   if c != schema.target})
    # a numeric target's task is the config's; classes are read from the column (their facts name the
    # task the target asks for, whichever family the config's task belongs to)
    task = cfg.task if cfg.task is not None and target_kind(cfg.task) == "numeric" else None
    integration = _lineage_findings(ws, row) + _family_findings(ws, row, frame, side)
    keys = [c for c in (cfg.data.id, cfg.data.user, cfg.data.item, *cfg.data.keys) if c]  # ids: many values by design
    report = profile(frame, schema, cfg.quality, task=task, seed=cfg.seed, findings=integration, keys=keys,
                     distinct_rows=_distinct_rows(row, frame.collect_schema().names()))
    shift = _split_shift(frame, side, schema, cfg)
    if shift is not None:
        report.sampled["shift"] = shift[1]  # the rows compared per side (the report's page says so too)
    result = report.to_dict()
    if shift is not None:
        result["shift"] = shift[0]
    result["dataset"] = {"id": row["id"], "version": row["seq"], "rows": row["rows"]}
    ws.catalog.set_dataset_quality(row["id"], {"scores": result["scores"], "passed": result["gate"]["passed"],
                                               "findings": len(result["findings"])})
    if write:
        base = ws.reports_dir / f"quality-{row['id']}"
        _atomic(base.with_suffix(".json"), json.dumps(result, indent=2, default=str, ensure_ascii=False))  # UTF-8
        _atomic(base.with_suffix(".html"), report.to_html(title=f"{cfg.name} — data quality, dataset "
                                                                  f"v{row['seq']} ({row['id']})"))
        result["report"] = {"html": str(base.with_suffix(".html")), "json": str(base.with_suffix(".json"))}
    return result


def _distinct_rows(row: dict[str, Any], columns: list[str]) -> bool:
    """Whether ingest found no two rows of the version equal over exactly ``columns`` (no repeated row
    hash, the manifest's ``row_hashes``): the profile's duplicate search would then find none."""
    if row["step"] != "ingest":
        return False
    try:
        hashes = read_manifest(row["path"]).get("row_hashes")
    except (OSError, ValueError):
        return False
    if not hashes:
        return False
    return hashes["repeated"] == 0 and sorted(hashes["columns"]) == sorted(columns)


def _partial_labels(task: str | None) -> bool:
    from ..families import partial_labels

    return task is not None and partial_labels(task)


def _family_findings(ws: Workspace, row: dict[str, Any], frame: Any, side: Any) -> list[dict[str, Any]]:
    """Findings the task's family checks on its own kind of data (``Family.profile_findings``, optional:
    the image family's duplicates, near duplicates across the split, unreadable and odd-shaped files)."""
    if ws.config.task is None:
        return []
    from ..families import family_for_task

    check = getattr(family_for_task(ws.config.task), "profile_findings", None)
    return list(check(ws, row, frame, side)) if check is not None else []


def _lineage_findings(ws: Workspace, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Source conflicts found when the version (or the ingest it derives from) combined sources."""
    seen, todo = [], [row]
    while todo:
        r = todo.pop()
        seen += list((r.get("source") or {}).get("integration_findings") or [])
        todo += [ws.catalog.get_dataset(p) for p in r.get("parents") or []]
    return seen


def _split_shift(frame: Any, side: pl.Series, schema: Schema, cfg: Any
                 ) -> tuple[dict[str, Any], dict[str, dict[str, int]]] | None:
    """Per-feature distance between the train and the frozen test split (the same code monitoring uses:
    a datetime feature by the parts a model reads from it, ``shift.time_parts``, as in monitoring), and
    the rows compared per side: a seeded uniform sample of ``quality.shift.max_rows`` rows of a larger
    side (every row of a smaller one), the same rows for every column."""
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    from ._tables import worker_threads
    from .shift import CATEGORICAL_KINDS, compare_distributions, compared_columns, time_parts

    cap = cfg.quality.shift.max_rows
    is_train, is_test = (_side_rows(side == s, cap, cfg.seed + i) for i, s in enumerate(("train", "test")))
    if is_train is None or is_test is None:
        return None
    types = frame.collect_schema()

    def compare(column: str, kind: str) -> dict[str, Any]:
        read = pl.col(column)  # text read as categories: codes are filtered and counted, not the text
        values = frame.select(read.cast(pl.Categorical) if types[column] == pl.String and kind in
                              CATEGORICAL_KINDS else read).collect()
        train, test = values.filter(is_train), values.filter(is_test)
        del values
        compared = {column: kind}
        if kind == "datetime":
            train, test, _ = time_parts(train, test, dataclasses.replace(schema, columns={column: kind}))
            compared = dict.fromkeys(train.columns, "numeric")
        return compare_distributions(train, test, compared, psi_threshold=cfg.monitor.psi_threshold,
                                     p_threshold=cfg.monitor.p_value)

    out: dict[str, Any] = {}
    # a column at a time, each compared alone, two at once: each comparison is a read and sorts that run
    # without the GIL, so the second core takes one column while the first takes another (same results)
    with ThreadPoolExecutor(worker_threads()) as pool:
        for got in pool.map(lambda item: compare(*item), compared_columns(schema).items()):
            out.update(got)
    rows = {s: {"rows": int(mask.sum()), "of": int((side == s).sum())}
            for s, mask in (("train", is_train), ("test", is_test))}
    return out, rows


def _side_rows(on_side: pl.Series, cap: int, seed: int) -> pl.Series | None:
    """``on_side`` (a row mask) with at most ``cap`` rows left on: a seeded uniform sample of them, in
    table order (None when no row is on the side)."""
    import numpy as np
    import polars as pl

    n = int(on_side.sum())
    if n == 0:
        return None
    if n <= cap:
        return on_side
    keep = np.zeros(on_side.len(), dtype=bool)
    keep[np.random.default_rng(seed).choice(np.flatnonzero(on_side.to_numpy()), cap, replace=False)] = True
    return pl.Series(keep)


def _atomic(path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def clean_dataset(ws: Workspace, dataset: str | None = None) -> dict[str, Any]:
    """Apply ``clean.rules`` -> a new dataset version (or the existing one when nothing changed)."""
    from .cleaning import fit_rules

    cfg = ws.config
    row, df, schema = load_dataset(ws, dataset)
    cleaned, changes, plan = fit_rules(df, cfg.clean, target=cfg.data.target)
    cleaned = cleaned.reset_index(drop=True)
    new_schema = _schema_after(cleaned, schema)
    vid = content_hash(cleaned)
    if vid == row["id"]:
        return {**row, "created": False, "changes": changes, "parent": row["id"]}
    known = [d for d in ws.catalog.list_datasets(cfg.name) if d["id"] == vid]
    if known:
        return {**known[0], "created": False, "changes": changes, "parent": row["id"]}
    path = ws.datasets_dir / vid
    manifest = {"id": vid, "step": "clean", "parents": [row["id"]], "schema": new_schema.to_dict(),
                "rows": len(cleaned), "changes": changes, "plan": plan.to_dict()}
    side, files = inherited_side_tables(row["path"])
    if side is not None:
        manifest["side_tables"] = side
    write_snapshot(cleaned, path, manifest, files)
    new = ws.catalog.add_dataset(id=vid, project=cfg.name, step="clean", parents=[row["id"]],
                                 schema=new_schema.to_dict(), rows=len(cleaned), path=str(path),
                                 source={"parent": row["id"], "rules": len(changes)})
    return {**new, "created": True, "changes": changes, "parent": row["id"]}


def _schema_after(df: pd.DataFrame, schema: Schema) -> Schema:
    """Columns a rule added (e.g. ``x__missing`` indicators) become numeric features; dropped ones go."""
    import pandas as pd

    columns = {}
    for c in df.columns:
        if c == ROW_ID or c.startswith("_"):
            continue
        columns[c] = schema.columns.get(c) or ("numeric" if pd.api.types.is_numeric_dtype(df[c])
                                                 else "categorical")
    return Schema(columns=columns, target=schema.target, id=schema.id, text=schema.text, time=schema.time,
                  dtypes={c: str(df[c].dtype) for c in columns},
                  datetime_formats={c: f for c, f in schema.datetime_formats.items() if c in columns})


def cleaning_plan(ws: Workspace, dataset_row: dict[str, Any]) -> dict[str, Any] | None:
    """The replayable cleaning plan behind a dataset version: written by ``clean`` and carried on by
    versions derived from a cleaned one (``feedback-merge``); None for raw ingests."""
    if dataset_row["step"] == "ingest":
        return None
    return read_manifest(dataset_row["path"]).get("plan")
