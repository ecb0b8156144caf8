"""A new SQLite tracking store starts from a migrated empty one in the user's cache (seconds saved per project)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelloop.tracking import Tracker, seed_sqlite_store


def _tracker(root: Path) -> Tracker:
    root.mkdir()
    return Tracker(f"sqlite:///{root / 'mlflow.db'}", "proj", root / "art")


def test_new_stores_are_copies_of_one_migrated_template_and_work(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MODELLOOP_CACHE", str(cache))
    first = _tracker(tmp_path / "a")
    template = next(cache.glob("mlflow-*-empty.db"))
    made_at = template.stat().st_mtime_ns
    second = _tracker(tmp_path / "b")
    assert template.stat().st_mtime_ns == made_at  # made once, then only copied
    for t, root in ((first, tmp_path / "a"), (second, tmp_path / "b")):
        with t.run("r") as rid:
            t.log(rid, params={"depth": 3}, metrics={"f1": 0.5})
        runs = t.client.search_runs([t.experiment_id])
        assert [r.data.metrics for r in runs] == [{"f1": 0.5}]
        # MLflow's Default experiment points into this project, not where the template was made
        assert t.client.get_experiment("0").artifact_location == (root / "art" / "0").resolve().as_uri()
    assert not list(tmp_path.rglob("*.part"))


def test_an_unwritable_cache_leaves_the_store_to_mlflow(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MODELLOOP_CACHE", str(blocker))
    t = _tracker(tmp_path / "a")
    with t.run("r") as rid:
        t.log(rid, metrics={"f1": 1.0})
    assert t.client.search_runs([t.experiment_id])[0].data.metrics == {"f1": 1.0}
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("url", ["postgresql+psycopg://u@127.0.0.1/db", "file:///tmp/mlruns"])
def test_other_stores_and_existing_files_are_left_alone(tmp_path: Path, monkeypatch, url: str) -> None:
    monkeypatch.setenv("MODELLOOP_CACHE", str(tmp_path / "cache"))
    seed_sqlite_store(url, tmp_path)
    existing = tmp_path / "mlflow.db"
    existing.write_bytes(b"mine")
    seed_sqlite_store(f"sqlite:///{existing}", tmp_path)
    assert existing.read_bytes() == b"mine" and not (tmp_path / "cache").exists()
