"""Copy a trained project directory so that a test can change it without training its own.

Training a project is the slow part of many loop tests; the behaviour they check (feedback, retrain,
optimize, rollback) starts from a trained project, not from the act of training. A module fixture
trains once and each test works on a copy made by :func:`copy_project`.

The stores hold absolute paths (MLflow's artifact locations, the catalog's dataset and report paths),
so a plain ``copytree`` would leave the copy reading and writing the original's files. Here every
SQLite store is copied with SQLite's backup API (a consistent snapshot, WAL content included) and then
has the old root replaced by the new one in each text value; other text files are rewritten the same
way. A binary file (a pickle, Parquet) that names the old root cannot be rewritten safely, so the copy
refuses it rather than leave a link to the original behind.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _copy_sqlite(src: Path, dst: Path, old: str, new: str) -> None:
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
        tables = [r[0] for r in target.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for col in [r[1] for r in target.execute(f'pragma table_info("{table}")')]:
                target.execute(f'update "{table}" set "{col}" = replace("{col}", ?, ?) '
                               f'where typeof("{col}") = \'text\' and instr("{col}", ?) > 0', (old, new, old))
                blob = target.execute(f'select count(*) from "{table}" where typeof("{col}") = \'blob\' '
                                      f'and instr("{col}", ?) > 0', (old.encode(),)).fetchone()[0]
                if blob:
                    raise AssertionError(f"{src}: {table}.{col} names {old} inside a blob")
        target.commit()
    finally:
        source.close()
        target.close()


def copy_project(src: Path, dst: Path) -> Path:
    """Copy the project at ``src`` to ``dst`` (created); ``dst`` no longer refers to ``src``."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    old, new = str(src), str(dst)
    shutil.copytree(src, dst, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.db", *(f"*{s}" for s in _SQLITE_SIDE_FILES)))
    for f in src.rglob("*.db"):
        _copy_sqlite(f, dst / f.relative_to(src), old, new)
    for f in dst.rglob("*"):
        if not f.is_file() or f.suffix == ".db":
            continue
        data = f.read_bytes()
        if old.encode() not in data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise AssertionError(f"{f} names {old} in binary content; it cannot be copied") from None
        f.write_text(text.replace(old, new), encoding="utf-8")
    return dst
