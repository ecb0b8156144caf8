"""The catalog contract: one suite, run against SQLite always and PostgreSQL when reachable."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from modelloop.catalog import Catalog
from modelloop.errors import NotFoundError, StateError


def _dataset(cat: Catalog, vid: str, parents=()):
    return cat.add_dataset(id=vid, project="p", step="ingest", parents=list(parents),
                           schema={"columns": {"a": "numeric"}}, rows=3, path="/x", source={})


def test_dataset_versions_are_deduplicated_and_numbered(store_url):
    cat = Catalog(store_url)
    first = _dataset(cat, "aaa111")
    again = _dataset(cat, "aaa111")
    second = _dataset(cat, "bbb222", parents=["aaa111"])
    assert first["seq"] == again["seq"] == 1 and second["seq"] == 2
    assert [d["id"] for d in cat.list_datasets("p")] == ["aaa111", "bbb222"]
    assert cat.get_dataset("v2", "p")["parents"] == ["aaa111"]
    assert cat.get_dataset("bbb", "p")["id"] == "bbb222"
    with pytest.raises(NotFoundError):
        cat.get_dataset("zzz", "p")


def test_models_aliases_keep_history(store_url):
    cat = Catalog(store_url)
    _dataset(cat, "aaa111")
    for v in (1, 2):
        cat.add_model(name="m", version=v, run_id=f"r{v}", dataset_id="aaa111", formats={"native": "x"},
                      metrics={"f1_macro": 0.5 + v / 10}, input_schema={}, info={})
    assert cat.get_alias("m", "production") is None
    cat.set_alias("m", 1, "production")
    cat.set_alias("m", 2, "production")
    assert cat.get_alias("m", "production") == 2
    assert [h["version"] for h in cat.alias_history("m", "production")] == [1, 2]
    with pytest.raises(NotFoundError):
        cat.set_alias("m", 9, "production")
    assert cat.get_model("m", 2)["metrics"]["f1_macro"] == pytest.approx(0.7)


def test_feedback_is_stored_once_and_predictions_roundtrip(store_url):
    cat = Catalog(store_url)
    cat.add_predictions([{"request_id": "r1", "name": "m", "version": 1, "at": __import__("datetime").datetime(2026, 1, 1),
                          "inputs": {"a": 1.5}, "output": {"label": 1}, "latency_ms": 1.2}])
    assert cat.get_prediction("r1")["inputs"] == {"a": 1.5}
    assert cat.get_prediction("nope") is None
    assert cat.add_feedback("r1", 1) is True
    assert cat.add_feedback("r1", 0) is False


def test_predictions_batch_roundtrips_every_column_type(store_url):
    """The serving log's insert goes to the driver directly: values must read back as written."""
    import datetime as dt

    from sqlalchemy.exc import IntegrityError

    cat = Catalog(store_url)
    at = dt.datetime(2026, 1, 2, 3, 4, 5)  # no microseconds: SQLite stores a padded string
    later = dt.datetime(2026, 1, 2, 3, 4, 5, 123456)
    rows = [{"request_id": f"b{i}", "name": "m", "version": 2, "at": t, "latency_ms": 0.25 * i,
             "inputs": {"x": None, "text": "é 中文", "n": [1, 2], "flag": True},
             "output": {"label": "yes", "probabilities": {"no": 0.1, "yes": 0.9}}}
            for i, t in enumerate([at, later, at])]
    cat.add_predictions(rows)
    for row in rows:
        assert cat.get_prediction(row["request_id"]) == row
    if cat.engine.dialect.name == "sqlite":  # the text SQLAlchemy's own DateTime type writes
        with cat.engine.connect() as c:
            stored = dict(c.exec_driver_sql("select request_id, at from predictions").all())
        assert stored["b0"] == "2026-01-02 03:04:05.000000" and stored["b1"] == "2026-01-02 03:04:05.123456"
    recent = [p["request_id"] for p in cat.recent_predictions("m", 10)]
    assert recent[-1] == "b1" and sorted(recent) == ["b0", "b1", "b2"]  # ordered by time, as datetimes
    with pytest.raises(IntegrityError):  # the log falls back to row-by-row on this
        cat.add_predictions([rows[0]])
    # JSON text keeps numbers exact; a value JSON has no type for is an error, never a string
    exact = {**rows[0], "request_id": "b3", "inputs": {"tiny": 1e-7, "big": 2**53 + 1, "pi": 3.141592653589793}}
    cat.add_predictions([exact])
    assert cat.get_prediction("b3")["inputs"] == exact["inputs"]
    with pytest.raises(Exception, match="int64|serializ"):
        cat.add_predictions([{**rows[0], "request_id": "b4", "inputs": {"n": np.int64(3)}}])
    assert cat.get_prediction("b4") is None


def test_failed_transaction_leaves_nothing(store_url):
    cat = Catalog(store_url)
    from modelloop.catalog import datasets

    with pytest.raises(RuntimeError), cat.tx() as c:
        c.execute(datasets.insert().values(id="x1", project="p", seq=1, created_at=sa.func.now(),
                                           step="ingest", parents=[], schema={}, rows=1, path="/",
                                           source={}))
        raise RuntimeError("boom")
    assert cat.list_datasets("p") == []


def test_newer_schema_version_is_refused_with_how_to_upgrade(store_url):
    cat = Catalog(store_url)
    from modelloop.catalog import meta

    with cat.tx() as c:
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value="999"))
    cat.close()
    with pytest.raises(StateError, match=r"schema version 999, newer .*pip install -U modelloop"):
        Catalog(store_url)


def test_schema_1_catalog_is_migrated_with_each_models_family(store_url):
    """A project made before families were recorded opens, and its versions say which family made them."""
    from modelloop.catalog import SCHEMA_VERSION, meta

    cat = Catalog(store_url)
    common = {"run_id": "r", "dataset_id": "d", "formats": {}, "metrics": {}, "info": {"task": "binary"}}
    cat.add_model(name="m", version=1, input_schema={"columns": {"a": "numeric", "y": "categorical"},
                                                     "target": "y"}, **common)
    cat.add_model(name="m", version=2, input_schema={"columns": {"msg": "text", "y": "categorical"},
                                                     "target": "y", "text": "msg"}, **common)
    with cat.tx() as c:  # back to schema 1: no family column
        c.execute(sa.text("ALTER TABLE models DROP COLUMN family"))
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value="1"))
    cat.close()
    cat = Catalog(store_url)
    assert [m["family"] for m in cat.list_models("m")] == ["tabular", "text"]
    with cat.tx() as c:
        assert c.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == \
            str(SCHEMA_VERSION)


def test_sqlite_runs_in_wal_mode(tmp_path):
    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with cat.tx() as c:
        assert c.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
