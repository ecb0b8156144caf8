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
