"""The profile's image checks: unreadable files, duplicates, near duplicates across the split, odd shapes."""

from __future__ import annotations

import shutil
from pathlib import Path

from image_toy import write_project
from PIL import Image

from modelloop.project import Project


def _planted(parts: Path) -> None:
    shutil.copy(parts / "bolt" / sorted(p.name for p in (parts / "bolt").iterdir())[0], parts / "nut" / "copy.png")
    first_nut = parts / "nut" / sorted(p.name for p in (parts / "nut").iterdir() if p.name != "copy.png")[0]
    img = Image.open(first_nut).convert("RGB")
    img.resize((img.width - 1, img.height - 1)).save(parts / "nut" / "resaved.png")  # a near duplicate
    img.resize((96, 16)).save(parts / "washer" / "banner.png")  # 6:1 and 16 px high
    (parts / "washer" / "notes.txt").write_text("not an image")


def test_the_profile_lists_image_problems_with_paths_and_the_gate_can_refuse_them(parts: Path, tmp_path: Path):
    _planted(parts)
    root = write_project(tmp_path / "p", str(parts), data={"on_bad_files": "skip"},
                         quality={"gate": {"forbid": [{"kind": "duplicate_images", "severity": "warning"}]}})
    project = Project.load(root / "modelloop.yaml")
    project.ingest()
    report = project.profile()
    found = {f["kind"]: f for f in report["findings"]}
    assert found["unreadable_files"]["details"]["files"][0]["file"] == "washer/notes.txt"
    dup = found["duplicate_images"]
    assert dup["severity"] == "error"  # the copy carries another label
    assert any("nut/copy.png" in group for group in dup["details"]["groups"])
    near = found["near_duplicate_images"]
    assert any("nut/resaved.png" in pair for pair in near["details"]["pairs"])
    assert "washer/banner.png" in found["extreme_aspect"]["details"]["files"]
    assert "washer/banner.png" in found["small_images"]["details"]["files"]
    assert not report["gate"]["passed"]
    assert any(f["check"] == "forbid:duplicate_images" for f in report["gate"]["failed"])


def test_a_clean_set_has_no_image_findings(parts: Path, tmp_path: Path):
    root = write_project(tmp_path / "p", str(parts))
    project = Project.load(root / "modelloop.yaml")
    project.ingest()
    kinds = {f["kind"] for f in project.profile()["findings"]}
    assert not kinds & {"unreadable_files", "duplicate_images", "near_duplicate_images",
                        "train_test_near_duplicates", "extreme_aspect", "small_images"}


def test_mislabelled_images_are_listed_as_label_issues(tmp_path: Path):
    import numpy as np

    from modelloop.examples.images import draw_part, generate_images

    parts = tmp_path / "images"
    generate_images(parts, per_class=14, size=64, seed=3, classes=("bolt", "nut", "washer"))
    rng = np.random.default_rng(7)
    for i in range(2):  # washers filed as bolts
        draw_part("washer", 64, rng).save(parts / "bolt" / f"really_a_washer_{i}.png")
    root = write_project(tmp_path / "p", str(parts), model={"image_size": 64})
    project = Project.load(root / "modelloop.yaml")
    project.ingest()
    found = {f["kind"]: f for f in project.profile()["findings"]}
    suspects = found["label_issues"]["details"]["suspects"]
    planted = [s for s in suspects if s["path"].startswith("bolt/really_a_washer")]
    assert planted and all(s["given"] == "bolt" and s["suggested"] == "washer" for s in planted)
