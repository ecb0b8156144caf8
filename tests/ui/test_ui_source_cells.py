"""The Trace page's first rows of a dataset version cut a long value: an image version stores each file's
bytes as base64 (hundreds of kilobytes a photo), and the page printed every one of them whole."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from modelloop.dashboard.compare import SOURCE_CELL_CHARS, dataset_source
from modelloop.project import Project


def test_first_rows_cut_values_longer_than_the_cap(tmp_path: Path) -> None:
    long = "".join(chr(ord("a") + i % 26) for i in range(50_000))
    pd.DataFrame({"blob": [long, "short"] * 6, "y": ["a", "b"] * 6}).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(
        {"name": "cells", "task": "classification", "data": {"source": "d.csv", "target": "y"}}))
    project = Project.load(tmp_path / "modelloop.yaml")
    ds = project.ingest()
    rows = dataset_source(project, ds["id"])["rows"]
    assert [r["y"] for r in rows] == ["a", "b", "a", "b", "a"]
    assert rows[0]["blob"] == long[:SOURCE_CELL_CHARS] + "…" and rows[1]["blob"] == "short"
