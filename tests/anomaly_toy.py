"""The sensors example as the anomaly tests use it: its config with a small search, its data written."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

FAST = {"budget": 30, "trials": 5}  # each detector once, at its defaults
PER_DAY = 2.0  # the session project's alert budget (alerts per day)


def sensors_config(rows: int = 1500, per_day: float | None = None) -> dict[str, Any]:
    """The example's config; ``per_day``: an alert budget per day instead of its contamination."""
    raw = yaml.safe_load(resources.files("modelloop.examples").joinpath("anomaly.yaml").read_text())
    raw["train"] = dict(FAST)
    if per_day is not None:
        raw["anomaly"].pop("contamination", None)
        raw["anomaly"]["alert_budget"] = f"{per_day:g} per day"
    return raw


def write_sensors(root: Path, rows: int = 1500, seed: int = 0) -> Path:
    from modelloop.examples.sensors import generate_sensors

    (root / "data").mkdir(parents=True, exist_ok=True)
    path = root / "data" / "sensors.csv"
    generate_sensors(rows, seed=seed).to_csv(path, index=False)
    return path
