"""The images a server was sent, kept by content so that feedback on them can train the next model.

The prediction log holds an image's ``sha256:`` digest and statistics, never its bytes (a log row stays
small and a log reader sees no pixels). The bytes of each served image are written once to
``.modelloop/served_images/<2 hex>/<digest>`` (temp + rename, by the request's worker thread), so that
``modelloop retrain`` can turn ``/v1/feedback`` on a served image into a training row:
:func:`feedback_inputs` replaces each labelled row's digest by the kept bytes (base64, as ingest stores
an image) and leaves out, counted, a row whose image is no longer there.

Nothing prunes the folder yet: it grows with the distinct images served (see docs/design.md).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ...data.images import IMAGE_COLUMN, PATH_COLUMN

__all__ = ["DIGEST_PREFIX", "SERVED_DIR", "digest_of", "feedback_inputs", "keep_image", "kept_image"]

SERVED_DIR = "served_images"
DIGEST_PREFIX = "sha256:"


def digest_of(raw: bytes) -> str:
    """What the prediction log keeps for an image: ``sha256:<hex of its bytes>``."""
    return DIGEST_PREFIX + hashlib.sha256(raw).hexdigest()


def _file(folder: Path, digest: str) -> Path:
    hexdigest = digest.removeprefix(DIGEST_PREFIX)
    return folder / hexdigest[:2] / hexdigest


def keep_image(folder: Path, raw: bytes, digest: str) -> None:
    """Write ``raw`` under its digest unless it is there already (a repeated image costs one stat)."""
    path = _file(folder, digest)
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(raw)}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def kept_image(folder: Path, digest: str) -> bytes | None:
    """The bytes kept for ``digest`` (checked against it), or None."""
    if not isinstance(digest, str) or not digest.startswith(DIGEST_PREFIX) or len(digest) != 71:
        return None
    path = _file(folder, digest)
    if not path.is_file():
        return None
    raw = path.read_bytes()
    return raw if digest_of(raw) == digest else None


def feedback_inputs(ws: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Labelled log rows with their images' bytes back (base64 in ``image``, ``path`` naming the digest);
    rows whose image was not kept are left out and counted in the returned note."""
    folder = ws.state / SERVED_DIR
    digests = [str(d) for d in frame[IMAGE_COLUMN]] if IMAGE_COLUMN in frame.columns else [""] * len(frame)
    images = [kept_image(folder, d) for d in digests]
    found = [raw is not None for raw in images]
    out = frame[found].copy()
    out[IMAGE_COLUMN] = [base64.b64encode(raw).decode("ascii") for raw in images if raw is not None]
    out[PATH_COLUMN] = [f"{SERVED_DIR}/{d.removeprefix(DIGEST_PREFIX)[:16]}"
                        for d, ok in zip(digests, found, strict=True) if ok]
    missing = len(frame) - len(out)
    note: dict[str, Any] = {"images_found": len(out)}
    if missing:
        note["images_missing"] = missing
        note["why"] = (f"{missing} labelled image(s) are not in {folder} (served before images were kept, or "
                       "removed); their feedback is not used")
    return out, note
