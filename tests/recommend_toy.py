"""Tiny recommendation projects for the tests (the example's generator, shrunk): written to ``root``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelloop.examples.recommend import generate_interactions


def write_project(root: Path, *, users: int = 60, items: int = 40, explicit: bool = False, time: bool = False,
                  name: str = "shop", models: list[str] | None = None) -> dict[str, Any]:
    """``root/ratings.csv`` and the raw config of a project over it (implicit unless ``explicit``)."""
    root.mkdir(parents=True, exist_ok=True)
    generate_interactions(users=users, items=items, per_user=10, seed=0).to_csv(root / "ratings.csv", index=False)
    data: dict[str, Any] = {"source": "ratings.csv", "user": "user", "item": "item"}
    if explicit:
        data["rating"] = "rating"
    if time:
        data["time"] = "ts"
    return {"name": name, "task": "recommendation", "data": data,
            "model": {"k": 5, "epochs": 4, **({"models": models} if models else {})}, "train": {"trials": 4}}
