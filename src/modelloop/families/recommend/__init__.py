"""The recommendation family: popularity, item-kNN and matrix factorization (biased MF for ratings, ALS
and BPR for implicit feedback) over a table of (user, item[, rating][, time]) interactions, searched on
the shared driver, valued by ranking metrics with each user's training items excluded.

Its modules: ``config`` (the ``model:`` section), ``data`` (reading and checking interactions, the sparse
matrix), ``recommenders`` (the algorithms), ``metrics`` (ranking and rating figures), ``search`` (trials),
``model`` (:class:`RecommenderModel`), ``stage`` (the train stage), ``report`` (its evaluation page) and
``serve`` (the served object). Output head: :class:`modelloop.families.heads.RankingHead`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base import Resources

__all__ = ["FAMILY", "RecommendFamily"]


class RecommendFamily:
    name = "recommend"
    tasks = ("recommendation",)
    heads = ("ranking",)
    resources = Resources(cpus=1, gpus=0, memory_gb=1.0)
    latency_limit_advice: str | None = ("a recommender is served natively; its cost is one product with the "
                                        "item factors per request (choose fewer factors or itemknn neighbors)")
    variants: tuple[str, ...] = ()

    def settings_schema(self) -> Any:
        from .config import RecommendSettings

        return RecommendSettings

    def search_space(self, settings: Any) -> dict[str, Any]:
        """``settings``: the project's Config or its ``model:`` section."""
        from ..space import describe_space
        from .config import IMPLICIT_MODELS, RecommendSettings
        from .search import suggest_params

        section = getattr(settings, "model", settings)
        models = section.searched(False) if isinstance(section, RecommendSettings) else list(IMPLICIT_MODELS)
        return describe_space(lambda t: suggest_params(t, models), {"recommender": models})

    def read_source(self, cfg: Any) -> tuple[Any, dict[str, Any], dict[str, str]]:
        """``data.source`` as interactions (ids as text), its read report and the id columns' kinds."""
        from .data import read_interactions

        return read_interactions(cfg)

    def side_tables(self, cfg: Any) -> dict[str, str]:
        """The side tables a dataset version keeps a copy of (``data.side_tables``): key -> configured path."""
        return {k: v for k in ("item_features", "user_features") if (v := getattr(cfg.data, k, None))}

    def profile_findings(self, ws: Any, row: dict[str, Any], frame: Any, side: Any) -> list[dict[str, Any]]:
        """The profile's interaction checks (``quality.py``): repeated pairs, users and items seen once,
        ratings off the scale, the popularity skew."""
        from .quality import interaction_findings

        return interaction_findings(ws.config, frame)

    def train(self, ws: Any, **options: Any) -> dict[str, Any]:
        from .stage import train_recommend

        return train_recommend(ws, **options)

    def load(self, ws: Any, row: dict[str, Any]) -> Any:
        from ...registry import load_model

        return load_model(ws, row)

    def runtime(self, ws: Any, row: dict[str, Any], *, plan: dict[str, Any] | None, threads: int,
                atol: float, use_cache: bool) -> Any:
        from .serve import recommend_runtime

        return recommend_runtime(ws, row, plan)

    def serve_threads(self, config: Any) -> int | None:
        return None

    def variant_maker(self, teacher: Any, train: Any, *, target: str, seed: int, scratch: Path,
                      max_drop: float, threads: int | None) -> Callable[[str], Any]:
        """Refused before any work (exit 2): there is nothing to build, and optimize's generic timing and
        scoring of the native model read a label column a recommender does not have."""
        from ...errors import StateError

        raise StateError("modelloop optimize: a recommender has no optimized variants: it is served natively, "
                         "every known user's scores computed once at load; run `modelloop serve`")

    def drift_extra(self, ws: Any, model_row: dict[str, Any], reference: Any, recent: list[dict[str, Any]],
                    **thresholds: float) -> tuple[dict[str, Any], dict[str, Any]]:
        """The popularity drift of what users take, new users, and the served figures: click-through,
        coverage, fallback share (``monitor.py``)."""
        from .monitor import recommend_drift

        return recommend_drift(ws, model_row, reference, recent, **thresholds)

    def serving_figures(self, recent: list[dict[str, Any]]) -> dict[str, Any]:
        """The monitor page's figures of the served answers (``monitor.served_figures``)."""
        from .monitor import served_figures

        return served_figures(recent)

    def drift_columns(self, schema: Any) -> dict[str, str]:
        """The user and item ids, compared as categories (new users and items, the popularity mix)."""
        return {c: "categorical" for c, k in schema.columns.items() if k == "categorical"}


FAMILY = RecommendFamily()
