"""Drift of what the network sees: served images' embeddings against the training images'.

Size, aspect, brightness and contrast (the logged statistics) miss a shift that keeps them: another
product line, a new class, a changed colour palette. The monitor also compares the model's
penultimate-layer embeddings (the pooled backbone features its linear layer reads):

1. the reference: the embeddings of up to ``REFERENCE_IMAGES`` training images (seeded sample), cached per
   model version in ``.modelloop/cache/imgemb-<name>-<version>.npz``;
2. the current images: the recent log rows' images, read back by digest from the kept served images
   (``served.py``); rows whose bytes are gone are counted, not compared;
3. PCA fitted on the reference; both sides projected on its first ``COMPONENTS`` components, each compared
   like any numeric feature (``data.shift.compare_distributions``: PSI on reference quantile bins + KS),
   with fewer bins for a small reference (one per 20 images, 2 to 10) and, as the monitor's own
   comparisons, PSI firing only above the noise floor of these sample sizes (``small_samples``). They join the monitor's features as ``embedding:pc1`` ..., so alerts, the
   report and ``retrain.on_drift`` act on them as on any feature.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pandas as pd

from ...data.images import IMAGE_COLUMN
from .served import SERVED_DIR, kept_image

__all__ = ["COMPONENTS", "REFERENCE_IMAGES", "embedding_drift", "embeddings"]

COMPONENTS = 4
REFERENCE_IMAGES = 500
_PREFIX = "embedding:pc"


def embeddings(model: Any, images: list[Any]) -> np.ndarray:
    """(N, D) pooled backbone features of encoded images (bytes or base64), decoded as serving decodes."""
    from .fit import extract_features

    model._rebuild()
    return extract_features(model.network_, model.pixels(images))


def _reference(ws: Any, model_row: dict[str, Any], model: Any, reference: pd.DataFrame) -> np.ndarray:
    rows = reference.sample(n=REFERENCE_IMAGES, random_state=0) if len(reference) > REFERENCE_IMAGES else reference
    images = list(rows[IMAGE_COLUMN])
    key = hashlib.sha256("".join(sorted(hashlib.sha256(str(t).encode()).hexdigest() for t in images)).encode())
    path = ws.state / "cache" / f"imgemb-{model_row['name']}-{model_row['version']}.npz"
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key.hexdigest():
                return np.asarray(z["features"])
    feats = embeddings(model, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, key=np.array(key.hexdigest()), features=feats)
    os.replace(tmp, path)
    return feats


def embedding_drift(ws: Any, model_row: dict[str, Any], reference: pd.DataFrame, recent: list[dict[str, Any]],
                    *, psi_threshold: float, p_threshold: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(features ``embedding:pc<i>`` -> drift entry, ``{"embedding": what was compared}``)."""
    from ...data.shift import compare_distributions
    from ...registry import load_model

    folder = ws.state / SERVED_DIR
    kept = [kept_image(folder, str((r.get("inputs") or {}).get(IMAGE_COLUMN, ""))) for r in recent]
    current = [raw for raw in kept if raw is not None]
    section: dict[str, Any] = {"current_images": len(current), "images_missing": len(kept) - len(current),
                               "reference_images": min(len(reference), REFERENCE_IMAGES), "components": 0}
    if len(current) < 2 or len(reference) < 3 or IMAGE_COLUMN not in reference.columns:
        section["why"] = "fewer than 2 served images kept or 3 training images: embeddings not compared"
        return {}, {"embedding": section}
    model = load_model(ws, model_row)
    ref = _reference(ws, model_row, model, reference)
    cur = embeddings(model, current)
    mean = ref.mean(axis=0)
    _, singular, axes = np.linalg.svd(ref - mean, full_matrices=False)
    k = int(min(COMPONENTS, len(ref) - 1, axes.shape[0]))
    variance = singular ** 2
    names = [f"{_PREFIX}{i + 1}" for i in range(k)]
    kinds = dict.fromkeys(names, "numeric")
    bins = int(np.clip(len(ref) // 20, 2, 10))
    features = compare_distributions(pd.DataFrame((ref - mean) @ axes[:k].T, columns=names),
                                     pd.DataFrame((cur - mean) @ axes[:k].T, columns=names), kinds, bins=bins,
                                     psi_threshold=psi_threshold, p_threshold=p_threshold, small_samples=True)
    section.update(components=k, bins=bins, dimensions=int(ref.shape[1]),
                   explained_variance=[round(float(v / max(variance.sum(), 1e-12)), 4) for v in variance[:k]])
    return features, {"embedding": section}
