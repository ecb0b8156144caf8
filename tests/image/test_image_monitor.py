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


def _drawn(kinds: tuple[str, ...], n: int, seed: int, *, grey: bool = False) -> list[str]:
    from modelloop.examples.images import draw_part

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = draw_part(kinds[i % len(kinds)], 32, rng)
        img = img.convert("L").convert("RGB") if grey else img
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def _embedding(report: dict) -> dict:
    return {k: v for k, v in report["features"].items() if k.startswith("embedding:pc")}


def test_embedding_drift_rises_for_new_colours_and_a_new_class_not_for_new_draws_of_the_same(trained_parts: Path):
    import datetime as dt
    import uuid

    from modelloop.feedback.monitor import monitor

    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    runtime = load_runtime(ws, "parts:1")
    parts = ("bolt", "nut", "washer")
    same = drift_report(ws, row, _served(runtime, _drawn(parts, 60, seed=100)))  # new images, same world
    assert len(_embedding(same)) == 4 and not any(d["drifted"] for d in _embedding(same).values())
    assert same["embedding"]["current_images"] == 60 and same["embedding"]["images_missing"] == 0
    assert same["embedding"]["reference_images"] > 20 and same["embedding"]["dimensions"] == 1280
    grey = drift_report(ws, row, _served(runtime, _drawn(parts, 60, seed=101, grey=True)))  # colours gone
    assert any(d["drifted"] for d in _embedding(grey).values()), _embedding(grey)
    # a class the model never saw, through the monitor itself: logged predictions, alerts, its output
    springs = _served(runtime, _drawn(("spring",), 60, seed=102))
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ws.catalog.add_predictions([{"request_id": uuid.uuid4().hex, "name": "parts", "version": row["version"],
                                 "at": now + dt.timedelta(milliseconds=i), "latency_ms": 1.0, **s}
                                for i, s in enumerate(springs)])
    result = monitor(ws, window=60, notify=False)
    assert result["drift"]["embedding"]["current_images"] == 60
    drifted = [c for c in result["drifted_features"] if c.startswith("embedding:pc")]
    assert drifted and any(a["feature"] in drifted for a in result["alerts"])
