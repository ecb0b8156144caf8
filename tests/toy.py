"""The toy fraud-like table and project the serving tests train once (see tests/serving/conftest.py).

A module of its own, not conftest: test modules import from it, and two test folders each have a
``conftest`` module, so ``from conftest import ...`` depends on which folder pytest saw first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RAW_CONFIG = {"name": "toy", "data": {"source": "data.csv", "target": "y", "id": "tid"},
              "train": {"cv_folds": 3, "ensemble_size": 2}}


@dataclass
class Toy:
    root: Path
    ws: Any
    raw: dict[str, Any]
    records: list[dict[str, Any]]       # valid JSON records (rows of the table, no target)

    def record(self, i: int = 0) -> dict[str, Any]:
        return dict(self.records[i % len(self.records)])


def make_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "tid": [f"t{i}" for i in range(n)],
        "amount": rng.gamma(2.0, 50.0, n).round(2),
        "age": rng.integers(18, 80, n),
        "country": rng.choice(["FR", "DE", "US", "GB"], n),
        "online": rng.choice([True, False], n),
        "signup": (pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 500, n), "D")).astype(str),
    })
    y = (df["amount"] > 120) ^ (rng.random(n) < 0.1) | ((df["country"] == "US") & (df["age"] < 30))
    df["y"] = y.astype(int)
    df.loc[rng.random(n) < 0.05, "amount"] = np.nan
    return df


def register_linear(ws: Any, name: str = "toy") -> int:
    """A plain linear TabularModel of the ingested table, registered like train does (not promoted): its
    version. The serving tests' v2 (same schema, other predictions) for hot swaps."""
    from modelloop.data.ingest import load_dataset
    from modelloop.families.tabular.model import TabularModel
    from modelloop.registry import tracker_for

    row, df, schema = load_dataset(ws)
    model = TabularModel(schema=schema, task="binary", family="linear").fit(
        df.drop(columns=["y"]), df["y"])
    tracker = tracker_for(ws)
    with tracker.run("linear") as run_id:
        version = int(tracker.log_model(run_id, model, name=name))
    ws.catalog.add_model(name=name, version=version, run_id=run_id, dataset_id=row["id"],
                         formats={"native": f"models:/{name}/{version}"}, metrics={},
                         input_schema=schema.to_dict(),
                         info={"task": "binary", "threshold": None, "classes": [0, 1]})
    return version
