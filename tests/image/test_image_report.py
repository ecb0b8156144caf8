"""The image model's evaluation page: standard figures plus the misclassified images, labels escaped."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from modelloop.families.image.report import misclassified_gallery
from modelloop.project import Project


def _b64(color) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_gallery_shows_the_misclassified_images_most_confident_first_with_escaped_labels():
    df = pd.DataFrame({"image": [_b64((255, 0, 0)), _b64((0, 255, 0)), _b64((0, 0, 255))],
                       "path": ["a/<1>.png", "b/2.png", "c/3.png"]})
    y = np.array([0, 1, 1])
    proba = np.array([[0.2, 0.8], [0.1, 0.9], [0.95, 0.05]])  # rows 0 and 2 are wrong; row 2 more confidently
    page = misclassified_gallery(df, y, proba, ["<script>alert(1)</script>", "ok"])
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a/&lt;1&gt;.png" in page
    assert page.count("<figure") == 2 and page.index("c/3.png") < page.index("a/&lt;1&gt;.png")
    thumb = re.search(r'src="data:image/jpeg;base64,([^"]+)"', page).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(thumb))).format == "JPEG"
    assert "classified correctly" in misclassified_gallery(df, proba.argmax(1), proba, ["x", "ok"])


def test_the_registered_report_has_the_standard_charts_and_the_gallery(trained_parts: Path):
    ws = Project.load(trained_parts / "modelloop.yaml").workspace
    row = ws.catalog.get_model("parts", 1)
    page = Path(row["info"]["report"]).read_text()
    assert "Misclassified test images" in page
    assert "Confusion matrix" in page and "ROC curve" in page  # the head's charts are still drawn
    assert "<script" not in page  # self-contained, no script
