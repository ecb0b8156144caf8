"""Monitoring a regression model: live rmse/mae/r2, and a metric-drop alert judged on the target's scale."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest

from modelloop import Project, parse_config
from modelloop.data.ingest import ensure_split, load_dataset
from modelloop.registry import load_model, resolve_model


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("prices")
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame({"area": rng.gamma(3.0, 30.0, n), "city": rng.choice(["a", "b", "c"], n)})
    df["price"] = 2_000 * df.area + 50_000 * (df.city == "a") + rng.normal(0, 10_000, n)  # rmse ~ 10,000
    df.to_csv(root / "d.csv", index=False)
    p = Project(parse_config({"name": "prices", "data": {"source": "d.csv", "target": "price"},
                              "train": {"trials": 2, "cv_folds": 2, "families": ["linear"], "ensemble": False}},
                             root=root))
    p.run()
    return p


def _labeled_traffic(p: Project, error: float) -> None:
    """The test rows served and labeled so that each label misses the prediction by ``error``."""
    ws = p.workspace
    row = resolve_model(ws)
    drow, df, _ = load_dataset(ws, row["dataset_id"])
    X = df[ensure_split(ws, drow, df) == "test"].drop(columns=["price", "_row_id"]).head(60)
    pred = load_model(ws, row).predict(X)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ids = [uuid.uuid4().hex for _ in pred]
    ws.catalog.add_predictions([{"request_id": rid, "name": "prices", "version": row["version"],
                                 "at": now + dt.timedelta(milliseconds=i), "inputs": rec,
                                 "output": {"label": float(y)}, "latency_ms": 1.0}
                                for i, (rid, rec, y) in enumerate(zip(ids, X.to_dict("records"), pred, strict=True))])
    signs = np.where(np.arange(len(pred)) % 2, 1.0, -1.0)
    ws.catalog.add_feedback_many([{"request_id": rid, "label": float(y + s * error), "source": "file"}
                                  for rid, y, s in zip(ids, pred, signs, strict=True)])


def test_a_rmse_a_few_percent_above_the_holdout_is_no_alert_and_a_third_above_is(project):
    holdout = resolve_model(project.workspace)["metrics"]["rmse"]
    _labeled_traffic(project, 1.05 * holdout)     # live rmse 5 % above: hundreds of dollars, not a drop
    mon = project.monitor()
    live = mon["metrics"]["1"]["all"]
    assert mon["metric"] == "rmse" and set(live) == {"n", "rmse", "mae", "r2"}
    assert live["rmse"] == pytest.approx(1.05 * holdout) and live["mae"] == pytest.approx(1.05 * holdout)
    assert not [a for a in mon["alerts"] if a["kind"] == "metric_drop"]
    _labeled_traffic(project, 1.6 * holdout)      # 120 labels now: rmse ~1.36x the holdout's
    [alert] = [a for a in project.monitor()["alerts"] if a["kind"] == "metric_drop"]
    assert "% worse than on the holdout" in alert["message"]
