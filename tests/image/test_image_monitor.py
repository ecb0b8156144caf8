"""Image drift: served images' size and pixel statistics against the training images'."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from modelloop.data.ingest import load_dataset
from modelloop.feedback.monitor import drift_report
from modelloop.project import Project
from modelloop.serving.runtime import load_runtime


def _served(runtime, images: list[str]) -> list[dict]:
    records = runtime.validator.validate_json(json.dumps({"records": [{"image": b} for b in images]}).encode())
    outputs = runtime.predict(records)
    # what the prediction log stores: the records' JSON items (digest and statistics), not the pixels
    return [{"inputs": json.loads(json.dumps(r)), "output": o} for r, o in zip(records, outputs, strict=True)]


def _brighter(text: str) -> str:
    img = Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")
    img = ImageEnhance.Brightness(img).enhance(1.8).resize((img.width * 3, img.height * 2))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_brighter_wider_images_drift_and_the_training_images_do_not(trained_parts: Path):
    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    runtime = load_runtime(ws, "parts:1")
    _, df, _ = load_dataset(ws)
    same = drift_report(ws, row, _served(runtime, list(df["image"])))
    assert {"width", "height", "aspect", "brightness", "contrast"} <= set(same["features"])
    assert not any(same["features"][c]["drifted"] for c in ("width", "aspect", "brightness"))
    rng = np.random.default_rng(0)
    shifted = [_brighter(t) for t in rng.choice(df["image"].to_numpy(), 30)]
    moved = drift_report(ws, row, _served(runtime, shifted))
    for column in ("width", "aspect", "brightness"):
        assert moved["features"][column]["drifted"], (column, moved["features"][column])
