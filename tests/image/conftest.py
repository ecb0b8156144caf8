"""Image-family fixtures: tiny generated image sets (32 px) and projects over them; never a download."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path

import pytest
from image_toy import write_project

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
# One intra-op thread: on the shared 2-core test machine two OpenMP threads contending with other
# processes ran an epoch of 27 images at 32 px in 10 s instead of 0.3 s.
torch.set_num_threads(1)


@pytest.fixture()
def parts(tmp_path: Path) -> Path:
    """A folder per class of small generated images (3 classes x 10)."""
    from modelloop.examples.images import generate_images

    generate_images(tmp_path / "images", per_class=10, size=32, seed=0, classes=("bolt", "nut", "washer"))
    return tmp_path / "images"


@pytest.fixture(scope="session")
def trained_parts(tmp_path_factory) -> Path:
    """A project run through `modelloop run`'s pipeline once per session (ingest, profile, a 2-trial head
    search, registration as version 1). Tests that need version 1 name it (``parts:1``): the loop test's
    retrain may promote a version 2."""
    from modelloop.examples.images import generate_images
    from modelloop.project import Project

    root = tmp_path_factory.mktemp("trained-parts")
    generate_images(root / "images", per_class=12, size=32, seed=1, classes=("bolt", "nut", "washer"))
    write_project(root, "images", retrain={"recent_fraction": 0.5}, monitor={"min_rows": 60})
    result = Project.load(root / "modelloop.yaml").run()
    assert result["model"]["version"] == 1, result
    return root
