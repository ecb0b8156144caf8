"""Interactions that come back from production (``POST /v1/interactions``): an append-only log, durable
before the server answers.

Each interaction is one JSON line (user, item, event, value, the request id that served it, the model
version and when) appended with one ``write`` to ``<workspace>/interactions/interactions.jsonl`` and
``fsync``-ed: a 2xx means the line is on disk, whatever happens to the process next. One ``O_APPEND``
write per line keeps lines whole when several server workers append at once. ``modelloop retrain``
reads them (a torn last line of a crash is skipped and counted).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["append_interaction", "interaction_id", "interactions_path", "read_interactions_log"]

_LOCK = threading.Lock()


def interaction_id(record: dict[str, Any]) -> str:
    """The stable id of a stored interaction (its row's ``_request_id`` in a merged dataset version): a
    retrain adds it once, and the gate finds the answer it followed (``feedback/exposure.py``)."""
    key = json.dumps([record.get(k) for k in ("at", "user", "item", "event", "value", "request_id")], default=str)
    return "ix:" + hashlib.sha256(key.encode()).hexdigest()[:24]


def interactions_path(ws: Any) -> Path:
    return Path(ws.datasets_dir).parent / "interactions" / "interactions.jsonl"


def append_interaction(ws: Any, record: dict[str, Any]) -> None:
    """Append ``record`` as one line and fsync it before returning."""
    path = interactions_path(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
    with _LOCK:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_interactions_log(ws: Any) -> tuple[list[dict[str, Any]], int]:
    """Every stored interaction, and how many lines were torn (a crash mid-write) and skipped."""
    path = interactions_path(ws)
    if not path.exists():
        return [], 0
    out, torn = [], 0
    for line in path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            torn += 1
    return out, torn
