"""Trace one prediction back through the loop: request -> model version -> run -> dataset version, and
forward to the feedback that came back for it and the dataset versions that merged feedback since.

Why a module of its own: the browser's Trace page and ``modelloop trace --json`` are the same call
(``Project.trace``), so the page and the CLI never disagree.
"""

from __future__ import annotations

from typing import Any

from .errors import NotFoundError
from .workspace import Workspace

__all__ = ["trace_request"]


def _iso(value: Any) -> Any:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else value


def trace_request(ws: Workspace, request_id: str) -> dict[str, Any]:
    """Everything the catalog knows about one logged request id (NotFoundError when it was never logged)."""
    cat = ws.catalog
    pred = cat.get_prediction(request_id)
    if pred is None:
        raise NotFoundError(f"request id '{request_id}' is not in the prediction log; ids come from the "
                            "X-Request-ID header or the request_id field of /v1/predict answers")
    model = cat.get_model(pred["name"], pred["version"])
    run = next((r for r in cat.list_runs(ws.config.name) if r["id"] == model["run_id"]), None)
    dataset = cat.get_dataset(model["dataset_id"])
    fb = cat.get_feedback(request_id)
    later = [d for d in cat.list_datasets(dataset["project"])
             if d["step"] == "feedback-merge" and fb is not None and d["created_at"] >= fb["at"]]
    return {
        "request_id": request_id,
        "prediction": {"at": _iso(pred["at"]), "inputs": pred["inputs"], "output": pred["output"],
                       "latency_ms": pred["latency_ms"]},
        "model": {"name": model["name"], "version": model["version"], "family": model.get("family"),
                  "metrics": model["metrics"]},
        "run": None if run is None else {"id": run["id"], "kind": run["kind"], "metrics": run["metrics"],
                                         "started_at": _iso(run["started_at"])},
        "dataset": {"id": dataset["id"], "version": dataset["seq"], "step": dataset["step"],
                    "rows": dataset["rows"], "parents": dataset["parents"]},
        "feedback": None if fb is None else {"label": fb["label"], "at": _iso(fb["at"]), "source": fb["source"]},
        "later_datasets": [{"id": d["id"], "version": d["seq"]} for d in later],
    }
