"""Content-addressed dataset versions: Parquet data plus a JSON manifest, written atomically.

A version's id is a hash of its content (column names, types and every value), so re-ingesting
unchanged data finds the existing version instead of creating a new one. Each row carries a stable
``_row_id`` that derived versions (clean, feedback merge) keep, so a frozen test split survives them.

Two hashes exist. ``content_hash`` hashes a pandas frame's rows (``pd.util.hash_pandas_object``); clean and
feedback merges use it, and so did ingest before manifest ``"hash": 2``. Ingest now uses ``ContentDigest``,
fed a few columns at a time by a pass over the source, so that it never holds the table whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas on first use: `modelloop profile` reads versions with Polars
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = ["HASH_SCHEME", "ROW_ID", "ContentDigest", "assign_row_ids", "content_hash", "read_manifest",
           "read_snapshot", "row_ids", "snapshot_file", "update_manifest", "write_snapshot", "write_snapshot_batches"]

ROW_ID = "_row_id"
HASH_SCHEME = 2
"""The manifest's ``hash`` for ids made by ``ContentDigest``; manifests without it hashed pandas rows."""
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): spreads occurrence numbers


def row_ids(hashes: np.ndarray) -> np.ndarray:
    """Row ids (int64) from per-row content hashes (uint64): each hash mixed with its occurrence number
    among equal hashes, so exact duplicate rows get distinct ids and the first keeps the hash."""
    return _row_ids(hashes)[0]


def _row_ids(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """``row_ids(hashes)`` and how many rows repeat an earlier row's hash.

    Without a repeat every occurrence number is 0 and the ids are the hashes: a plain sort finds that
    (12 ms for a million, SIMD) before the stable argsort the occurrence numbers need (120 ms)."""
    ranked = np.sort(hashes)
    if not (ranked[1:] == ranked[:-1]).any():
        return hashes.view(np.int64).copy(), 0  # a copy: the caller may go on adding to ``hashes``
    del ranked
    order = np.argsort(hashes, kind="stable")
    ranked = hashes[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    position = np.arange(len(hashes))
    occurrence = np.empty(len(hashes), dtype=np.uint64)
    occurrence[order] = position - np.repeat(starts, np.diff(np.r_[starts, len(hashes)]))
    return (hashes ^ (occurrence * _MIX)).view(np.int64), len(hashes) - len(starts)


def assign_row_ids(df: pd.DataFrame) -> pd.DataFrame:
    """Give each row a stable id from its content and its occurrence number (duplicates differ)."""
    import pandas as pd

    if ROW_ID in df.columns:
        return df
    out = df.copy()
    out.insert(0, ROW_ID, row_ids(pd.util.hash_pandas_object(df, index=False).to_numpy()))
    return out


def content_hash(df: pd.DataFrame) -> str:
    """A 12-hex-digit id: equal for equal tables, whatever file they came from."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps([[c, str(df[c].dtype)] for c in df.columns]).encode())
    h.update(pd.util.hash_pandas_object(_hashable(df), index=False).to_numpy().tobytes())
    return h.hexdigest()[:12]


def _hashable(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with nested cells (a chat's list of messages, read back from Parquet as arrays of dicts) as
    their JSON text, which pandas can hash (it refused them: a chat project could not retrain)."""
    nested = (list, tuple, dict, np.ndarray)
    columns = [c for c in df.columns
               if df[c].dtype == object and df[c].map(lambda v: isinstance(v, nested)).any()]
    if not columns:
        return df

    def text(v: object) -> object:
        if not isinstance(v, nested):
            return v
        return json.dumps(v, sort_keys=True, ensure_ascii=False,
                          default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))

    return df.assign(**{c: df[c].map(text) for c in columns})


class ContentDigest:
    """The id and the per-row hashes of a table that is read a column at a time (``add``).

    The id (``version_id``) is a SHA-256 over each column's name, Arrow type and values in one form:
    categories as their text, float NaN as missing, an integer column with gaps as floats (as pandas reads
    a CSV's), then its validity bits, its values with missing ones zeroed (text: each value's length, and
    the bytes). So it depends neither on the file format nor on how a reader chunks the data, nor on library
    versions. The row hashes (Polars' ``Series.hash``) need only be stable within one run: they become the
    row ids of a new version (``row_ids``), and the id does not cover them.
    """

    def __init__(self) -> None:
        self._columns: dict[str, tuple[str, str]] = {}
        self._rows: np.ndarray | None = None
        self.repeated_rows: int | None = None  # rows whose hash repeats an earlier one's (``row_ids`` counts)

    def add(self, column: pl.Series) -> None:
        """Hash ``column`` (named; every column added has the same length), ``_SLICE`` rows of text at a
        time so that the copies its canonical form takes stay small (numbers: ``_NUMBER_SLICE``, a copy of
        8 bytes a row, and each slice's few Polars calls cost more than their work on a small one)."""
        import polars as pl

        target = _canonical_type(column)
        parts = [hashlib.sha256() for _ in range(3)]  # validity, values (or text lengths), text bytes
        rows = np.empty(len(column), dtype=np.uint64)
        step = _NUMBER_SLICE if _fixed_width(target) else _SLICE
        for at in range(0, len(column), step):
            piece = column.slice(at, step)
            piece = piece.cast(target) if piece.dtype != target else piece
            piece = piece.fill_nan(None) if target.is_float() else piece
            _update(parts, piece)
            rows[at:at + len(piece)] = piece.hash(seed=0).to_numpy()
        empty = column.slice(0, 0)  # the type as stored: categories stay categories, gaps make floats
        arrow_type = str((empty if target == pl.String else empty.cast(target)).to_arrow().type)
        self._columns[column.name] = (arrow_type, hashlib.sha256(b"".join(p.digest() for p in parts)).hexdigest())
        if self._rows is None:
            self._rows = rows
        else:
            np.bitwise_xor(self._rows, rows, out=self._rows)
            np.multiply(self._rows, _MIX, out=self._rows)

    @property
    def columns(self) -> list[str]:
        """The columns added, in the order they were added (the order the row hashes combine them in)."""
        return list(self._columns)

    def version_id(self, order: list[str]) -> str:
        """The 12-hex-digit id of the table whose columns, in ``order``, were all added."""
        h = hashlib.sha256(b"modelloop-table-2")
        h.update(json.dumps([[c, *self._columns[c]] for c in order]).encode())
        return h.hexdigest()[:12]

    def row_ids(self) -> np.ndarray:
        """Row ids of the table (``row_ids`` of the combined row hashes); counts ``repeated_rows`` too.

        Equal rows have equal hashes, so ``repeated_rows == 0`` proves that no two rows are equal (the
        profile then skips its own duplicate search); a repeat may still be a hash collision."""
        assert self._rows is not None, "no column added"
        ids, self.repeated_rows = _row_ids(self._rows)
        return ids


_SLICE = 131_072  # rows of text hashed at a time (a multiple of 8: the validity bits pack into whole bytes)
_NUMBER_SLICE = 1_048_576  # rows of numbers, dates or booleans hashed at a time (a multiple of 8 too)


def _fixed_width(dtype: pl.DataType) -> bool:
    import polars as pl

    return dtype.is_numeric() or dtype.is_temporal() or dtype == pl.Boolean


def _all_valid(rows: int) -> bytes:
    """``np.packbits`` of ``rows`` true values: the validity bits of a slice without a missing value."""
    return b"\xff" * (rows // 8) + (bytes([(0xFF << (8 - rows % 8)) & 0xFF]) if rows % 8 else b"")


def _canonical_type(s: pl.Series) -> pl.DataType:
    import polars as pl

    if isinstance(s.dtype, (pl.Categorical, pl.Enum, pl.Decimal)):
        return pl.String()
    if s.dtype.is_integer() and s.null_count():
        return pl.Float64()
    return s.dtype


def _update(parts: list[Any], s: pl.Series) -> None:
    """Feed one slice of a canonical column to the (validity, values, bytes) hashes."""
    import polars as pl

    validity, values, text = parts
    nulls = s.null_count()  # the fills and the bit packing are left out where nothing is missing
    validity.update(np.packbits(s.is_not_null().to_numpy()) if nulls else _all_valid(len(s)))
    if s.dtype in (pl.String, pl.Binary):
        arr = (s.fill_null("" if s.dtype == pl.String else b"") if nulls else s).rechunk().to_arrow()
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
        values.update(np.diff(offsets))  # large_string/binary: 64-bit offsets
        if arr.buffers()[2] is not None:
            text.update(memoryview(arr.buffers()[2])[offsets[0]:offsets[-1]])
    elif _fixed_width(s.dtype):
        physical = s.to_physical()
        physical = physical.fill_null(False if s.dtype == pl.Boolean else 0) if nulls else physical
        values.update(np.ascontiguousarray(physical.to_numpy()))
    else:  # nested and object columns: Polars' hash, stable within a Polars version only
        values.update(s.hash(seed=0).to_numpy().tobytes())


def write_snapshot(df: pd.DataFrame, directory: Path, manifest: dict[str, Any],
                   files: dict[str, Path] | None = None) -> Path:
    """Write ``data.parquet`` + ``manifest.json`` into ``directory`` atomically (temp dir + rename);
    ``files``: ``{name in the version: file}`` copied in with them (side tables)."""
    return _write_version(Path(directory), manifest, lambda path: df.to_parquet(path, index=False), files)


def write_snapshot_batches(batches: Iterable[pa.RecordBatch], directory: Path, manifest: dict[str, Any],
                           files: dict[str, Path] | None = None) -> Path:
    """``write_snapshot`` of a table given as record batches (one schema), written as they come: the
    table is never whole in memory. Each batch becomes a row group."""
    import pyarrow.parquet as pq

    def write(path: Path) -> None:
        writer = None
        try:
            for batch in batches:
                writer = writer or pq.ParquetWriter(path, batch.schema, use_dictionary=_few_distinct(batch),
                                                    write_statistics=_with_statistics(batch.schema))
                writer.write_batch(batch)
        finally:
            if writer is not None:
                writer.close()

    return _write_version(Path(directory), manifest, write, files)


def _with_statistics(schema: pa.Schema) -> list[str]:
    """Columns whose row groups get min/max statistics: all but text and bytes. A text column's took a
    fifth of the 1M x 30 snapshot's write (0.2 of 0.9 CPU s), and no reader of a version filters text by
    range; numbers and times keep theirs (row groups skipped by a filter on them)."""
    import pyarrow.types as pt

    text = (pt.is_string, pt.is_large_string, pt.is_binary, pt.is_large_binary, pt.is_string_view,
            pt.is_binary_view)
    return [f.name for f in schema if not any(is_(f.type) for is_ in text)]


def _few_distinct(batch: pa.RecordBatch) -> list[str]:
    """Columns worth dictionary-encoding: few distinct values in ``batch``. The writer would otherwise try
    a dictionary on every column of every row group and fall back to plain on ids and free text, which
    made the snapshot's write twice as slow (and its file larger)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            if pc.count_distinct(column).as_py() <= batch.num_rows // 8:
                names.append(name)
        except pa.ArrowNotImplementedError:  # a null or nested column: no dictionary
            pass
    return names


def _write_version(directory: Path, manifest: dict[str, Any], write_data: Callable[[Path], None],
                   files: dict[str, Path] | None = None) -> Path:
    """A version's folder, made in a temporary folder beside it and renamed into place; kept as it is
    when it exists (same content, same id)."""
    if (directory / "manifest.json").exists():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    try:
        write_data(tmp / "data.parquet")
        for name, source in (files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / name)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (directory / "manifest.json").exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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


def update_manifest(directory: Path | str, **values: Any) -> None:
    """Add ``values`` to a version's manifest (written to a temporary file, then renamed)."""
    path = Path(directory) / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**read_manifest(Path(directory)), **values}, indent=2, default=str))
    tmp.replace(path)
