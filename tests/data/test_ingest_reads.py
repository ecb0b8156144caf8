"""How often ingest reads a Parquet source, counted by the kernel (inotify), not by our own code.

A read of a column is an open of the file by Polars or pyarrow, whichever thread or library makes it, so
the count is the number of ``IN_OPEN`` events on the source. Ingest used to read every column three times
(schema inference, the content digest, the snapshot's copy); the checks and the digest are now one pass.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from modelloop import Project, parse_config
from modelloop.data.snapshot import ROW_ID, read_manifest, snapshot_file

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")

_IN_OPEN, _IN_CLOSE_NOWRITE, _IN_NONBLOCK, _IN_CLOEXEC = 0x20, 0x10, 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, name length (a name follows only for a directory watch)


class FileOpens:
    """Counts the opens of one file by any code of any process, from the kernel's inotify events (closes
    are watched too: the kernel merges an event identical to the last one queued, and a close between two
    opens keeps them apart)."""

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._fd < 0 or self._libc.inotify_add_watch(self._fd, os.fsencode(path),
                                                        _IN_OPEN | _IN_CLOSE_NOWRITE) < 0:
            pytest.skip(f"inotify unavailable (errno {ctypes.get_errno()})")
        self.opens = 0

    def count(self) -> int:
        """Opens since the last call."""
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            at = 0
            while at < len(buf):
                _, mask, _, size = _EVENT.unpack_from(buf, at)
                at += _EVENT.size + size
                self.opens += bool(mask & _IN_OPEN)
        opens, self.opens = self.opens, 0
        return opens

    def close(self) -> None:
        os.close(self._fd)


def _source(path: Path, n: int = 3_000) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    df = pl.DataFrame({"x": rng.normal(size=n), "k": rng.integers(0, 50, n), "c": rng.choice(["a", "b", "c"], n),
                       "amount": [str(v) for v in rng.integers(0, 9, n)], "note": [f"n{i}" for i in range(n)],
                       "y": rng.integers(0, 2, n)})
    df.write_parquet(path)
    return df


def test_a_parquet_ingest_reads_each_column_once_for_its_checks_and_once_for_the_snapshot(tmp_path):
    source = tmp_path / "t.parquet"
    df = _source(source)
    opens = FileOpens(source)
    try:
        p = Project(parse_config({"name": "r", "data": {"source": "t.parquet", "target": "y"}}, root=tmp_path))
        opens.count()
        row = p.ingest()
        first = opens.count()
        assert not p.ingest()["created"]  # unchanged: found, not written again
        again = opens.count()
    finally:
        opens.close()
    columns = df.width
    # the footer once, then a read per column for the checks and the digest (the text column of numbers
    # is converted as it is read), one for the snapshot's copy and one of the target for the split
    # (19 opens before: the digest read every column again, the row count the footer twice)
    assert first == columns + 3, first
    assert again == columns + 1, again  # the version is found from the digest: no copy
    snap = pl.read_parquet(snapshot_file(row["path"]))
    assert snap.columns == [ROW_ID, *df.columns] and snap[ROW_ID].n_unique() == len(df)
    assert snap["amount"].dtype.is_numeric() and snap["amount"].to_list() == [int(v) for v in df["amount"]]
    assert read_manifest(row["path"])["row_hashes"] == {"columns": df.columns, "repeated": 0}


def test_read_ahead_gives_every_item_in_order_raises_the_makers_error_and_stops_with_its_caller():
    import threading

    from modelloop.data._checked import read_ahead

    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad row group")

    got = read_ahead(failing())
    assert next(got) == 1
    with pytest.raises(ValueError, match="bad row group"):
        next(got)

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    taken = read_ahead(endless(), depth=2)
    assert [next(taken) for _ in range(3)] == [0, 1, 2]
    taken.close()  # the caller stops: the thread ends, a few items ahead at most
    assert not [t for t in threading.enumerate() if t.name == "modelloop-read-ahead"]
    assert len(made) <= 3 + 2 + 1
