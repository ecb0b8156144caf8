"""A tiny trained project shared by the serving tests, and real uvicorn servers on 127.0.0.1.

``toy`` v1 comes from ``Project.train`` (the search and its ensemble) and is production; v2 is a
linear model registered directly (same schema, other predictions) for hot-swap tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from servers import free_port, running, wait_ready  # noqa: F401  (the serving tests import them from here)

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


def _register_linear(ws: Any) -> int:
    """Version 2: a plain linear TabularModel, registered like train does (not promoted)."""
    from modelloop.data.ingest import load_dataset
    from modelloop.models.tabular import TabularModel
    from modelloop.registry import tracker_for

    row, df, schema = load_dataset(ws)
    model = TabularModel(schema=schema, task="binary", family="linear").fit(
        df.drop(columns=["y"]), df["y"])
    tracker = tracker_for(ws)
    with tracker.run("linear-v2") as run_id:
        version = int(tracker.log_model(run_id, model, name="toy"))
    ws.catalog.add_model(name="toy", version=version, run_id=run_id, dataset_id=row["id"],
                         formats={"native": f"models:/toy/{version}"}, metrics={},
                         input_schema=schema.to_dict(),
                         info={"task": "binary", "threshold": None, "classes": [0, 1]})
    return version


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    from modelloop.config import parse_config
    from modelloop.project import Project

    root = tmp_path_factory.mktemp("toy")
    df = make_table()
    df.to_csv(root / "data.csv", index=False)
    project = Project(parse_config(RAW_CONFIG, root=root))
    project.ingest()
    result = project.train(budget=10, trials=4)
    assert result["model"]["version"] == 1 and result["production"]
    assert _register_linear(project.workspace) == 2
    records = []
    for rec in df.drop(columns=["y"]).head(50).to_dict(orient="records"):
        records.append({k: (None if isinstance(v, float) and np.isnan(v) else
                            v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()})
    return Toy(root=root, ws=project.workspace, raw=RAW_CONFIG, records=records)


# ---- servers ---------------------------------------------------------------------------------------
SERVE_SCRIPT = """
import json, sys
from modelloop.config import parse_config
from modelloop.workspace import Workspace
from modelloop.serving import ServeConfig, serve
spec = json.loads(sys.argv[1])
ws = Workspace(parse_config(spec["raw"], root=spec["root"]))
serve(ws, port=spec["port"], workers=spec["workers"], config=ServeConfig(**spec["serve"]))
"""


def start_server(toy: Toy, *, workers: int = 1, **serve: Any) -> tuple[subprocess.Popen, str]:
    """``serve(...)`` in a subprocess (its own process group); returns the process and base URL."""
    import json

    port = free_port()
    spec = {"raw": toy.raw, "root": str(toy.root), "port": port, "workers": workers,
            "serve": {"reload_poll_seconds": 0, **serve}}
    env = {**os.environ, "MODELLOOP_API_KEYS": ""}
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, json.dumps(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"
