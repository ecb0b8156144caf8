"""``modelloop.Project``: the Python API that the command line is a skin over."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import DEFAULT_CONFIG_NAME, Config, load_config
from .errors import ConfigError
from .workspace import Workspace

__all__ = ["Project"]


class Project:
    """One project folder. Each method runs one stage and returns a JSON-ready dict."""

    def __init__(self, config: Config):
        self.config = config
        self.workspace = Workspace(config)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CONFIG_NAME) -> Project:
        """Open the project whose ``modelloop.yaml`` is at ``path``."""
        return cls(load_config(path))

    def ingest(self) -> dict[str, Any]:
        """Read the configured source into a dataset version (unchanged data -> the same version)."""
        from .data.ingest import ingest

        return ingest(self.workspace)

    def profile(self, *, dataset: str | None = None) -> dict[str, Any]:
        """Quality report of a dataset version (latest by default): scores, gate, findings; HTML + JSON."""
        from .data.stages import profile_dataset

        return profile_dataset(self.workspace, dataset)

    def clean(self, *, dataset: str | None = None) -> dict[str, Any]:
        """Apply the ``clean:`` rules -> a new dataset version whose parent is the input."""
        from .data.stages import clean_dataset

        return clean_dataset(self.workspace, dataset)

    def train(self, *, budget: float | None = None, trials: int | None = None, dataset: str | None = None,
              progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
        """Search, fit, evaluate on the frozen test split and register a model version."""
        from .training.train import train

        return train(self.workspace, budget=budget, trials=trials, dataset=dataset, progress=progress)

    def evaluate(self, *, model: str | None = None, data: str | None = None) -> dict[str, Any]:
        """Metrics of a model (production by default) on its test split or a labeled file."""
        from .evaluation.evaluate import evaluate

        return evaluate(self.workspace, model=model, data=data)

    def predict(self, data: str | Path, out: str | Path, *, model: str | None = None,
                progress: Callable[[int], None] | None = None, engine: str = "local",
                out_encoding: str | None = None) -> dict[str, Any]:
        """Batch prediction: every row of ``data`` scored by the served object into ``out``; ``engine="ray"``
        scores its chunks on Ray workers of ``compute.address``'s cluster. ``out_encoding``: a CSV output's
        (``serving.batch.OUT_ENCODINGS``; default UTF-8, with a BOM where the input CSV had one)."""
        if engine == "ray":
            from .serving.ray_predict import predict_file_on_ray

            return predict_file_on_ray(self.workspace, data, out, model=model, progress=progress,
                                       out_encoding=out_encoding)
        if engine != "local":
            raise ConfigError(f"predict --engine: must be local or ray, got {engine!r}")
        from .serving.batch import predict_file

        return predict_file(self.workspace, data, out, model=model, progress=progress, out_encoding=out_encoding)

    def optimize(self, *, model: str | None = None, variants: list[str] | None = None,
                 promote: bool | None = None) -> dict[str, Any]:
        """Build, verify and benchmark variants (ONNX, distilled...); register the best that keeps quality,
        and with ``promote`` (default: ``optimize.promote``) serve it in its parent's place."""
        from .optimization.optimize import optimize

        return optimize(self.workspace, model=model, variants=variants, promote=promote)

    def promote(self, ref: str, *, alias: str = "production") -> dict[str, Any]:
        """Point ``alias`` (production by default) at a model version."""
        from .registry import promote

        return promote(self.workspace, ref, alias, reason="modelloop promote")

    def run(self, *, budget: float | None = None, trials: int | None = None,
            on_stage: Callable[[str], None] | None = None,
            progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
        """Every enabled stage in order: ingest -> split -> search + train -> evaluate -> register."""
        from .pipeline import run_pipeline

        return run_pipeline(self, budget=budget, trials=trials, on_stage=on_stage, progress=progress)

    def serve(self, *, host: str | None = None, port: int | None = None, workers: int | None = None,
              model: str | None = None, engine: str | None = None) -> None:
        """Run the prediction API over the production model until stopped (127.0.0.1:8000 by default);
        ``engine="ray"`` (``serve.engine``) as Ray Serve replicas on ``compute.address``'s cluster.
        With the dashboard under ``/ui`` too: ``modelloop.dashboard.serve.serve_with_ui`` (the dashboard
        reads through this class, so it is not reached from here)."""
        from .serving import serve

        serve(self.workspace, host=host, port=port, workers=workers, model=model, engine=engine)

    def feedback(self, path: str) -> dict[str, Any]:
        """Import ``request_id,label`` rows for earlier predictions; counts of what was accepted."""
        from .feedback.store import import_feedback

        return import_feedback(self.workspace, path)

    def monitor(self, *, window: int | None = None) -> dict[str, Any]:
        """Live metrics per model version, drift per feature, alerts (and an HTML report)."""
        from .feedback.monitor import monitor

        return monitor(self.workspace, window=window)

    def retrain(self, *, if_needed: bool = False, budget: float | None = None,
                progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
        """Feedback -> new dataset version -> challenger -> gate -> promote (or not)."""
        from .feedback.retrain import retrain

        return retrain(self.workspace, if_needed=if_needed, budget=budget, progress=progress)

    def rollback(self, *, alias: str = "production") -> dict[str, Any]:
        """Point ``alias`` back at the version it held before."""
        from .feedback.retrain import rollback

        return rollback(self.workspace, alias)

    def trace(self, request_id: str) -> dict[str, Any]:
        """One logged prediction: its model version, run, dataset version and the feedback that came back."""
        from .trace import trace_request

        return trace_request(self.workspace, request_id)

    def retrain_decisions(self) -> list[dict[str, Any]]:
        """Every retrain decision, newest first (the dashboard's Retrains page; status's last_retrain)."""
        from .pipeline import retrain_decisions

        return retrain_decisions(self.workspace)

    def status(self) -> dict[str, Any]:
        """Lineage at a glance: dataset versions, models, aliases."""
        from .pipeline import project_status

        return project_status(self.workspace)
