"""The profile's image checks: what a table profile cannot see in a column of encoded images.

Each check is one finding (``kind``, severity, count, a message naming the first path, and up to
``LISTED`` paths in ``details``), merged into the version's quality report, so the gate can act on it
(``quality.gate.forbid: [{kind: train_test_near_duplicates}]``, ``fail_on_severity``):

* ``unreadable_files``: files that did not decode at ingest (``data.on_bad_files: skip``), with reasons;
* ``duplicate_images``: byte-identical images (error when copies carry different labels);
* ``near_duplicate_images``: perceptual hashes (pHash, 64 bits) within ``NEAR_BITS`` bits;
* ``train_test_near_duplicates``: an exact or near duplicate on both sides of the frozen split (the test
  score then measures memory, not generalisation);
* ``small_images`` (a side under ``SMALL_SIDE`` px) and ``extreme_aspect`` (wider or taller than
  ``EXTREME_ASPECT``:1);
* ``label_issues``: images whose label looks wrong, by confident learning on out-of-fold probabilities of a
  logistic regression on the frozen backbone's features (at most ``LABEL_ISSUE_ROWS`` images, sampled).

The class balance is the table profile's own ``class_imbalance`` check on the label. Perceptual hashes
are cached per dataset version (``.modelloop/cache/phash-{dataset}.npy``).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ...data.images import IMAGE_COLUMN, PATH_COLUMN, decode_base64, decode_image

__all__ = ["EXTREME_ASPECT", "IMAGE_FINDING_KINDS", "LABEL_ISSUE_ROWS", "LISTED", "NEAR_BITS", "SMALL_SIDE",
           "frozen_features", "image_findings", "perceptual_hashes"]

IMAGE_FINDING_KINDS = ("unreadable_files", "duplicate_images", "near_duplicate_images",
                       "train_test_near_duplicates", "small_images", "extreme_aspect")
NEAR_BITS = 4          # pHash bits that may differ between near duplicates (of 64)
SMALL_SIDE = 32        # px
EXTREME_ASPECT = 3.0   # width/height or height/width
LISTED = 20            # paths listed per finding
_MAX_PAIRS_ROWS = 20_000  # near-duplicate search beyond this many images: on a seeded sample
LABEL_ISSUE_ROWS = 5_000  # label issues beyond this many images: on a seeded sample


def image_findings(ws: Any, row: dict[str, Any], frame: Any, side: Any) -> list[dict[str, Any]]:
    """The image findings of dataset version ``row`` (its Polars ``frame`` and split ``side``)."""
    cols = frame.collect_schema().names()
    if IMAGE_COLUMN not in cols:
        return []
    df = frame.select([c for c in (IMAGE_COLUMN, PATH_COLUMN, "width", "height", ws.config.data.target)
                       if c in cols]).collect().to_pandas()
    paths = df[PATH_COLUMN].astype(str).to_numpy() if PATH_COLUMN in df else np.arange(len(df)).astype(str)
    sides = np.asarray(side.to_numpy()) if side is not None else np.full(len(df), "train")
    labels = df[ws.config.data.target].astype(str).to_numpy() if ws.config.data.target in df else None
    found = _unreadable(row)
    digests = np.array([hashlib.sha256(str(b).encode()).hexdigest() for b in df[IMAGE_COLUMN]])
    hashes = perceptual_hashes(ws, row["id"], df[IMAGE_COLUMN])
    exact = _groups_of(digests)
    found += _duplicates(exact, paths, labels)
    near = _near_pairs(hashes, digests)
    if near:
        found.append(_finding("near_duplicate_images", "warning", len(near),
                              f"{len(near)} pairs of images look alike (pHash within {NEAR_BITS} bits), e.g. "
                              f"{paths[near[0][0]]} and {paths[near[0][1]]}",
                              pairs=[[paths[a], paths[b]] for a, b in near[:LISTED]]))
    cross = [(a, b) for g in exact for a in g for b in g if a < b] + near
    cross = [(a, b) for a, b in cross if {sides[a], sides[b]} == {"train", "test"}]
    if cross:
        found.append(_finding("train_test_near_duplicates", "warning", len(cross),
                              f"{len(cross)} images in the test split have an exact or near duplicate in the train "
                              f"split (the test score then measures memory), e.g. {paths[cross[0][0]]} and "
                              f"{paths[cross[0][1]]}", pairs=[[paths[a], paths[b]] for a, b in cross[:LISTED]]))
    found += _shapes(df, paths)
    if labels is not None:
        found += _label_issues(ws, row["id"], df[IMAGE_COLUMN], labels, paths)
    return found


def _label_issues(ws: Any, dataset_id: str, images: Any, labels: np.ndarray, paths: np.ndarray) -> list[dict]:
    """Images whose label is probably wrong: confident learning (``data.label_issues``) on out-of-fold
    probabilities of a logistic regression on the frozen backbone's features (seeded sample of at most
    ``LABEL_ISSUE_ROWS`` images; features cached per version, backbone and input size)."""
    from ...data.label_issues import confident_learning, out_of_fold_proba

    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2 or np.bincount(y).min() < 5:
        return []
    rows = np.arange(len(y)) if len(y) <= LABEL_ISSUE_ROWS else np.sort(
        np.random.default_rng(0).choice(len(y), LABEL_ISSUE_ROWS, replace=False))
    x = frozen_features(ws, dataset_id, images, rows)
    proba = out_of_fold_proba(x, y[rows], model="logistic", folds=5, seed=ws.config.seed)
    is_issue, suggested, _, _ = confident_learning(y[rows], proba)
    hits = np.flatnonzero(is_issue)
    if not len(hits):
        return []
    n = len(rows)
    margin = proba[hits, suggested[hits]] - proba[hits, y[rows][hits]]
    order = hits[np.argsort(-margin, kind="stable")]
    listed = [{"path": str(paths[rows[i]]), "given": str(classes[y[rows][i]]),
               "suggested": str(classes[suggested[i]]), "confidence": round(float(proba[i, suggested[i]]), 3)}
              for i in order[:LISTED]]
    first = listed[0]
    return [_finding("label_issues", "warning" if len(hits) / n >= 0.01 else "info", len(hits),
                     f"{len(hits)} of {n} images look like another class than their label (out-of-fold, on the "
                     f"frozen backbone's features), e.g. {first['path']}: {first['given']} -> {first['suggested']}",
                     suspects=listed, checked=n)]


def frozen_features(ws: Any, dataset_id: str, images: Any, rows: np.ndarray) -> np.ndarray:
    """Pooled features of the pretrained backbone (as ``model:`` configures it) for ``images[rows]``."""
    from .backbone import backbone_fingerprint, load_network
    from .fit import extract_features
    from .model import ImageModel
    from .stage import image_settings

    s = image_settings(ws.config)
    key = hashlib.sha256(f"{backbone_fingerprint(s.backbone, ws.root)}|{s.image_size}".encode()).hexdigest()[:12]
    path = ws.state / "cache" / f"imgfeat-all-{dataset_id}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            if np.array_equal(z["rows"], rows):
                return z["features"]
    decoder = ImageModel({"image_size": s.image_size})
    decoder.image_size_ = s.image_size
    net = load_network(s.backbone, 2, image_size=s.image_size, root=ws.root)
    pixels = decoder.pixels([images.iloc[int(i)] for i in rows])
    feats = extract_features(net, pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, rows=rows, features=feats)
    os.replace(tmp, path)
    return feats


def _finding(kind: str, severity: str, count: int, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "column": IMAGE_COLUMN, "severity": severity, "count": int(count), "message": message,
            "details": details}


def _unreadable(row: dict[str, Any]) -> list[dict[str, Any]]:
    bad = list((row.get("source") or {}).get("bad_files") or [])
    if not bad:
        return []
    return [_finding("unreadable_files", "warning", len(bad),
                     f"{len(bad)} files could not be read and were left out (data.on_bad_files: skip), e.g. "
                     f"{bad[0]['file']}: {bad[0]['reason']}", files=bad[:LISTED])]


def _groups_of(keys: np.ndarray) -> list[list[int]]:
    by: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by.setdefault(str(k), []).append(i)
    return [g for g in by.values() if len(g) > 1]


def _duplicates(groups: list[list[int]], paths: np.ndarray, labels: np.ndarray | None) -> list[dict[str, Any]]:
    if not groups:
        return []
    conflicting = [g for g in groups if labels is not None and len({labels[i] for i in g}) > 1]
    copies = sum(len(g) - 1 for g in groups)
    first = groups[0]
    note = f"; {len(conflicting)} groups carry different labels" if conflicting else ""
    return [_finding("duplicate_images", "error" if conflicting else "warning", copies,
                     f"{copies} images are byte-identical copies of another, e.g. {paths[first[0]]} and "
                     f"{paths[first[1]]}{note}", groups=[[paths[i] for i in g] for g in groups[:LISTED]],
                     conflicting_labels=[[(paths[i], labels[i]) for i in g] for g in conflicting[:LISTED]]
                     if labels is not None else [])]


def _near_pairs(hashes: np.ndarray, digests: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs (a < b) whose pHashes differ by at most ``NEAR_BITS`` bits, byte-identical pairs left out."""
    n = len(hashes)
    rows = np.arange(n) if n <= _MAX_PAIRS_ROWS else np.sort(np.random.default_rng(0).choice(n, _MAX_PAIRS_ROWS,
                                                                                             replace=False))
    h = hashes[rows]
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(h), 1024):
        block = h[start:start + 1024]
        dist = np.bitwise_count(block[:, None] ^ h[None, :])
        a, b = np.nonzero(dist <= NEAR_BITS)
        for i, j in zip(a + start, b, strict=True):
            if i < j and digests[rows[i]] != digests[rows[j]]:
                pairs.append((int(rows[i]), int(rows[j])))
    return pairs


def _shapes(df: Any, paths: np.ndarray) -> list[dict[str, Any]]:
    if "width" not in df or "height" not in df:
        return []
    w, h = df["width"].to_numpy(float), df["height"].to_numpy(float)
    out = []
    small = np.flatnonzero(np.minimum(w, h) < SMALL_SIDE)
    if len(small):
        i = small[0]
        out.append(_finding("small_images", "info", len(small),
                            f"{len(small)} images have a side under {SMALL_SIDE} px, e.g. {paths[i]} "
                            f"({int(w[i])}x{int(h[i])})", files=[str(paths[i]) for i in small[:LISTED]]))
    ratio = np.maximum(w / np.maximum(h, 1), h / np.maximum(w, 1))
    extreme = np.flatnonzero(ratio > EXTREME_ASPECT)
    if len(extreme):
        i = extreme[0]
        out.append(_finding("extreme_aspect", "warning", len(extreme),
                            f"{len(extreme)} images are more than {EXTREME_ASPECT:g} times as wide as tall (or the "
                            f"reverse) and are squashed to a square for the network, e.g. {paths[i]} "
                            f"({int(w[i])}x{int(h[i])})", files=[str(paths[i]) for i in extreme[:LISTED]]))
    return out


def perceptual_hashes(ws: Any, dataset_id: str, images: Any) -> np.ndarray:
    """pHash (64 bits, as uint64) of each base64 image, cached per dataset version."""
    import imagehash

    path = ws.state / "cache" / f"phash-{dataset_id}.npy"
    if path.is_file():
        cached = np.load(path)
        if len(cached) == len(images):
            return cached
    out = np.empty(len(images), dtype=np.uint64)
    for i, text in enumerate(images):
        bits = imagehash.phash(decode_image(decode_base64(str(text)))).hash.flatten()
        out[i] = np.uint64(int("".join("1" if b else "0" for b in bits), 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out
