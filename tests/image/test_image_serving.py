"""An image model behind a real server on 127.0.0.1: its own training images answered as offline, limits."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from servers import running

from modelloop.data.ingest import load_dataset
from modelloop.families import family_of
from modelloop.project import Project
from modelloop.serving import create_app
from modelloop.serving.config import ServeConfig


@pytest.fixture(scope="module")
def served(trained_parts: Path):
    project = Project.load(trained_parts / "modelloop.yaml")
    cfg = ServeConfig(max_records=8, max_body_bytes=5_000_000, reload_poll_seconds=0)
    with running(create_app(project.workspace, config=cfg)) as url:
        yield project, url


def test_own_training_images_are_answered_as_offline(served):
    project, url = served
    ws = project.workspace
    _, df, _ = load_dataset(ws)
    rows = df.head(6)
    row = ws.catalog.get_model("parts", ws.catalog.get_alias("parts", "production"))  # what the server serves
    model = family_of(row).load(ws, row)
    offline = model.predict_proba(rows)
    # the files as a client uploads them (the bytes ingest read), and the same bytes base64 in JSON
    files = [("file", (Path(p).name, base64.b64decode(b))) for p, b in zip(rows["path"], rows["image"], strict=True)]
    uploaded = httpx.post(f"{url}/v1/predict/image", files=files, timeout=60)
    posted = httpx.post(f"{url}/v1/predict", json={"records": [{"image": b} for b in rows["image"]]}, timeout=60)
    for answer in (uploaded, posted):
        assert answer.status_code == 200, answer.text
        preds = answer.json()["predictions"]
        served_p = np.array([[p["probabilities"][str(c)] for c in model.classes_] for p in preds])
        np.testing.assert_allclose(served_p, offline, atol=1e-5)
        assert [p["label"] for p in preds] == list(np.asarray(model.classes_)[offline.argmax(1)])
    # the uploads are counted under their own route in /metrics (they were 'other')
    metrics = httpx.get(f"{url}/metrics", timeout=60).text
    assert 'modelloop_requests_total{endpoint="/v1/predict/image",status="200"}' in metrics


def test_the_log_keeps_digests_and_statistics_not_the_bytes(served):
    project, url = served
    _, df, _ = load_dataset(project.workspace)
    answer = httpx.post(f"{url}/v1/predict", json={"records": [{"image": df["image"][0]}]}, timeout=60)
    rid = answer.json()["request_id"]
    for _ in range(50):
        row = project.workspace.catalog.get_prediction(rid)
        if row is not None:
            break
        time.sleep(0.1)
    assert row is not None
    assert row["inputs"]["image"].startswith("sha256:") and len(row["inputs"]["image"]) == 71
    assert row["inputs"]["width"] == pytest.approx(df["width"][0])
    assert row["inputs"]["brightness"] == pytest.approx(df["brightness"][0])


def test_bad_uploads_get_4xx_naming_the_file(served):
    _, url = served
    big = io.BytesIO()
    Image.new("L", (8000, 8000)).save(big, "PNG")  # 64 M pixels in ~60 KB: a decompression bomb
    bomb = httpx.post(f"{url}/v1/predict/image", files=[("file", ("bomb.png", big.getvalue()))], timeout=60)
    assert bomb.status_code == 413 and "bomb.png" in bomb.text
    text = httpx.post(f"{url}/v1/predict/image", files=[("file", ("notes.txt", b"hello"))], timeout=60)
    assert text.status_code == 415 and "notes.txt" in text.text
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(jpeg, "JPEG")
    cut = httpx.post(f"{url}/v1/predict/image", files=[("f", ("cut.jpg", jpeg.getvalue()[:150]))], timeout=60)
    assert cut.status_code == 415 and "cut.jpg" in cut.text
    many = httpx.post(f"{url}/v1/predict/image", files=[("f", (f"{i}.jpg", jpeg.getvalue())) for i in range(9)],
                      timeout=60)
    assert many.status_code == 413 and "serve.max_records" in many.text
    plain = httpx.post(f"{url}/v1/predict/image", content=jpeg.getvalue(), headers={"content-type": "image/jpeg"},
                       timeout=60)
    assert plain.status_code == 415 and "multipart/form-data" in plain.text
    garbage = httpx.post(f"{url}/v1/predict", json={"records": [{"image": "bm90IGFuIGltYWdl"}]}, timeout=60)
    assert garbage.status_code == 422 and "records[0].image" in garbage.text
    bomb64 = httpx.post(f"{url}/v1/predict", json={"records": [{"image": base64.b64encode(big.getvalue()).decode()}]},
                        timeout=60)
    assert bomb64.status_code == 413 and "records[0].image" in bomb64.text
