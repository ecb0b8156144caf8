"""Small image projects for tests/image and the contract suite's image case (the generated images come
from ``modelloop.examples.images``)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_project(root: Path, source: str, **extra) -> Path:
    """A modelloop.yaml for an image project at ``root`` reading ``source`` (32 px, a head, 2 trials)."""
    cfg = {"name": "parts", "task": "image_classification", "data": {"source": source, "target": "label"},
           "model": {"image_size": 32, "method": "head"}, "train": {"budget": 60, "trials": 2}}
    for key, value in extra.items():
        cfg.setdefault(key, {}).update(value)
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelloop.yaml").write_text(yaml.safe_dump(cfg))
    return root
