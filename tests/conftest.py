"""Shared fixtures: PostgreSQL (real server, skipped with a reason when absent) and small projects."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest


def _temp_in_memory(shm: Path = Path("/dev/shm"), room: int = 4 << 30) -> None:
    """The run's temporary folders (tmp_path, the stores' SQLite files, subprocesses' TMPDIR) go to tmpfs
    when the machine has one with ``room`` free and TMPDIR is not set. Every SQLite commit (the catalog,
    MLflow's store, Optuna's) is an fsync: 15 ms each on the 2-core test machine's disk under load,
    0.1 ms in memory, and a run makes thousands; no test needs the data to outlive the machine."""
    if "TMPDIR" in os.environ or not shm.is_dir():
        return
    try:
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize < room:
            return
        folder = shm / f"modelloop-tests-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


_temp_in_memory()
# New MLflow stores are copied from one migrated per session (modelloop.tracking.seed_sqlite_store),
# kept out of the user's own cache; subprocess CLI runs inherit it.
if "MODELLOOP_CACHE" not in os.environ:
    os.environ["MODELLOOP_CACHE"] = tempfile.mkdtemp(prefix="modelloop-test-cache-")

    def _drop_cache(folder: str = os.environ["MODELLOOP_CACHE"], pid: int = os.getpid()) -> None:
        if os.getpid() == pid:  # not in a forked child that exits through atexit while the run goes on
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(_drop_cache)

PG_BASE = os.environ.get("MODELLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_pg_reason: str | None = None


def _pg_available() -> str | None:
    """None when a server answers, else the reason to skip."""
    global _pg_reason
    if _pg_reason is None:
        try:
            import sqlalchemy as sa

            eng = sa.create_engine(PG_BASE, connect_args={"connect_timeout": 2})
            with eng.connect() as c:
                c.execute(sa.text("select 1"))
            eng.dispose()
            _pg_reason = ""
        except Exception as exc:  # no server, no driver, refused...
            _pg_reason = f"PostgreSQL not reachable at {PG_BASE}: {type(exc).__name__}"
    return _pg_reason or None


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:10]
    eng = sa.create_engine(PG_BASE)
    with eng.begin() as c:
        c.execute(sa.text(f"create schema {schema}"))
    sep = "&" if "?" in PG_BASE else "?"
    yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    with eng.begin() as c:
        c.execute(sa.text(f"drop schema {schema} cascade"))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path):
    """Every store contract runs against embedded SQLite and, when present, PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
