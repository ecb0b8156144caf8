"""A model version's search history: every trial of the Optuna study its run searched, score against trial.

The run's MLflow tags name the study (``modelloop.study``, which every family's stage sets); the study's
trials come from the project's Optuna storage, so a resumed search shows the trials of earlier runs too,
as the study holds them. The page also names the MLflow run and experiment: where the project's tracking URI
(``storage.tracking``) is an MLflow server (``http(s)://``), which serves its UI at the same address, it links
the run's page there (:func:`mlflow_run_url`); for a file or database store it gives the command that opens
MLflow's own UI on it (no MLflow server is assumed to be running).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup

from ..evaluation.metrics import direction
from ..project import Project
from .charts import line_chart

__all__ = ["mlflow_run_url", "search_history"]

MAX_TRIALS = 2000          # the chart and table show the latest trials of a very long study


def _run_tags(project: Project, run_id: str) -> tuple[dict[str, str], str | None]:
    """The MLflow run's tags and experiment id (empty when the run is not in the tracking store)."""
    from ..registry import tracker_for

    try:
        run = tracker_for(project.workspace).client.get_run(run_id)
    except Exception:  # mlflow's own error types: a run deleted or a store moved shows as "no history"
        return {}, None
    return dict(run.data.tags), run.info.experiment_id


def mlflow_run_url(tracking: str, experiment: str | None, run_id: str) -> str | None:
    """The run's page in MLflow's UI when ``tracking`` is an MLflow server's http(s) address (the server
    serves its UI there); None for a file or database store, or a run whose experiment is unknown."""
    parts = urlsplit(tracking)
    if experiment is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{tracking.rstrip('/')}/#/experiments/{quote(str(experiment), safe='')}/runs/{quote(run_id, safe='')}"


def search_history(project: Project, model: dict[str, Any], metric: str, title: str) -> dict[str, Any]:
    """Trials (number, state, value, family, params) of the study behind ``model``'s run, and a chart of the
    score with the best so far."""
    import optuna

    tags, experiment = _run_tags(project, model["run_id"])
    study_name = tags.get("modelloop.study")
    found: dict[str, Any] = {"study": study_name, "run": model["run_id"], "experiment": experiment,
                             "tracking": project.workspace.tracking_url, "trials": [], "chart": None,
                             "mlflow_url": mlflow_run_url(project.workspace.tracking_url, experiment, model["run_id"])}
    if not study_name:
        return found
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=project.workspace.optuna_url)
    except KeyError:                     # the study was deleted (or the storage moved)
        return found
    trials = study.get_trials(deepcopy=False)[-MAX_TRIALS:]
    found["trials"] = [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
                        "family": t.params.get("family") or t.user_attrs.get("family"),
                        "params": {k: v for k, v in t.params.items() if k != "family"}} for t in trials]
    maximize = direction(metric) == "maximize"
    best: list[float | None] = []
    for t in found["trials"]:
        v, prev = t["value"], best[-1] if best else None
        best.append(v if prev is None or (v is not None and (v > prev if maximize else v < prev)) else prev)
    labels = [f"#{t['number']}" for t in found["trials"]]
    found["chart"] = Markup(line_chart(labels, {metric: [t["value"] for t in found["trials"]], "best": best},
                                       title=title))
    return found
