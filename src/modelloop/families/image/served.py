"""The images a server was sent, kept by content so that feedback on them can train the next model.

The prediction log holds an image's ``sha256:`` digest and statistics, never its bytes (a log row stays
small and a log reader sees no pixels). The bytes of each served image are written once to
``.modelloop/served_images/<2 hex>/<digest>`` (temp + rename, by the request's worker thread), so that
``modelloop retrain`` can turn ``/v1/feedback`` on a served image into a training row:
:func:`feedback_inputs` replaces each labelled row's digest by the kept bytes (base64, as ingest stores
an image) and leaves out, counted, a row whose image is no longer there.

A client could otherwise fill the disk. :class:`ServedImages` bounds the folder two ways:

* **retention** (``serve.served_images_days``, default 30): an image last served longer ago than that is
  deleted (a sweep at most once an hour, by the file's time; a repeated image has its time refreshed);
* **the cap** ``serve.max_served_images_bytes``: past it the least recently served images are deleted
  first down to 90 % of the cap, so the folder is scanned once per 10 % of the cap written, not per
  image. The cap never deletes an image that a prediction of the retention window still needs for
  feedback (:func:`pending_digests`: no feedback yet, or feedback newer than the model's last retrain
  decision, which has not been merged yet); it reads those from the prediction log at each prune, not
  per request. When such images alone pass the cap, the folder stays above it (a warning says so): the
  retention bounds it then.

Feedback on an image deleted before ``modelloop retrain`` is left out and counted there. Each server
process counts its own writes between scans, so with several workers the folder may pass the cap by up
to (workers - 1) x 10 % of it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pandas as pd

from ...data.images import IMAGE_COLUMN, PATH_COLUMN

__all__ = ["DIGEST_PREFIX", "SERVED_DIR", "ServedImages", "digest_of", "feedback_inputs", "keep_image", "kept_image",
           "pending_digests", "prune_oldest", "served_images"]

log = logging.getLogger("modelloop.serving")

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


def prune_oldest(folder: Path, target_bytes: int, *, keep: Collection[str] = (), older_than: float | None = None) -> int:
    """Delete the kept images served before ``older_than`` (epoch seconds; None: none), then those served
    longest ago until the folder holds at most ``target_bytes``, never one whose digest is in ``keep``;
    the bytes left. Temporary files being written (dot names) are neither counted nor deleted."""
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
    protected = {d.removeprefix(DIGEST_PREFIX) for d in keep}
    for mtime, name, size, path in sorted(files):
        expired = older_than is not None and mtime < older_than * 1e9
        if not expired and (total <= target_bytes or name in protected):
            continue
        path.unlink(missing_ok=True)
        total -= size
    return total


def pending_digests(catalog: Any, name: str, since: dt.datetime) -> set[str]:
    """The images (digests) that predictions of model ``name`` served from ``since`` may still need: those
    without feedback, and those whose feedback came after the model's last retrain decision (not merged
    into a dataset version yet)."""
    import sqlalchemy as sa

    from ...catalog import decisions, feedback, predictions

    q = (sa.select(predictions.c.inputs, feedback.c.at)
         .select_from(predictions.outerjoin(feedback, feedback.c.request_id == predictions.c.request_id))
         .where(predictions.c.name == name, predictions.c.at >= since))
    with catalog.tx() as c:
        merged = c.execute(sa.select(sa.func.max(decisions.c.at)).where(decisions.c.name == name)).scalar()
        rows = c.execute(q).all()
    return {str(inputs.get(IMAGE_COLUMN)) for inputs, at in rows
            if isinstance(inputs, dict) and (at is None or merged is None or at > merged)}


class ServedImages:
    """The served-images folder under its retention and byte cap; thread-safe: the validator runs in worker
    threads. ``pending``: ``since -> digests`` the cap must not delete (:func:`pending_digests` of the
    served model; None: none are protected)."""

    SWEEP_SECONDS = 3600.0  # the retention sweep scans the folder at most this often

    def __init__(self, folder: Path, max_bytes: int, *, days: float | None = None,
                 pending: Callable[[dt.datetime], set[str]] | None = None):
        self.folder, self.max_bytes, self.days, self.pending = folder, max_bytes, days, pending
        self._lock = threading.Lock()
        self._bytes: int | None = None  # what this process knows the folder holds; None: not scanned yet
        self._swept = -math.inf  # when the retention sweep last ran (time.monotonic)

    def keep(self, raw: bytes, digest: str) -> None:
        """Keep ``raw`` (an image larger than the whole cap is not kept), then sweep out what passed the
        retention (at most once an hour) and prune past the cap."""
        if len(raw) > self.max_bytes or not keep_image(self.folder, raw, digest):
            return
        with self._lock:
            now = time.monotonic()
            if self._bytes is None or now - self._swept >= self.SWEEP_SECONDS:
                self._bytes = prune_oldest(self.folder, 1 << 62, older_than=self._cutoff())
                self._swept = now
            else:
                self._bytes += len(raw)
            if self._bytes > self.max_bytes:
                self._bytes = self._prune()

    def _cutoff(self) -> float | None:
        return None if self.days is None else time.time() - self.days * 86400.0

    def _prune(self) -> int:
        since = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=self.days or 0.0)
        keep = self.pending(since) if self.pending is not None and self.days is not None else set()
        left = prune_oldest(self.folder, int(self.max_bytes * PRUNE_TO), keep=keep, older_than=self._cutoff())
        if left > self.max_bytes:
            log.warning("%s holds %d bytes, above serve.max_served_images_bytes (%d): the images predictions of "
                        "the last %s days still need for feedback are kept", self.folder, left, self.max_bytes,
                        self.days)
        return left


def served_images(ws: Any, row: dict[str, Any]) -> ServedImages:
    """Where the served runtime of model version ``row`` keeps its images, under ``serve:``'s bounds."""
    from ...serving.config import serve_config

    cfg = serve_config(ws.config)
    return ServedImages(ws.state / SERVED_DIR, cfg.max_served_images_bytes, days=cfg.served_images_days,
                        pending=lambda since: pending_digests(ws.catalog, row["name"], since))


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
                       "kept, or deleted under serve.served_images_days or serve.max_served_images_bytes); their "
                       "feedback is not used")
    return out, note
