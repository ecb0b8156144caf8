"""Drift from a small training reference: 30 training rows (an image project had 28) compared with a
window of 100 requests. Same-distribution traffic must not alarm (ten PSI bins of ~3 rows each made
every window "drift"), a real shift still must; a normal-sized reference keeps its PSI threshold."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest

from modelloop import Project, parse_config
from modelloop.data.shift import compare_distributions, psi_noise_floor, reference_bins
from modelloop.registry import resolve_model


def _rows(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"x1": x1, "x2": x2, "kind": rng.choice(["a", "b", "c"], n),
                         "y": 2 * x1 - x2 + rng.normal(0, 0.1, n)})


def _log(p: Project, df: pd.DataFrame) -> None:
    ws, row = p.workspace, resolve_model(p.workspace)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ws.catalog.add_predictions([
        {"request_id": uuid.uuid4().hex, "name": row["name"], "version": row["version"],
         "at": now + dt.timedelta(milliseconds=i), "inputs": rec, "output": {"value": float(rec["x1"])},
         "latency_ms": 1.0} for i, rec in enumerate(df.drop(columns=["y"]).to_dict("records"))])


def test_a_30_row_reference_does_not_alarm_on_its_own_distribution_and_does_on_a_shift(tmp_path) -> None:
    _rows(30, seed=0).to_csv(tmp_path / "t.csv", index=False)
    p = Project(parse_config({"name": "small", "task": "regression", "data": {"source": "t.csv", "target": "y"},
                              "split": {"test_size": 0.2},
                              "train": {"trials": 1, "cv_folds": 2, "families": ["linear"], "ensemble": False},
                              "monitor": {"min_rows": 100}}, root=tmp_path))
    p.ingest()
    p.train()
    for seed in (1, 2, 3):  # new draws of the same distribution: no alert, whatever the draw
        _log(p, _rows(100, seed=seed))
        mon = p.monitor(window=100)
        assert not mon["alerts"], mon["alerts"]
        assert all(f["threshold"] >= 0.2 for f in mon["drift"]["features"].values())
    _log(p, _rows(100, seed=9, shift=1.5))
    mon = p.monitor(window=100)
    assert "x1" in mon["drifted_features"] and "x2" not in mon["drifted_features"]
    alert = next(a for a in mon["alerts"] if a["feature"] == "x1")
    assert alert["threshold"] > 0.2  # the small sample's floor, said in the alert


@pytest.mark.parametrize("n_ref", [30, 3000])
def test_same_distribution_windows_rarely_fire_psi_and_a_shift_always_does(n_ref: int) -> None:
    """Over 40 same-distribution windows of 100 rows, PSI fires at most twice (p_threshold 0.01); a
    1.5-sd shift fires it in every one, and a 1-sd shift is drifted (PSI or KS) in every one. Without
    ``small_samples`` the 30-row reference fires PSI in about half the same-distribution windows."""
    rng = np.random.default_rng(n_ref)
    ref = pd.DataFrame({"x": rng.normal(0, 1, n_ref)})
    kinds = {"x": "numeric"}
    same = [compare_distributions(ref, pd.DataFrame({"x": rng.normal(0, 1, 100)}), kinds, small_samples=True)["x"]
            for _ in range(40)]
    shifted = [compare_distributions(ref, pd.DataFrame({"x": rng.normal(1.5, 1, 100)}), kinds,
                                     small_samples=True)["x"] for _ in range(40)]
    nearer = [compare_distributions(ref, pd.DataFrame({"x": rng.normal(1.0, 1, 100)}), kinds,
                                    small_samples=True)["x"] for _ in range(40)]
    assert sum("psi" in d["fired"] for d in same) <= 2
    assert all("psi" in d["fired"] for d in shifted) and all(d["drifted"] for d in nearer)
    if n_ref == 30:
        assert reference_bins(30) == 6
        plain = [compare_distributions(ref, pd.DataFrame({"x": rng.normal(0, 1, 100)}), kinds)["x"] for _ in range(40)]
        assert sum("psi" in d["fired"] for d in plain) >= 10  # the old 10-bin PSI: about half alarm
    else:
        assert same[0]["psi_threshold"] == pytest.approx(max(0.2, psi_noise_floor(10, n_ref, 100, 0.01)))
        assert len(same[0]["bins"]) == 10  # a normal reference keeps ten bins
