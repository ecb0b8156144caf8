"""Runs the stages in order and reports the lineage of a project."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .registry import PRODUCTION
from .workspace import Workspace

if TYPE_CHECKING:
    from .project import Project

__all__ = ["project_status", "run_pipeline"]


def run_pipeline(project: Project, *, budget: float | None = None, trials: int | None = None,
                 on_stage: Callable[[str], None] | None = None,
                 progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """ingest -> train (search, test evaluation, registration); each stage's result in one dict."""
    note = on_stage or (lambda _s: None)
    note("ingest")
    dataset = project.ingest()
    cleaned = None
    if project.config.clean.rules:
        note("clean")
        cleaned = project.clean(dataset=dataset["id"])
        dataset = cleaned
    note("profile")
    quality = project.profile(dataset=dataset["id"])
    gate = quality["gate"]
    if not gate["passed"]:
        from .data.quality import QualityReport

        QualityReport.from_dict(quality).raise_for_gate()
    note("train")
    trained = project.train(budget=budget, trials=trials, progress=progress, dataset=dataset["id"])
    return {"dataset": _dataset_brief(dataset), **{k: v for k, v in trained.items() if k != "dataset"},
            "quality": {"scores": quality["scores"], "gate": gate, "report": quality.get("report")},
            "clean": None if cleaned is None else {"created": cleaned["created"], "changes": cleaned["changes"]}}


def _dataset_brief(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "version": row["seq"], "rows": row["rows"], "step": row["step"],
            "created": bool(row.get("created", False))}


def _metric(ws: Workspace) -> str | None:
    """``train.metric``, or the task's default once the task is known; None before any data when
    the config leaves both out (the task is inferred from the first dataset version)."""
    cfg = ws.config
    if cfg.task is None and cfg.train.metric is None:
        latest = ws.catalog.latest_dataset(cfg.name)
        if latest is None:
            return None
        ws.settle_task(dataset=latest)
    return cfg.metric


def retrain_decisions(ws: Workspace) -> list[dict[str, Any]]:
    """Every retrain decision of the project, newest first: when, its trigger, the champion's and the
    challenger's figures (``{"model", "metrics": {"recent", "holdout"}}``), promoted or not, and why."""
    return [{"at": d["at"].isoformat(timespec="seconds"), "promoted": d["promoted"], "reason": d["reason"],
             "trigger": d["trigger"], "dataset": d["dataset_id"], "champion": d["champion"],
             "challenger": d["challenger"]}
            for d in reversed(ws.catalog.list_decisions(ws.config.name))]


def project_status(ws: Workspace) -> dict[str, Any]:
    """Dataset versions, model versions with their test figures, and where each alias points."""
    cat, name = ws.catalog, ws.config.name
    datasets = [{"id": d["id"], "version": d["seq"], "step": d["step"], "rows": d["rows"],
                 "parents": d["parents"], "quality": d.get("quality"),
                 "columns": (d.get("schema") or {}).get("columns", {}),
                 "created_at": d["created_at"].isoformat(timespec="seconds")}
                for d in cat.list_datasets(name)]
    production = cat.get_alias(name, PRODUCTION)
    aliases = cat.current_aliases(name)
    models = [{"name": m["name"], "version": m["version"], "dataset": m["dataset_id"],
               "run_id": m["run_id"], "metrics": m["metrics"], "formats": sorted(m["formats"]),
               "production": m["version"] == production, "parent_version": m.get("parent_version"),
               "family": m.get("family"), "aliases": sorted(a for a, v in aliases.items() if v == m["version"]),
               "variant": (m.get("info") or {}).get("variant"),
               "created_at": m["created_at"].isoformat(timespec="seconds")}
              for m in cat.list_models(name)]
    decisions = retrain_decisions(ws)
    last_retrain = decisions[0] if decisions else None
    return {"project": name, "root": str(ws.root), "metric": _metric(ws),
            "datasets": datasets, "models": models, "last_retrain": last_retrain,
            "production": {"name": name, "version": production} if production else None,
            "stores": {"catalog": ws.catalog_url, "tracking": ws.tracking_url, "optuna": ws.optuna_url}}
