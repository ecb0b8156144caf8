"""Labels that come back from production: bulk import, validation, and the labeled-prediction table.

A label is accepted only for a request id the server issued, at most once per request, and only
when it is a value the model can learn from (one of its classes, or a number for regression).
Everything else is counted, never silently dropped or stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..data.sources import read_table
from ..errors import DataError
from ..workspace import Workspace

__all__ = ["check_label", "import_feedback", "labeled_frame", "nothing_usable"]


def check_label(label: Any, info: dict[str, Any]) -> Any:
    """The label as the model knows it (its head's rule), or a DataError saying what is allowed."""
    from ..families.heads import head_for

    return head_for(info).check_label(label)


def import_feedback(ws: Workspace, path: str | Path) -> dict[str, Any]:
    """Import ``request_id,label`` rows; counts of accepted, unknown_request, duplicate, invalid, and with
    an invalid label ``invalid_why``: what the model's head said of the first (``label: must be a verdict,
    confirmed or false_alarm, got 'fraud'``), the rule of this model rather than of every model."""
    df, _ = read_table(str(path), root=Path.cwd())
    missing = [c for c in ("request_id", "label") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; a feedback file has "
                        f"columns request_id,label")
    cat = ws.catalog
    ids = df["request_id"].astype(str).str.strip().tolist()
    known = cat.known_requests(ids)
    already = cat.has_feedback(ids)
    versions: dict[int, dict] = {}
    counts = {"accepted": 0, "unknown_request": 0, "duplicate": 0, "invalid": 0}
    examples: dict[str, list[str]] = {k: [] for k in counts}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    why: str | None = None
    for rid, label in zip(ids, df["label"].tolist(), strict=True):
        kind = _classify(ws, rid, label, known, already | seen, versions)
        if isinstance(kind, tuple) and kind[0] == "invalid":
            why = why or str(kind[1])
            kind = "invalid"
        elif isinstance(kind, tuple):
            rows.append({"request_id": rid, "label": kind[1], "source": "file"})
            seen.add(rid)
            kind = "accepted"
        counts[kind] += 1
        if len(examples[kind]) < 3 and kind != "accepted":
            examples[kind].append(rid)
    cat.add_feedback_many(rows)
    return {**counts, "rows": len(df), "examples": {k: v for k, v in examples.items() if v},
            **({"invalid_why": why} if why else {})}


def nothing_usable(counts: dict[str, Any]) -> str | None:
    """Why a feedback file gave nothing, when none of its rows was accepted or already there (a
    re-import is not a mistake); ``None`` when something was usable."""
    if not counts.get("rows") or counts["accepted"] or counts["duplicate"]:
        return None
    seen = counts.get("examples") or {}
    parts = [f"{counts[k]} {what} (e.g. {', '.join(map(repr, seen.get(k, [])))})"
             for k, what in (("unknown_request", "unknown request ids"), ("invalid", "invalid labels"))
             if counts[k]]
    label = counts.get("invalid_why") or "a label is one of the model's classes (or a number for regression)"
    return (f"none of the {counts['rows']} feedback rows was accepted: {'; '.join(parts)}. A request id is "
            f"the request_id of a prediction /v1/predict returned; {label}")


def _classify(ws: Workspace, rid: str, label: Any, known: set[str], taken: set[str],
              versions: dict[int, dict]) -> str | tuple[str, Any]:
    if rid not in known:
        return "unknown_request"
    if rid in taken:
        return "duplicate"
    pred = ws.catalog.get_prediction(rid)
    assert pred is not None  # rid is in ``known``
    v = pred["version"]
    if v not in versions:
        versions[v] = ws.catalog.get_model(pred["name"], v)["info"]
    try:
        return ("ok", check_label(label, versions[v]))
    except DataError as exc:
        return ("invalid", str(exc))


def labeled_frame(ws: Workspace, since: Any = None) -> pd.DataFrame:
    """Labeled predictions as a table: the inputs, the target column, request id, version, times."""
    from ..families import label_column

    target = label_column(ws.config)
    rows = ws.catalog.labeled_predictions(ws.config.name, since=since)
    records = [{**r["inputs"], target: r["label"], "_request_id": r["request_id"], "_version": r["version"],
                "_predicted_at": r["at"], "_feedback_at": r["feedback_at"],
                "_prediction": (r["output"] or {}).get("label")} for r in rows]
    return pd.DataFrame.from_records(records)
