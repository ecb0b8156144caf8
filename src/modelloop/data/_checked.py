"""The configured source after ingest's checks, with its rows left where they are.

Ingest used to load the source into pandas, check it, hash its rows and write it back: 18 s and a 900 MiB
peak for a 1M x 30 Parquet file of 96 MiB. A ``CheckedTable`` leaves a Parquet source on disk and reads it
in passes: the schema a column at a time (``infer_schema``), the content digest a batch of columns at a
time (``digest``) and the snapshot a batch of rows at a time (``record_batches``). The other sources (CSV,
JSON Lines, SQL, several sources) are read into pandas and checked as before, then held as one Polars frame.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ._tables import to_lazy
from .schema import Schema
from .snapshot import ROW_ID, ContentDigest

ROWS_PER_BATCH = 16_384  # source rows per record batch (and snapshot row group): the write pass's memory


@dataclass
class CheckedTable:
    """The checked table: ``frame``'s columns with ``replaced`` swapped in and only the ``keep`` rows.

    ``frame`` reads the source (names stripped, float NaN as missing); ``replaced`` holds the columns
    the type check turned into numbers (one value per source row); ``keep`` marks the rows kept (those
    with a target), None when all are; ``parquet`` is the file ``frame`` scans, with the names its
    columns have there, so that the snapshot is copied from it by pyarrow batch by batch, and its number
    of rows. ``digested``: the content digest of the columns as they were checked
    (``ingest.read_checked_source`` feeds it while it reads them), which ``digest`` gives when it covers
    every column and every row is kept.
    """

    frame: pl.LazyFrame
    schema: Schema
    report: dict[str, Any]
    keep: np.ndarray | None = None
    replaced: dict[str, pl.Series] = field(default_factory=dict)
    parquet: tuple[Path, list[str], int] | None = None
    digested: ContentDigest | None = None

    @property
    def names(self) -> list[str]:
        return self.frame.collect_schema().names()

    @property
    def rows(self) -> int:
        if self.keep is not None:
            return int(self.keep.sum())
        if self.parquet is not None:  # the file's footer, read once by ``scan_parquet``
            return self.parquet[2]
        return int(self.frame.select(pl.len()).collect().item())

    def columns(self, names: list[str]) -> pl.DataFrame:
        """Some columns of the checked table, whole."""
        out = self.frame.select(names).collect()
        swap = [self.replaced[c] for c in names if c in self.replaced]
        out = out.with_columns(swap) if swap else out
        return out if self.keep is None else out.filter(pl.Series(self.keep))

    def digest(self) -> ContentDigest:
        """The content digest: the one made as the columns were checked, or else one fed a column at a
        time (a source with a column the checks skip, ``_row_id`` say, or rows dropped for their target)."""
        if self.digested is not None and self.keep is None and self.digested.columns == self.names:
            return self.digested
        digest = ContentDigest()
        for name in self.names:
            digest.add(self.columns([name]).to_series())
        return digest

    def record_batches(self, ids: np.ndarray | None) -> Iterator[pa.RecordBatch]:
        """The checked table as record batches, ``ids`` (one per kept row) first as ``_row_id``, read a
        batch ahead in a thread of their own (``read_ahead``): the file's decoding and the snapshot's
        encoding, both in pyarrow without the GIL, then take two cores instead of one after the other."""
        return read_ahead(self._batches(ids))

    def _batches(self, ids: np.ndarray | None) -> Iterator[pa.RecordBatch]:
        names, kept = self.names, 0
        for start, batch in self._source_batches():
            columns = [self.replaced[c].slice(start, batch.num_rows).to_arrow() if c in self.replaced else a
                       for c, a in zip(names, batch.columns, strict=True)]
            out = pa.RecordBatch.from_arrays(columns, names=names)  # the file's metadata (pandas') left behind
            if self.keep is not None:
                out = out.filter(pl.Series(self.keep[start:start + batch.num_rows]).to_arrow())
            if ids is not None:
                out = pa.RecordBatch.from_arrays([_int64s(ids[kept:kept + out.num_rows]), *out.columns],
                                                 names=[ROW_ID, *names])
                kept += out.num_rows
            yield out

    def _source_batches(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(first source row, batch) of the source's columns, in order."""
        start = 0
        if self.parquet is not None:  # pyarrow, one thread: Polars' slices decode a row group per slice
            path, file_names, _ = self.parquet
            batches = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 16).iter_batches(
                batch_size=ROWS_PER_BATCH, columns=file_names, use_threads=False)
        else:  # in memory: a slice at a time, so the Arrow copy of its text is one batch's
            data = self.frame.collect()
            batches = (b for at in range(0, data.height, ROWS_PER_BATCH)
                       for b in data.slice(at, ROWS_PER_BATCH).to_arrow().to_batches())
        for batch in batches:
            yield start, batch
            start += batch.num_rows


def _int64s(values: np.ndarray) -> pa.Array:
    """``values`` (int64) as an Arrow array over their buffer: ``pa.array`` would import pandas (pyarrow
    looks for a pandas Series first), 42 MiB of the ingest's peak."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


_AHEAD = 2  # batches read ahead of the writer: each is one batch's memory (~2.5 MiB for the 1M x 30 table)
_DONE = object()


def read_ahead(items: Iterator[Any], depth: int = _AHEAD) -> Iterator[Any]:
    """``items``, made up to ``depth`` ahead by a thread while the caller works on the last one; an
    exception of ``items`` is raised in the caller, and a caller that stops early stops the thread."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def make() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the caller, which raises it
            put((_DONE, exc))

    maker = threading.Thread(target=make, name="modelloop-read-ahead", daemon=True)
    maker.start()
    try:
        while True:
            item, exc = ready.get()
            if exc is not None:
                raise exc
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        maker.join()


def scan_parquet(path: Path) -> tuple[pl.LazyFrame, list[str], int] | None:
    """The columns of a Parquet file as pandas would read them (index columns left out, names stripped,
    NaN as missing), their names in the file and its number of rows; None when it has no rows or is not
    Parquet (the eager reader then says why)."""
    try:
        file = pq.ParquetFile(path)
    except (OSError, ValueError):
        return None
    schema = file.schema_arrow
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    file_names = [c for c in schema.names if c not in index]
    if not file_names or file.metadata.num_rows == 0:
        return None
    frame = to_lazy(path).select(pl.col(c).alias(c.strip()) for c in file_names)
    return frame, file_names, file.metadata.num_rows
