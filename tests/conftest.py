"""Shared fixtures: PostgreSQL (real server, skipped with a reason when absent) and small projects."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

# New MLflow stores are copied from one migrated per session (modelloop.tracking.seed_sqlite_store),
# kept out of the user's own cache; subprocess CLI runs inherit it.
os.environ.setdefault("MODELLOOP_CACHE", tempfile.mkdtemp(prefix="modelloop-test-cache-"))

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
