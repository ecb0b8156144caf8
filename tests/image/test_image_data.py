"""Image sources: folders per class, tables of paths, zips; every decodable format; bad files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clirun import cli
from image_toy import write_project
from PIL import Image

from modelloop.data.images import BadImage, ImageTooLarge, decode_image, read_image_source
from modelloop.errors import DataError


def _png(color=(200, 30, 30), size=(20, 10), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def test_decode_applies_exif_orientation_and_converts_modes():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(buf, "JPEG", quality=95, exif=exif)
    upright = decode_image(buf.getvalue())
    assert upright.size == (20, 40) and upright.mode == "RGB"
    top = np.asarray(upright)[:8].reshape(-1, 3).mean(axis=0)
    assert top[2] > 150 and top[0] < 100  # the blue side is now on top
    for mode in ("L", "P", "CMYK", "1", "LA", "RGBA", "I;16"):
        raw = io.BytesIO()
        fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
        Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode).save(raw, fmt)
        assert decode_image(raw.getvalue()).mode == "RGB", mode
    for fmt in ("GIF", "WEBP", "BMP"):
        raw = io.BytesIO()
        Image.new("RGB", (8, 8), (10, 200, 30)).save(raw, fmt)
        assert np.asarray(decode_image(raw.getvalue())).shape == (8, 8, 3), fmt


def test_decode_refuses_bombs_truncated_files_and_non_images():
    big = io.BytesIO()
    Image.new("L", (3000, 3000)).save(big, "PNG")
    with pytest.raises(ImageTooLarge, match="3000x3000"):
        decode_image(big.getvalue(), max_pixels=1_000_000)
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    with pytest.raises(BadImage, match="truncated"):
        decode_image(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    with pytest.raises(BadImage):
        decode_image(b"just some text")


def test_folder_table_and_zip_sources_read_the_same_images(parts: Path, tmp_path: Path):
    report: dict = {}
    folder = read_image_source(str(parts), root=tmp_path, target="label", report=report)
    assert len(folder) == 30 and report["classes"] == {"bolt": 10, "nut": 10, "washer": 10}
    assert set(report["image_formats"]) >= {"png"}
    assert {"width", "height", "aspect", "brightness", "contrast", "path"} <= set(folder.columns)
    # a table of paths relative to the table's folder
    table = pd.DataFrame({"file": folder["path"], "label": folder["label"]})
    table.to_csv(parts / "labels.csv", index=False)
    from_table = read_image_source(str(parts / "labels.csv"), root=tmp_path, target="label")
    assert sorted(from_table["image"]) == sorted(folder["image"])
    table.to_json(parts / "labels.jsonl", orient="records", lines=True)
    assert len(read_image_source(str(parts / "labels.jsonl"), root=tmp_path, target="label")) == 30
    # a zip of the class folders (under one top folder) and a zip holding a table
    with zipfile.ZipFile(tmp_path / "parts.zip", "w") as z:
        for f in sorted(parts.rglob("*.*")):
            if f.parent != parts:
                z.write(f, f"images/{f.relative_to(parts)}")
    zipped = read_image_source("parts.zip", root=tmp_path, target="label")
    assert sorted(zipped["image"]) == sorted(folder["image"])
    assert set(zipped["label"]) == {"bolt", "nut", "washer"}
    with zipfile.ZipFile(tmp_path / "table.zip", "w") as z:
        z.writestr("data/labels.csv", table.to_csv(index=False))
        for p in folder["path"]:
            z.write(parts / p, f"data/{p}")
    assert sorted(read_image_source("table.zip", root=tmp_path, target="label")["image"]) == sorted(folder["image"])


def test_bad_files_fail_naming_the_file_or_are_skipped_and_counted(parts: Path, tmp_path: Path):
    (parts / "nut" / "notes.txt").write_text("not an image")
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(jpeg, "JPEG")
    (parts / "bolt" / "cut.jpg").write_bytes(jpeg.getvalue()[:200])
    with pytest.raises(DataError, match=r"bolt/cut.jpg: .*data.on_bad_files: skip"):
        read_image_source(str(parts), root=tmp_path, target="label")
    report: dict = {}
    df = read_image_source(str(parts), root=tmp_path, target="label", on_bad_files="skip", report=report)
    assert len(df) == 30
    assert sorted(b["file"] for b in report["bad_files"]) == ["bolt/cut.jpg", "nut/notes.txt"]


def test_cli_ingest_refuses_bad_sources_with_exit_2(parts: Path, tmp_path: Path, capsys):
    root = write_project(tmp_path / "p", str(parts))
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(jpeg, "JPEG")
    (parts / "nut" / "broken.jpg").write_bytes(jpeg.getvalue()[:300])
    code, _, err = cli(["ingest"], capsys, root)
    assert code == 2 and "nut/broken.jpg" in err and "Traceback" not in err
    assert not (root / ".modelloop" / "datasets").exists() or not any((root / ".modelloop" / "datasets").iterdir())
    (parts / "nut" / "broken.jpg").unlink()
    (parts / "empty").mkdir()
    code, _, err = cli(["ingest"], capsys, root)
    assert code == 2 and "class folder 'empty' is empty" in err
    (parts / "empty").rmdir()
    for folder in ("nut", "washer"):
        for f in (parts / folder).iterdir():
            f.unlink()
        (parts / folder).rmdir()
    code, _, err = cli(["ingest"], capsys, root)
    assert code == 2 and "only one class" in err


def test_ingest_makes_a_content_addressed_version(parts: Path, tmp_path: Path, capsys):
    root = write_project(tmp_path / "p", str(parts))
    code, out, _ = cli(["ingest", "--json"], capsys, root)
    first = json.loads(out)
    assert code == 0 and first["rows"] == 30 and first["schema"]["text"] == "image"
    code, out, _ = cli(["ingest", "--json"], capsys, root)
    assert json.loads(out)["id"] == first["id"] and json.loads(out)["created"] is False
    f = sorted((parts / "bolt").iterdir())[0]
    img = Image.open(f).convert("RGB")
    img.putpixel((0, 0), (0, 0, 0) if img.getpixel((0, 0)) != (0, 0, 0) else (255, 255, 255))
    img.save(f.with_suffix(".png"))
    if f.suffix != ".png":
        f.unlink()
    code, out, _ = cli(["ingest", "--json"], capsys, root)
    assert json.loads(out)["id"] != first["id"]  # one changed pixel is a new version
