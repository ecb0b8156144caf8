"""Model references, loading and aliases (``fraud:3``, ``fraud@production``, ``3``).

The catalog's ``deployments`` table is the history of every alias move (what ``rollback`` walks
back); MLflow's registry alias is kept in step so ``mlflow ui`` shows the same production model.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigError, NotFoundError, StateError
from .workspace import Workspace

__all__ = ["PRODUCTION", "load_model", "promote", "resolve_model", "tracker_for"]

PRODUCTION = "production"
_REF = re.compile(r"^(?:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?P<sep>[:@]))?(?P<rest>[A-Za-z0-9_.-]+)$")


def tracker_for(ws: Workspace):
    from .tracking import Tracker

    return Tracker(ws.tracking_url, ws.config.name, ws.artifacts_dir)


def resolve_model(ws: Workspace, ref: str | None = None) -> dict[str, Any]:
    """The catalog row of a model reference; None means production, else the latest version.

    A task left out of the config becomes the one the model was trained for, so that scoring,
    monitoring and retraining it use its metric.
    """
    row = _model_row(ws, ref)
    ws.settle_task(model=row)
    return row


def _model_row(ws: Workspace, ref: str | None) -> dict[str, Any]:
    cat, name = ws.catalog, ws.config.name
    if ref is None:
        version = cat.get_alias(name, PRODUCTION)
        if version is None:
            versions = cat.list_models(name)
            if not versions:
                raise StateError(f"project '{name}' has no model yet; run `modelloop train` first")
            return versions[-1]
        return cat.get_model(name, version)
    m = _REF.match(ref.strip())
    if not m:
        raise ConfigError(f"model reference '{ref}' is not NAME:VERSION, NAME@ALIAS or VERSION")
    name = m.group("name") or name
    if m.group("sep") == "@":
        version = cat.get_alias(name, m.group("rest"))
        if version is None:
            raise NotFoundError(f"model '{name}' has no alias '{m.group('rest')}'; "
                                f"set one with `modelloop promote VERSION --alias {m.group('rest')}`")
        return cat.get_model(name, version)
    if not m.group("rest").isdigit():
        raise ConfigError(f"model reference '{ref}': version must be a number")
    return cat.get_model(name, int(m.group("rest")))


def load_model(ws: Workspace, row: dict[str, Any]) -> Any:
    """The native model object of a catalog row (our own registry's artifact, never outside data)."""
    import mlflow
    import mlflow.sklearn

    uri = row["formats"].get("native")
    if not uri:
        raise NotFoundError(f"model {row['name']}:{row['version']} has no native artifact")
    tracker_for(ws)  # sets MLflow's logging quiet
    mlflow.set_tracking_uri(ws.tracking_url)
    mlflow.set_registry_uri(ws.tracking_url)
    return mlflow.sklearn.load_model(uri)


def promote(ws: Workspace, ref: str, alias: str = PRODUCTION, reason: str | None = None) -> dict[str, Any]:
    """Point ``alias`` at a model version, in the catalog history and in MLflow's registry."""
    row = resolve_model(ws, ref)
    previous = ws.catalog.get_alias(row["name"], alias)
    ws.catalog.set_alias(row["name"], row["version"], alias, reason=reason)
    tracker_for(ws).set_alias(row["name"], alias, row["version"])
    return {"model": {"name": row["name"], "version": row["version"]}, "alias": alias,
            "previous_version": previous}

