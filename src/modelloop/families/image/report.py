"""The image model's evaluation page: the standard page (figures, per-class table, confusion matrix,
calibration) plus a gallery of the misclassified test images as embedded thumbnails.

Thumbnails are JPEG data URIs (the page stays one self-contained file that loads nothing); labels and
paths are HTML-escaped, so a class named ``<script>`` is text on the page.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
import pandas as pd

from ...data.images import IMAGE_COLUMN, PATH_COLUMN, decode_base64, decode_image

__all__ = ["GALLERY_MAX", "misclassified_gallery", "render_image_report", "thumbnail_src"]

GALLERY_MAX = 48  # misclassified images shown, most confidently wrong first
_THUMB = 112


def render_image_report(model: Any, df: pd.DataFrame, evaluation: dict[str, Any], *, title: str,
                        context: dict[str, Any] | None) -> str:
    """The page for ``model`` on labelled rows ``df`` (its test split, or a file given to evaluate)."""
    from ...evaluation.evaluate import label_indices, render_report

    target = model.target
    rows = df[df[target].notna()].reset_index(drop=True)
    y = label_indices(model, rows[target], target)
    proba = model.predict_proba(rows)
    page = render_report(evaluation, title=title, task=model.task, classes=list(model.classes_), y_true=y,
                         output=proba, threshold=None, importances=None,
                         context={**(context or {}), "rows": len(rows)})
    gallery = misclassified_gallery(rows, y, proba, list(model.classes_))
    return page.replace("\n</main>", f"\n{gallery}\n</main>", 1)


def misclassified_gallery(df: pd.DataFrame, y: np.ndarray, proba: np.ndarray, classes: list[Any]) -> str:
    """An HTML section of thumbnails of the rows whose argmax is not their label."""
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:GALLERY_MAX]
    head = (f'<h2 class="section">Misclassified test images ({len(wrong)} of {len(y)}'
            f'{f", the {len(order)} most confident shown" if len(wrong) > len(order) else ""})</h2>')
    if not len(order):
        return head + '\n<p class="note">Every test image was classified correctly.</p>'
    cards = []
    for i in order:
        src = thumbnail_src(df[IMAGE_COLUMN].iloc[i])
        where = html.escape(str(df[PATH_COLUMN].iloc[i])) if PATH_COLUMN in df else ""
        true, guess = html.escape(str(classes[int(y[i])])), html.escape(str(classes[int(pred[i])]))
        cards.append(f'<figure class="thumb"><img src="{src}" alt="{where}" width="{_THUMB}">'
                     f'<figcaption>true <b>{true}</b><br>predicted <b>{guess}</b> '
                     f'({proba[i, pred[i]]:.2f})<br><small>{where}</small></figcaption></figure>')
    style = ('<style>.gallery{display:flex;flex-wrap:wrap;gap:10px}.thumb{margin:0;width:' f'{_THUMB + 8}px;'
             'font-size:11px;word-break:break-all}.thumb img{display:block;border:1px solid #ccc}</style>')
    return f'{head}\n{style}\n<div class="gallery">{"".join(cards)}</div>'


def thumbnail_src(image: Any) -> str:
    """A ``data:`` URL of a small JPEG of a base64 image (for an ``<img src>`` of a self-contained page)."""
    img = decode_image(decode_base64(str(image)))
    img.thumbnail((_THUMB, _THUMB))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
