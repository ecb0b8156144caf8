"""Anomaly detection on images: the image family's frozen backbone features as the detectors' columns.

With ``anomaly.backbone`` set (``efficientnet-lite0``, or a transformers image model as ``model.backbone``
of an image project takes it), ``data.source`` is a folder of images (:func:`read_anomaly_images`): every
image below it, in any format the image family decodes; with ``data.target`` the name of an image's
top sub-folder is its label (``good/``, ``defect/``), and an image directly in the folder has none.

:class:`ImageEncoder` stands where :class:`~.features.TableEncoder` stands for a table, with the same
methods. An image is decoded and resized as the image family's server does (``data.images``), and its
pooled features come from the image family's network (``backbone.load_network``,
``fit.extract_features``: the same weights and preprocessing as an image classifier on that backbone),
one image per forward pass. The detectors read those features scaled to unit length (cosine geometry:
on the images example's shapes at 32-64 px, kNN on unit-length features ranked an unseen shape above
the training one at ROC-AUC 0.70-1.00, on the raw or per-column standardised features 0.48-0.95 and on
their top 16 principal components 0.35-0.67, as the background colours dominate those). Left out of
the config, the detectors are kNN and LOF (``DEFAULT_DETECTORS``). A flagged image's reasons are
``embedding`` (how far its features turn from the training images' mean direction, as a robust z-score)
and its statistics that vary in the training images (brightness, contrast, width, height, aspect; their
deviations are a ``TableEncoder``'s). Served records arrive decoded (the image family's request
validator keeps each image's digest and statistics, and its pixels beside them): their pixels are used
as they are.

The network is never pickled: it is rebuilt from the installed weights on first use after loading
(the fingerprint of a transformers folder is checked then, so changed weights are refused, not used).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.images import (
    IMAGE_COLUMN,
    PATH_COLUMN,
    STAT_COLUMNS,
    BadImage,
    decode_image,
    image_kinds,
    image_stats,
    resize,
    visible_files,
)
from ...data.schema import Schema
from ...errors import DataError, cap_list
from .features import TableEncoder

__all__ = ["DEFAULT_DETECTORS", "EMBEDDING", "ImageEncoder", "read_anomaly_images"]

EMBEDDING = "embedding"  # the reason naming the image's content (its features) rather than a statistic
# left out of the config, the detectors for images: distance-based ones on the unit-length features (kNN
# found drawn shapes unlike the training ones at ROC-AUC 0.70-1.00 at 32-64 px; per-column tails and
# Isolation Forest over 1,280 feature columns 0.31-0.85)
DEFAULT_DETECTORS = ("knn", "lof")


def read_anomaly_images(cfg: Any) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str]]:
    """``data.source`` (a folder of images) as the image table ingest stores: ``image`` (base64 bytes),
    ``path``, the label (with ``data.target``: the top sub-folder's name, none for a loose image) and the
    statistics. A file that does not decode follows ``data.on_bad_files``."""
    d = cfg.data
    path = Path(str(d.source))
    path = path if path.is_absolute() else Path(cfg.root) / path
    if not path.is_dir():
        raise DataError(
            f"data.source: {path} is not a folder; with anomaly.backbone, data.source is a folder of "
            "images (sub-folders name the labels when data.target is set)"
        )
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []
    for f in visible_files(path):
        rel = f.relative_to(path)
        try:
            raw = f.read_bytes()
            img = decode_image(raw)
        except (BadImage, OSError) as exc:
            bad.append({"file": str(rel), "reason": str(exc)})
            continue
        row = {IMAGE_COLUMN: base64.b64encode(raw).decode("ascii"), PATH_COLUMN: str(rel), **image_stats(img)}
        if d.target:
            row[d.target] = rel.parts[0] if len(rel.parts) > 1 else None
        rows.append(row)
    if bad and d.on_bad_files != "skip":
        more = f" ({len(bad)} bad files: {cap_list(b['file'] for b in bad)})" if len(bad) > 1 else ""
        raise DataError(
            f"{bad[0]['file']}: {bad[0]['reason']}; fix or remove it, or set data.on_bad_files: skip "
            f"to leave bad files out{more}"
        )
    if not rows:
        raise DataError(f"data.source: {path} holds no readable image ({len(bad)} bad files)")
    columns = [IMAGE_COLUMN, PATH_COLUMN, *([d.target] if d.target else []), *STAT_COLUMNS]
    df = pd.DataFrame(rows, columns=columns)
    report = {
        "source": str(path),
        "format": "images",
        "files": len(df),
        "bad_files": bad,
        "skipped_files": bad,
    }
    return df, report, image_kinds()


# The unit-length features of the images measured last (by backbone, size and the resized pixels' digest):
# training measures its images for the fit, the search, the evaluation and its report, each once.
_SEEN: OrderedDict[tuple[str, int, str], np.ndarray] = OrderedDict()
_SEEN_MAX = 4096  # float32 x 1,280 features: about 20 MB
_SEEN_LOCK = threading.Lock()


def _remember(key: tuple[str, int, str], unit: np.ndarray) -> np.ndarray:
    """Keep ``unit`` (as float32: what every later look-up reads) and return what was kept."""
    kept = unit.astype(np.float32)
    with _SEEN_LOCK:
        _SEEN[key] = kept
        while len(_SEEN) > _SEEN_MAX:
            _SEEN.popitem(last=False)
    return kept


class ImageEncoder:
    """Fitted on training images; ``encode`` gives the detectors' matrix, ``deviations`` the reasons
    (the :class:`~.features.TableEncoder` interface, over the derived table described in the module)."""

    window_part_: str | None = None  # no time window over images

    def __init__(
        self, schema: Schema, backbone: str, image_size: int, *, root: Path | None = None, seed: int = 0
    ):
        self.schema, self.backbone, self.image_size = schema, backbone, int(image_size)
        self.root, self.seed = (str(root) if root is not None else None), seed
        self._net: Any = None

    # ---- the network (rebuilt, never pickled) -------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_net"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._net = None

    def _network(self) -> Any:
        from ..image.backbone import backbone_fingerprint, load_network

        if self._net is None:
            root = Path(self.root) if self.root else None
            found = backbone_fingerprint(self.backbone, root)
            if getattr(self, "fingerprint_", found) != found:
                raise DataError(
                    f"anomaly.backbone: the weights of '{self.backbone}' changed since this model was "
                    f"trained ({self.fingerprint_} -> {found}); retrain it (`modelloop run`)"
                )
            self._net = load_network(self.backbone, 2, image_size=self.image_size, root=root, seed=self.seed)
        return self._net

    def embeddings(self, pixels: np.ndarray) -> np.ndarray:
        """(N, D) pooled backbone features of uint8 (N, S, S, 3) images, each image alone: PyTorch's answer
        for an image depends on its batch in the last digits, and a served image (alone or in any batch)
        must score as the same image does offline."""
        from ..image.fit import extract_features

        net = self._network()
        if not len(pixels):
            return np.zeros((0, int(net.dim)))
        return np.concatenate([extract_features(net, pixels[i : i + 1]) for i in range(len(pixels))]).astype(
            np.float64
        )

    # ---- what the detectors read --------------------------------------------------------------------
    def _measure(self, df: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        """Each image's unit-length features and its statistics. An item of the image column is base64
        bytes (a table row: decoded and measured here) or the resized pixels of a served record, whose
        statistics the request validator measured on the same decoded image."""
        pixels, stats, keys = [], [], []
        for i, item in enumerate(df[IMAGE_COLUMN]):
            if isinstance(item, np.ndarray):
                pixels.append(item)
                stats.append({c: df[c].iloc[i] for c in STAT_COLUMNS if c in df.columns})
            else:
                img = decode_image(base64.b64decode(str(item)))
                pixels.append(resize(img, self.image_size))
                stats.append(image_stats(img))
            keys.append(hashlib.sha256(np.ascontiguousarray(pixels[-1]).tobytes()).hexdigest())
        with _SEEN_LOCK:
            found = {k: _SEEN[self._key(k)] for k in keys if self._key(k) in _SEEN}
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            feats = self.embeddings(np.stack([pixels[i] for i in todo]))
            for i, f in zip(
                todo, feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12), strict=True
            ):
                found[keys[i]] = _remember(self._key(keys[i]), f)
        unit = np.stack([found[k] for k in keys]).astype(np.float64) if keys else np.zeros((0, 0))
        measured = pd.DataFrame(stats, index=df.index, columns=list(STAT_COLUMNS))
        return unit, measured.apply(pd.to_numeric, errors="coerce")

    def _key(self, pixels_digest: str) -> tuple[str, int, str]:
        return getattr(self, "fingerprint_", self.backbone), self.image_size, pixels_digest

    def _away(self, unit: np.ndarray) -> np.ndarray:
        """How far each image's features turn from the training images' mean direction (1 - cosine)."""
        return 1.0 - unit @ self.direction_

    def fit(self, df: pd.DataFrame) -> ImageEncoder:
        from ..image.backbone import backbone_fingerprint

        if len(df) < 3:
            raise DataError(
                f"data.source: {len(df)} training image(s); anomaly detection on images needs at least 3"
            )
        self.fingerprint_ = backbone_fingerprint(self.backbone, Path(self.root) if self.root else None)
        unit, stats = self._measure(df)
        mean = unit.mean(axis=0)
        self.direction_ = mean / max(float(np.linalg.norm(mean)), 1e-12)
        away = self._away(unit)
        q1, med, q3 = np.percentile(away, [25, 50, 75])
        self.away_ = (float(med), float((q3 - q1) / 1.349 or np.std(away) or 1.0))
        try:  # the statistics that vary (a set of one size has no width to explain with)
            self.stats_: TableEncoder | None = TableEncoder(
                Schema(columns=dict.fromkeys(STAT_COLUMNS, "numeric"))
            ).fit(stats)
        except DataError:
            self.stats_ = None
        return self

    # ---- the TableEncoder interface -----------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return [EMBEDDING, *(self.stats_.columns if self.stats_ is not None else [])]

    @property
    def dropped(self) -> dict[str, str]:
        kept = self.stats_.columns if self.stats_ is not None else []
        return {c: "a single value in the training images" for c in STAT_COLUMNS if c not in kept}

    def encode(self, df: pd.DataFrame, history: Any = None) -> np.ndarray:
        """The detectors' matrix: each image's unit-length backbone features ``(n, D)``."""
        return self._measure(df)[0]

    def encode_with_deviations(self, df: pd.DataFrame, history: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The matrix and ``(n, len(columns))`` deviations: the features' turn away from the training
        images (a robust z-score), then each statistic's (``TableEncoder``'s own)."""
        unit, stats = self._measure(df)
        med, scale = self.away_
        parts = [np.abs(self._away(unit) - med) / scale]
        if self.stats_ is not None:
            parts.append(self.stats_.encode_with_deviations(stats)[1])
        return unit, np.column_stack(parts)

    def describe(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "dropped": self.dropped,
            "images": {"backbone": self.backbone, "image_size": self.image_size},
        }
