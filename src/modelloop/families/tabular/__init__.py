"""The tabular family: LightGBM, XGBoost and linear models searched and ensembled over a typed table,
served as one ONNX graph (scikit-learn pipeline -> ONNX Runtime), with ONNX, pruned and distilled variants.

Its modules: ``model`` (features, estimators, :class:`TabularModel`), ``search`` (its space and cross-validated
trials on the shared driver), ``ensemble`` and ``threshold`` (the choice after the search), ``stage`` (the
train stage), ``export`` (ONNX), ``prune`` and ``fidelity`` (pruned variants), ``variants`` (what optimize builds:
ONNX, pruned, distilled) and ``serve`` (the served object: the ONNX graph fed from JSON records).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ..base import Resources

__all__ = ["FAMILY", "TabularFamily"]


class TabularFamily:
    name = "tabular"
    tasks = ("classification", "regression")
    heads = ("classification", "regression")
    task_heads: ClassVar[dict[str, str]] = {"classification": "classification", "regression": "regression"}
    resources = Resources(cpus=0, gpus=0, memory_gb=2.0)
    latency_limit_advice: str | None = None  # train.max_latency_ms picks among its trials
    variants = ("onnx", "pruned", "distilled")

    def settings_schema(self) -> None:
        return None  # the tabular family reads ``train:`` only; it has no ``model:`` section

    def search_space(self, settings: Any) -> dict[str, Any]:
        """``settings``: the project's Config (its task picks the linear branch: alpha or C), or its
        ``train:`` section alone (then the classification space)."""
        from ..space import describe_space
        from .search import suggest_params

        train = getattr(settings, "train", settings)
        families = list(getattr(train, "families", None) or ("lightgbm", "xgboost", "linear"))
        task = "regression" if getattr(settings, "task", None) == "regression" else "binary"
        return describe_space(lambda t: suggest_params(t, families, task), {"family": families})

    def train(self, ws: Any, **options: Any) -> dict[str, Any]:
        from .stage import train_tabular

        return train_tabular(ws, **options)

    def load(self, ws: Any, row: dict[str, Any]) -> Any:
        from ...registry import load_model

        return load_model(ws, row)

    def runtime(self, ws: Any, row: dict[str, Any], *, plan: dict[str, Any] | None, threads: int,
                atol: float, use_cache: bool) -> Any:
        from .serve import tabular_runtime

        return tabular_runtime(ws, row, plan=plan, atol=atol, use_cache=use_cache)

    def serve_threads(self, config: Any) -> int | None:
        return None  # one intra-op thread per session: requests run side by side instead

    def variant_maker(self, teacher: Any, train: Any, *, target: str, seed: int, scratch: Path,
                      max_drop: float, threads: int | None) -> Callable[[str], Any]:
        from .variants import tabular_variants

        return tabular_variants(teacher, train, target=target, seed=seed, max_drop=max_drop)

    def drift_columns(self, schema: Any) -> dict[str, str]:
        return {c: schema.columns[c] for c in schema.features()}

    # It serves a project whose task is left out (``families.INFERRED_TASKS_FAMILY``): it says which of its
    # tasks a target asks for, at ingest (``infer_task``, with the reason) and in the profile (``column_task``).
    def infer_task(self, y: Any, target: str, kinds: Any = None) -> Any:
        from .task import infer_task

        return infer_task(y, target, kinds)

    def infer_source_task(self, path: Any) -> Any:
        from .task import infer_source_task

        return infer_source_task(path)

    def column_task(self, dtype: Any, kind: str | None, distinct: int) -> str:
        from .task import column_task

        return column_task(dtype, kind, distinct)


FAMILY = TabularFamily()
