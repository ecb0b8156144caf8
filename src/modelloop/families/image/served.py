"""The images a server was sent, kept by content so that feedback on them can train the next model.

The prediction log holds an image's ``sha256:`` digest and statistics, never its bytes (a log row stays
small and a log reader sees no pixels). The bytes of each served image are written once to
``.modelloop/served_images/<2 hex>/<digest>`` (temp + rename, by the request's worker thread), so that
``modelloop retrain`` can turn ``/v1/feedback`` on a served image into a training row:
:func:`feedback_inputs` replaces each labelled row's digest by the kept bytes (base64, as ingest stores
an image) and leaves out, counted, a row whose image is no longer there.

A client could otherwise fill the disk: :class:`ServedImages` caps the folder at
``serve.max_served_images_bytes``. Past the cap it deletes the least recently served images first (a
repeated image has its time refreshed) down to 90 % of the cap, so the folder is scanned once per 10 % of
the cap written, not per image. Whether an image's feedback is still unmerged is not consulted (that
would mean reading the logs on the request path): feedback on an image pruned before ``modelloop retrain``
is left out and counted there. Each server process counts its own writes between scans, so with several
workers the folder may pass the cap by up to (workers - 1) x 10 % of it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from ...data.images import IMAGE_COLUMN, PATH_COLUMN

__all__ = ["DIGEST_PREFIX", "SERVED_DIR", "ServedImages", "digest_of", "feedback_inputs", "keep_image", "kept_image",
           "prune_oldest"]

SERVED_DIR = "served_images"
DIGEST_PREFIX = "sha256:"
PRUNE_TO = 0.9  # past the cap, prune to this share of it: one folder scan per 10 % of the cap written


def digest_of(raw: bytes) -> str:
    """What the prediction log keeps for an image: ``sha256:<hex of its bytes>``."""
    return DIGEST_PREFIX + hashlib.sha256(raw).hexdigest()


def _file(folder: Path, digest: str) -> Path:
    hexdigest = digest.removeprefix(DIGEST_PREFIX)
    return folder / hexdigest[:2] / hexdigest


def keep_image(folder: Path, raw: bytes, digest: str) -> bool:
    """Write ``raw`` under its digest unless it is there already (a repeated image costs one stat and has
    its time refreshed: pruning goes by when an image was last served). True when it was written."""
    path = _file(folder, digest)
    if path.is_file():
        try:
            os.utime(path)
        except OSError:  # pruned by another worker meanwhile: nothing to refresh
            pass
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(raw)}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return True


def prune_oldest(folder: Path, target_bytes: int) -> int:
    """Delete the kept images served longest ago until the folder holds at most ``target_bytes``; the
    bytes left. Temporary files being written (dot names) are neither counted nor deleted."""
    files = []
    for path in folder.glob("*/*"):
        if path.name.startswith("."):
            continue
        try:
            st = path.stat()
        except OSError:  # deleted by another worker meanwhile
            continue
        files.append((st.st_mtime_ns, path.name, st.st_size, path))
    total = sum(f[2] for f in files)
    for _, _, size, path in sorted(files):
        if total <= target_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
    return total


class ServedImages:
    """The served-images folder under a byte cap (``serve.max_served_images_bytes``); thread-safe: the
    validator runs in worker threads."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self._lock = threading.Lock()
        self._bytes: int | None = None  # what this process knows the folder holds; None: not scanned yet

    def keep(self, raw: bytes, digest: str) -> None:
        """Keep ``raw`` (an image larger than the whole cap is not kept), pruning past the cap."""
        if len(raw) > self.max_bytes or not keep_image(self.folder, raw, digest):
            return
        with self._lock:
            self._bytes = (self._bytes + len(raw)) if self._bytes is not None else prune_oldest(self.folder, 1 << 62)
            if self._bytes > self.max_bytes:
                self._bytes = prune_oldest(self.folder, int(self.max_bytes * PRUNE_TO))


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
        note["why"] = (f"{missing} labelled image(s) are no longer kept in {folder} (served before images were "
                       "kept, or pruned under serve.max_served_images_bytes); their feedback is not used")
    return out, note
