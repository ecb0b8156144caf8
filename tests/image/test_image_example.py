"""`modelloop init --example images`: a seeded, offline set of part images in a folder per class."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from clirun import cli

from modelloop.config import load_config


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.*")):
        h.update(str(f.relative_to(folder)).encode() + f.read_bytes())
    return h.hexdigest()


def test_init_writes_the_same_images_every_time_and_a_valid_config(tmp_path: Path, capsys):
    code, out, _ = cli(["init", "a", "--example", "images", "--json"], capsys, tmp_path)
    assert code == 0 and json.loads(out)["example"] == "images"
    cli(["init", "b", "--example", "images"], capsys, tmp_path)
    parts = tmp_path / "a" / "data" / "parts"
    assert sorted(d.name for d in parts.iterdir()) == ["bolt", "nut", "spring", "washer"]
    assert all(len(list(d.iterdir())) == 60 for d in parts.iterdir())
    assert {f.suffix for f in parts.rglob("*.*")} == {".png", ".jpg", ".webp"}
    assert _digest(parts) == _digest(tmp_path / "b" / "data" / "parts")
    cfg = load_config(tmp_path / "a" / "modelloop.yaml")
    assert cfg.task == "image_classification" and cfg.data.source == "data/parts"


@pytest.mark.slow  # the whole example: ingest, profile, a 20-trial head search on 240 images (~2-3 minutes)
def test_the_example_runs_end_to_end(tmp_path: Path, capsys):
    cli(["init", "parts", "--example", "images"], capsys, tmp_path)
    code, out, err = cli(["run", "--json"], capsys, tmp_path / "parts")
    assert code == 0, err
    result = json.loads(out)
    assert result["family"] == "image" and result["quality"]["gate"]["passed"]
    assert result["test_metrics"]["accuracy"] >= 0.9

