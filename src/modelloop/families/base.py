"""The family protocol: what a model family declares and does, so that every stage stays generic.

A family is one package under ``modelloop.families`` (``tabular``, ``text``, ...) whose ``FAMILY`` object
implements :class:`Family`. Stages never ask which family they hold: they look the family up in the
registry (:func:`modelloop.families.family_for_task` for a config, :func:`~modelloop.families.family_of`
for a registered model version) and call these methods. Outputs are interpreted by the model's head
(:mod:`modelloop.families.heads`). ``docs/design.md`` ("Adding a family") walks through a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd
    from pydantic import BaseModel

    from ..data.schema import Schema
    from ..workspace import Workspace

__all__ = ["Family", "Resources"]


@dataclass(frozen=True)
class Resources:
    """What one training job of the family asks of the pool (the compute layer's default request)."""

    cpus: int = 1           # 0 = every CPU the worker has
    gpus: int = 0           # GPUs it can use (it still runs on CPUs when none is present)
    memory_gb: float = 1.0  # a rough peak for the bundled examples' size


@runtime_checkable
class Family(Protocol):
    """One model family. Attributes are declarations (cheap, no heavy imports); methods do the work."""

    name: str                      # registry key, recorded with every model version (``models.family``)
    tasks: tuple[str, ...]         # the config ``task:`` values it serves
    heads: tuple[str, ...]         # the output heads it can predict through
    resources: Resources
    variants: tuple[str, ...]      # what ``modelloop optimize`` can build for it
    latency_limit_advice: str | None  # None: ``train.max_latency_ms`` applies; else why not, what instead

    def settings_schema(self) -> type[BaseModel] | None:
        """The pydantic model of the ``model:`` section for this family (None: it has none)."""

    def search_space(self, settings: Any) -> dict[str, Any]:
        """The hyper-parameters the search draws from: ``{name: description}`` (JSON-ready).
        ``settings``: the project's Config (or the family's own section of it)."""

    def train(self, ws: Workspace, **options: Any) -> dict[str, Any]:
        """Search, fit, evaluate on the frozen test split and register one model version.
        Options: budget, trials, dataset, warm_start, kind, progress, register_as_production.
        Returns the train stage's JSON summary."""

    def load(self, ws: Workspace, row: dict[str, Any]) -> Any:
        """The native model object of a registered version."""

    def runtime(self, ws: Workspace, row: dict[str, Any], *, plan: dict[str, Any] | None, threads: int,
                atol: float, use_cache: bool) -> Any:
        """The served object (a :class:`modelloop.serving.runtime.Runtime`) of a model version."""

    def serve_threads(self, config: Any) -> int | None:
        """Intra-op threads its served sessions take under ``serve:`` (None: the runtime's default)."""

    def variant_maker(self, teacher: Any, train: pd.DataFrame, *, target: str, seed: int, scratch: Path,
                      max_drop: float, threads: int | None) -> Callable[[str], Any]:
        """``variant name -> predictor`` for ``modelloop optimize``; raises its skip error when a
        variant does not apply to this model."""

    def drift_columns(self, schema: Schema) -> dict[str, str]:
        """The columns monitored for input drift and how each is compared (numeric | categorical |
        text | datetime): what the family's models actually read."""
