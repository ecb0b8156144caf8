"""The ingest stage: source -> checked table -> content-addressed dataset version in the catalog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import DataError, cap_list
from ..workspace import Workspace
from .schema import Schema
from .task import TaskInference
from .side_tables import side_version_id, snapshot_side_tables
from .snapshot import (HASH_SCHEME, ROW_ID, assign_row_ids, content_hash, read_manifest, read_snapshot,
                       update_manifest, write_snapshot_batches)

if TYPE_CHECKING:  # pandas (and the readers, the split) on first use: `modelloop profile` reads with Polars
    import numpy as np
    import pandas as pd
    import polars as pl

    from ._checked import CheckedTable

__all__ = ["check_row_ids", "dataset_row", "freeze_split", "ingest", "load_dataset", "read_checked_source",
           "read_config_source", "split_sides"]


def read_config_source(cfg: Config) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """Read ``data.source`` and check it against the config: columns, target, types."""
    from .sources import check_types, read_table

    d = cfg.data
    before_read = _source_task(cfg)
    own, kinds = _family_reader(cfg), None
    if d.sources:
        df, report = _read_sources(cfg)
    elif own is not None:  # a family that reads its own kind of source (e.g. folders of images)
        df, report, kinds = own(cfg)
    else:
        assert d.source is not None  # the config requires source or sources
        df, report = read_table(d.source, root=cfg.root, fmt=d.format, query=d.query,
                                encoding=d.encoding, on_bad_lines=d.on_bad_lines, delimiter=d.delimiter,
                                decimal=d.decimal, sheet=d.sheet)
    partial = _partial_labels(cfg)
    if d.target not in df.columns and not (partial and d.target is None):
        raise DataError(f"data.target: column '{d.target}' is not in {d.source or ', '.join(s.name for s in d.sources)}; "
                        f"columns: {cap_list(df.columns)}")
    schema = _infer_schema(cfg, df, kinds)
    df, coerced = check_types(df, schema, coerce=d.on_type_error == "coerce")
    before = len(df)
    if not partial:  # partial labels (anomaly detection): every row is kept, labelled or not
        _settle_target(cfg, df[d.target], report, schema, before_read)
        df = df[df[d.target].notna()].reset_index(drop=True)
    report["dropped_missing_target"] = before - len(df)
    report["coerced"] = coerced
    return df, schema, dict(report)


def _source_task(cfg: Config) -> TaskInference | None:
    """A file or folder ``data.source`` and the task left out: the task it asks for before it is read (a
    folder of images, a table of image paths: an image classification), settled first, since that task's
    family reads the source itself. None when it does not say (the table's target and columns decide)."""
    d = cfg.data
    if (cfg.task is not None and cfg.task_inferred is None) or d.sources or not d.source:
        return None
    path = Path(str(d.source))
    path = path if path.is_absolute() else cfg.root / path
    if not path.exists():
        return None
    from .task import infer_source_task

    inferred = infer_source_task(path)
    if inferred is not None:
        cfg.settle_task(inferred.task, inferred.reason)
    return inferred


def _settle_target(cfg: Config, y: pd.Series | pl.Series, report: dict[str, Any], schema: Schema,
                   before_read: TaskInference | None = None) -> None:
    """The task (inferred from the target ``y`` and the kinds of the feature columns when the config leaves
    it out, unless the source said it ``before_read``: ``_source_task``), then the target's check."""
    from .split import check_target

    if cfg.task is None or cfg.task_inferred is not None:  # left out of the config: the data decides
        from .task import infer_task

        roles = {schema.target, schema.id}
        inferred = before_read or infer_task(y, cfg.data.target,
                                        {c: k for c, k in schema.columns.items() if c not in roles})
        cfg.settle_task(inferred.task, inferred.reason)
        report["task"] = inferred.to_dict()
    check_target(y, str(cfg.task), cfg.data.target)


def _family_reader(cfg: Config) -> Any:
    """The task's family's own reader of ``data.source`` (``Family.read_source``: ``cfg -> (frame, report,
    column kinds)``), or None when the table readers read it."""
    if cfg.task is None or cfg.data.sources:
        return None
    from ..families import family_for_task

    return getattr(family_for_task(cfg.task), "read_source", None)


def _partial_labels(cfg: Config) -> bool:
    """``data.target`` is optional, partial labels for the task's family (anomaly detection)."""
    from ..families import partial_labels

    return cfg.task is not None and partial_labels(cfg.task)


def read_checked_source(cfg: Config) -> CheckedTable:
    """``read_config_source`` as ingest reads it: a Parquet source is checked where it lies, column by
    column, and never loaded whole; any other source is read into pandas and checked by it.

    A Parquet source's columns are read once for the checks: each one, as the schema inference reads it,
    is type-checked (text that holds numbers becomes numbers) and fed to the content digest, so that
    the table's id and row hashes need no second pass over the file (``CheckedTable.digest``). They stay
    Polars columns throughout: the schema, the target's checks and the split read them without pandas,
    whose import alone was 42 MiB of the ingest's peak (text of dates, or of numbers, still needs it).
    """
    import polars as pl

    from ._checked import CheckedTable, scan_parquet
    from ._tables import to_lazy
    from .snapshot import ContentDigest

    d, path = cfg.data, _parquet_path(cfg)
    scanned = scan_parquet(path) if path is not None else None
    if path is None or scanned is None or d.target not in scanned[0].collect_schema().names() \
            or _family_reader(cfg) is not None:
        df, schema, read = read_config_source(cfg)  # which also says what is wrong with the source
        return CheckedTable(to_lazy(df, "data.source"), schema, read)
    frame = scanned[0]
    digest, replaced, target = ContentDigest(), {}, []
    coerced: dict[str, Any] = {}
    coerce = d.on_type_error == "coerce"

    def checked(name: str, kind: str, values: Any) -> None:
        if kind == "numeric" and not (values.dtype.is_numeric() or values.dtype == pl.Boolean):
            values = replaced[name] = _as_numbers(values, kind, coerce, coerced)
        digest.add(values)
        if name == d.target:  # the target's check reads it next (the split reads it again after the copy:
            target.append(values)  # kept through the copy, it would add to the ingest's peak)

    schema = _infer_schema(cfg, frame, each=checked)
    _check_text_dates(frame, schema, coerce, coerced, replaced)
    y = target.pop() if target else frame.select(d.target).collect().to_series()  # Polars: no pandas
    report: dict[str, Any] = {"source": d.source}
    partial = _partial_labels(cfg)
    if not partial:
        _settle_target(cfg, y, report, schema)
    keep = y.is_not_null().to_numpy() | partial
    report["dropped_missing_target"] = int((~keep).sum())
    report["coerced"] = coerced
    return CheckedTable(frame, schema, report, keep=None if keep.all() else keep, replaced=replaced,
                        parquet=(path, scanned[1], scanned[2]), digested=digest)


def _infer_schema(cfg: Config, frame: Any, kinds: dict[str, str] | None = None,
                  each: Callable[[str, str, Any], None] | None = None) -> Schema:
    """The schema of ``frame`` (pandas or Polars) under the config's roles and column overrides (and the
    ``kinds`` a family's reader gives its columns; its one ``text`` column is the input role); ``each``:
    ``infer_schema``'s."""
    from .sources import infer_schema

    d = cfg.data
    text = d.text or next((c for c, k in (kinds or {}).items() if k == "text"), None)
    marks = split_column(cfg)  # never a feature: it says which rows score the model
    return infer_schema(frame, target=d.target, id=d.id, time=d.time, text=text,
                        overrides={**(kinds or {}), **d.columns, **({marks: "identifier"} if marks else {})},
                        drop=d.drop, each=each)


def _parquet_path(cfg: Config) -> Path | None:
    """The file behind a single ``data.source`` that is read as Parquet."""
    d = cfg.data
    if d.sources or not d.source or d.format not in ("auto", "parquet"):
        return None
    path = Path(d.source) if Path(d.source).is_absolute() else cfg.root / d.source
    if not path.is_file() or (d.format == "auto" and path.suffix.lower() not in (".parquet", ".pq")):
        return None
    return path


def _check_text_dates(frame: Any, schema: Schema, coerce: bool, report: dict[str, Any],
                      replaced: dict[str, Any]) -> None:
    """``check_types`` of a Parquet file's date-time columns stored as text, once the schema knows
    each one's format (a value no reader reads as a date: an error, or missing with ``coerce``)."""
    import polars as pl

    from .sources import check_types

    types = frame.collect_schema()
    for name, kind in schema.columns.items():
        if kind == "datetime" and types.get(name) == pl.String and name not in replaced:
            column = frame.select(name).collect().to_series()
            fixed, found = check_types(column.to_pandas().to_frame(), Schema(
                columns={name: kind}, datetime_formats=dict(schema.datetime_formats)), coerce=coerce)
            if found:
                report.update(found)
                replaced[name] = column.set(pl.Series(fixed[name].isna().to_numpy()), None)  # coerced: missing


def _as_numbers(column: pl.Series, kind: str, coerce: bool, report: dict[str, Any]) -> pl.Series:
    """``check_types`` of one text column the schema calls numeric: the column as numbers (or the error
    naming its first text value); what was coerced goes into ``report``."""
    import polars as pl

    from .sources import check_types

    name = column.name
    fixed, found = check_types(column.to_pandas().to_frame(), Schema(columns={name: kind}), coerce=coerce)
    report.update(found)
    return pl.Series(name, fixed[name], nan_to_null=True)


def _read_sources(cfg: Config) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Several sources combined (union or join on keys); conflicts become consistency findings."""
    from .integrate import integrate
    from .sources import read_table

    d = cfg.data
    frames, reports = {}, {}
    for s in d.sources:
        frames[s.name], reports[s.name] = read_table(s.source, root=cfg.root, fmt=s.format, query=s.query,
                                                     encoding=s.encoding, on_bad_lines=d.on_bad_lines,
                                                     delimiter=s.delimiter, decimal=s.decimal, sheet=s.sheet)
    df, findings = integrate(frames, how=d.combine, keys=d.keys or None)
    report = {"source": [s.name for s in d.sources], "sources": {k: dict(v) for k, v in reports.items()},
              "combine": d.combine, "keys": d.keys, "integration_findings": [f.to_dict() for f in findings]}
    return df.reset_index(drop=True), report


def ingest(ws: Workspace) -> dict[str, Any]:
    """Create (or find) the dataset version for the configured source; ``created`` says which.

    The checked table is read in passes (``read_checked_source``): a pass over its columns checks them and
    gives the version id and the row ids, and only a new version is written, a batch of rows at a time.
    """
    from ._tables import release_memory

    table = read_checked_source(ws.config)
    digest, table.digested = table.digest(), None  # its row hashes are freed with ``digest`` below
    release_memory()  # between the passes: each one's peak then starts from what is in use
    side_entries, side_files = snapshot_side_tables(ws.config)
    vid = side_version_id(digest.version_id(table.names), side_entries)
    known = _version(ws, vid) or _legacy_version(ws, table.rows, vid)
    if known and _schema_text(known["schema"]) != _schema_text(table.schema.to_dict()):
        vid = _schema_version_id(vid, table.schema.to_dict())
        known = _version(ws, vid)
    if known:
        if ws.catalog.get_split(known["id"], split_key(ws.config)) is None:
            roles = _split_inputs(ws.config, known["schema"]["columns"])
            freeze_split(ws, known, _read_roles(known, [ROW_ID, *roles]))
        return {**known, "created": False}
    ids = None if ROW_ID in table.names else digest.row_ids()
    # no repeated row hash: no two rows are equal, which the profile reads instead of searching again
    hashes = {"columns": table.names, "repeated": digest.repeated_rows} if ids is not None else None
    del digest  # its row hashes: the ids are all the write needs of them
    release_memory()
    return {**_store_version(ws, table, vid, ids, (side_entries, side_files), hashes), "created": True}


def _schema_text(schema: dict[str, Any]) -> str:
    import json

    return json.dumps(schema, sort_keys=True, default=str)


def _schema_version_id(vid: str, schema: dict[str, Any]) -> str:
    """The id of unchanged data read with another schema than its version ``vid`` holds: a column's kind
    declared in ``data.columns``, another target or id, or the reading rules of a newer modelloop (codes with
    leading zeros). Such data kept its version, and the version its schema, so a declaration took effect
    only once the data changed (``zip: categorical`` trained as a number). The id of the data as first read
    is unchanged: a project whose schema did not move keeps its versions."""
    import hashlib

    h = hashlib.sha256(f"modelloop-schema-1:{vid}:{_schema_text(schema)}".encode())
    return h.hexdigest()[: len(vid)]


def _store_version(ws: Workspace, table: CheckedTable, vid: str, ids: np.ndarray | None,
                   side: tuple[dict[str, Any], dict[str, Path]], hashes: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """Write the new version ``vid`` of ``table`` with the row ids ``ids`` (None: the table has its own)
    and a copy of its ``side`` tables (``side_tables.snapshot_side_tables``), record it and freeze its
    split (its catalog row). ``hashes``: the columns the row hashes covered and how many rows repeated
    an earlier row's hash (the manifest's ``row_hashes``)."""
    import polars as pl

    from ._tables import release_memory

    cfg = ws.config
    schema, rows = table.schema.to_dict(), table.rows
    manifest = {"id": vid, "step": "ingest", "parents": [], "schema": schema, "rows": rows,
                "source": table.report, "hash": HASH_SCHEME, "side_tables": side[0]}
    if hashes is not None:
        manifest["row_hashes"] = hashes
    path = write_snapshot_batches(table.record_batches(ids), ws.datasets_dir / vid, manifest, side[1])
    release_memory()
    row = ws.catalog.add_dataset(id=vid, project=cfg.name, step="ingest", parents=[], schema=schema,
                                 rows=rows, path=str(path), source=table.report)
    # the test split is frozen now, from the role columns alone: later stages (profile, train) look it up
    inputs = _split_inputs(cfg, table.names)
    roles = table.columns(inputs if ids is not None else [ROW_ID, *inputs])
    if ids is not None:  # (a table without role columns has no height before its ids)
        roles = pl.DataFrame([pl.Series(ROW_ID, ids), *roles.get_columns()])
    freeze_split(ws, row, roles)
    return row


def _version(ws: Workspace, vid: str) -> dict[str, Any] | None:
    return next((d for d in ws.catalog.list_datasets(ws.config.name) if d["id"] == vid), None)


def _legacy_version(ws: Workspace, rows: int, vid: str) -> dict[str, Any] | None:
    """An ingest version made before ``HASH_SCHEME`` that holds this table (id ``vid`` now). Its id
    hashed the pandas frame, so that id is made again (the old, slow way) only when such a version has
    as many rows and was not matched before; a match is kept in its manifest (``digest``), so the next
    re-ingest finds it at once."""
    older = []
    for d in ws.catalog.list_datasets(ws.config.name):
        if d["step"] != "ingest" or d["rows"] != rows:
            continue
        manifest = _manifest(d)
        if manifest.get("digest") == vid:
            return d
        if manifest.get("hash") != HASH_SCHEME:
            older.append(d)
    if not older:
        return None
    df, _, _ = read_config_source(ws.config)
    old = content_hash(assign_row_ids(df))
    match = next((d for d in older if d["id"] == old), None)
    if match is not None:
        update_manifest(match["path"], digest=vid)
    return match


def _manifest(row: dict[str, Any]) -> dict[str, Any]:
    try:
        return read_manifest(row["path"])
    except (OSError, ValueError):
        return {}


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
    ws.settle_task(dataset=row)  # a task left out of the config is the one inferred for this version
    return row


def check_row_ids(row: dict[str, Any], columns: Any) -> None:
    if ROW_ID not in columns:
        raise DataError(f"dataset {row['id']} has no {ROW_ID} column; re-run `modelloop ingest`")


def split_key(cfg: Config) -> str:
    """The frozen split is keyed by what decides it (strategy, size, seed and the role columns).

    Since 2026-12-06 a random or stratified split with ``data.group`` keeps each group on one side
    (``split.whole_groups``); it drew rows before. The key is the same: a stored split is never drawn
    again, so a project keeps the test set its models were scored on (a new key would have drawn every
    grouped project a new one on its next run, under models trained on some of its rows); a version split
    from then on (a new source, a fresh workspace) is drawn in whole groups, and a derived version's new
    rows go where their group is (``split.group_sides``). The split's settings say which rule made it:
    ``groups`` (its ``both``: the groups on both sides, 0 for whole groups) only on splits made since."""
    import hashlib
    import json

    s = cfg.split
    key = [s.strategy, s.test_size, s.seed, cfg.data.target, cfg.data.time, cfg.data.group]
    if s.strategy == "user":  # only then: the keys of every other strategy stay what they were
        key.append(cfg.data.user)
    if s.strategy == "column":
        key.append(s.column)
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def ensure_split(ws: Workspace, row: dict[str, Any], df: pd.DataFrame) -> pd.Series:
    """The train/test side of each row of ``df``, made once per dataset version and split settings.

    A derived version (clean, feedback merge) inherits its parent's assignment for the rows it kept,
    so models trained before and after are compared on the same test rows.
    """
    import pandas as pd

    stored = freeze_split(ws, row, df)
    frame = pd.read_parquet(stored["path"])
    # An index lookup rather than a dict of a million Python objects (several times the table's ids).
    lookup = pd.Series(frame["split"].to_numpy(), index=frame[ROW_ID].to_numpy())
    side = df[ROW_ID].map(lookup[~lookup.index.duplicated(keep="last")])
    if side.isna().any():
        raise DataError(f"split of dataset {row['id']} does not cover {int(side.isna().sum())} rows; "
                        f"re-run `modelloop ingest`")
    return side


def freeze_split(ws: Workspace, row: dict[str, Any], df: pd.DataFrame | pl.DataFrame) -> dict[str, Any]:
    """The stored split of ``row`` under the configured settings (its catalog row), made when missing
    from ``df`` (pandas, or Polars: a new version's split is made without pandas): the version's
    ``_row_id`` and role columns (``_split_inputs``)."""
    from .split import group_counts, make_split

    cfg, cat, key = ws.config, ws.catalog, split_key(ws.config)
    stored = cat.get_split(row["id"], key)
    if stored is None:
        inherit = None
        for parent in row.get("parents") or []:
            p = cat.get_split(parent, key)
            if p is not None:
                import pandas as pd

                inherit = pd.read_parquet(p["path"])
        frame = make_split(df, strategy=str(cfg.split.strategy), test_size=cfg.split.test_size,
                           seed=cfg.split.seed, target=cfg.data.target, time=cfg.data.time,
                           group=cfg.data.group, inherit=inherit, user=cfg.data.user, column=split_column(cfg))
        path = ws.datasets_dir / row["id"] / f"split-{key}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        counts = _write_split(frame, tmp)
        tmp.replace(path)
        settings = cfg.split.model_dump()
        group = cfg.data.group
        if group is not None and group in df.columns and cfg.split.strategy != "user":
            settings["groups"] = group_counts(df, frame, group)  # 'both': 0 where the groups were kept whole
        cat.add_split(dataset_id=row["id"], key=key, settings=settings, counts=counts, path=str(path))
        stored = cat.get_split(row["id"], key)
    assert stored is not None
    return stored


_SPLIT_ROW_GROUP = 131_072  # rows per row group of a split file: the writer holds one row group at a time


def _write_split(frame: pd.DataFrame | pl.DataFrame, path: Path) -> dict[str, int]:
    """Write a split (``_row_id``: int64, ``split``: text) to ``path``; the rows per side, most first (ties
    in the order the sides first appear, as pandas' ``value_counts``). A Polars split is written by
    pyarrow in the columns and types pandas writes (without pandas' metadata, which its reader does
    not need for them)."""
    import polars as pl

    # the side is the one column worth a dictionary: pyarrow tried one on the row ids too, a hash
    # table of a million ids that doubled the ingest's peak over this step (+42 MiB at 1M rows, +4 now)
    if not isinstance(frame, pl.DataFrame):
        frame.to_parquet(path, index=False, use_dictionary=["split"], row_group_size=_SPLIT_ROW_GROUP)
        return {k: int(v) for k, v in frame["split"].value_counts().items()}
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(ROW_ID, pa.int64()), ("split", pa.large_string())])
    with pq.ParquetWriter(path, schema, use_dictionary=["split"]) as writer:
        for part in frame.iter_slices(_SPLIT_ROW_GROUP):  # a row group's text at a time
            writer.write_table(part.to_arrow().cast(schema), row_group_size=_SPLIT_ROW_GROUP)
    sides = frame.get_column("split")
    counts = {s: int((sides == s).sum()) for s in sides.unique(maintain_order=True).to_list()}
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _read_roles(row: dict[str, Any], columns: list[str]) -> pl.DataFrame:
    """Columns of a stored version, read by Polars (a split made from them needs no pandas)."""
    import polars as pl

    from .snapshot import snapshot_file

    return pl.read_parquet(snapshot_file(row["path"]), columns=columns)


def _split_inputs(cfg: Config, columns: Any) -> list[str]:
    """The role columns a new split reads (target, time, group, user, split.column) that ``columns`` has."""
    d = cfg.data
    return [c for c in dict.fromkeys([d.target, d.time, d.group, d.user, split_column(cfg)])
            if c is not None and c in columns]


def split_column(cfg: Config) -> str | None:
    """``split.column`` under ``split.strategy: column`` (the column marking each row's side), else None."""
    return cfg.split.column if cfg.split.strategy == "column" else None


def split_sides(ws: Workspace, row: dict[str, Any], data: pl.LazyFrame) -> pl.Series:
    """``ensure_split`` for the version's whole table ``data``, with Polars: the side of each row, in order.

    A stored split is looked up, and a missing one made (``make_split``), without pandas, so that reading
    a version (``modelloop profile``) does not load it.
    """
    import polars as pl

    key = split_key(ws.config)
    if ws.catalog.get_split(row["id"], key) is None:
        roles = _split_inputs(ws.config, data.collect_schema().names())
        freeze_split(ws, row, _read_roles(row, [ROW_ID, *roles]))
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
