"""Model families as plugins: a registry from task to family, loaded lazily.

Each family is a package (``modelloop.families.tabular``, ``modelloop.families.text``) exposing ``FAMILY``,
an object implementing :class:`~modelloop.families.base.Family`. The registry below names each family's
package, the config tasks it serves and the modules it needs, so that the config can be checked and a
missing optional dependency reported (with the ``pip install`` that adds it) without importing any family.

Adding a family: a new package, one :class:`FamilySpec` in ``_SPECS`` and its tests (the contract suite
in ``tests/families`` runs over every registered family).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Family, Resources

__all__ = ["FAMILIES", "TASKS", "VERDICT_COLUMN", "Family", "FamilySpec", "FamilyUnavailable", "Resources",
           "family_for_task", "family_of", "family_name_of", "get_family", "head_of_task", "label_column",
           "partial_labels", "settings_schema_for", "tasks_with_settings"]


class FamilyUnavailable(ConfigError):
    """A family whose optional dependencies are not installed (exit 2, with the install command)."""


@dataclass(frozen=True)
class FamilySpec:
    name: str
    module: str                     # the package exposing FAMILY
    tasks: tuple[str, ...]          # config ``task:`` values
    requires: tuple[str, ...] = ()  # importable modules it needs
    extra: str | None = None        # ``pip install 'modelloop[extra]'`` installs them
    labels: str = "required"        # "partial": data.target is optional and may be filled for a few rows


_SPECS = (
    FamilySpec("tabular", "modelloop.families.tabular", ("classification", "regression"),
               requires=("sklearn", "lightgbm", "xgboost")),
    FamilySpec("text", "modelloop.families.text", ("text_classification",),
               requires=("torch", "transformers", "peft"), extra="text"),
    FamilySpec("generative", "modelloop.families.generative", ("text_generation",),
               requires=("torch", "transformers", "peft", "gguf"), extra="generative"),
    FamilySpec("anomaly", "modelloop.families.anomaly", ("anomaly_detection",), requires=("sklearn",),
               labels="partial"),
    FamilySpec("image", "modelloop.families.image", ("image_classification",),
               requires=("torch", "PIL", "albumentations", "efficientnet_lite_pytorch"), extra="image"),
    # no label column: the interactions are the truth (data.user, data.item, data.rating)
    FamilySpec("recommend", "modelloop.families.recommend", ("recommendation",), requires=("scipy",),
               labels="partial"),
)
FAMILIES: dict[str, FamilySpec] = {s.name: s for s in _SPECS}
TASKS: dict[str, str] = {task: s.name for s in _SPECS for task in s.tasks}
_LOADED: dict[str, Family] = {}


def get_family(name: str) -> Family:
    """The family registered as ``name``, imported on first use."""
    spec = FAMILIES.get(name)
    if spec is None:
        raise ConfigError(f"unknown model family '{name}'; registered: {', '.join(FAMILIES)}")
    if name not in _LOADED:
        missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
        if missing:
            hint = f"pip install 'modelloop[{spec.extra}]'" if spec.extra else "pip install modelloop"
            raise FamilyUnavailable(f"the {name} model family needs {', '.join(missing)}, which is not "
                                    f"installed; install it with `{hint}`")
        _LOADED[name] = importlib.import_module(spec.module).FAMILY
    return _LOADED[name]


# A config without ``task:`` has it inferred from its target at ingest (``modelloop.data.task``), which
# chooses between this family's tasks: it serves such a project until the task is settled.
INFERRED_TASKS_FAMILY = "tabular"


def family_for_task(task: str | None) -> Family:
    """The family that serves a config ``task:`` (None: left out, to be inferred from the target)."""
    if task is None:
        return get_family(INFERRED_TASKS_FAMILY)
    if task not in TASKS:
        raise ConfigError(f"task: must be one of {', '.join(TASKS)}, got '{task}'")
    return get_family(TASKS[task])


def settings_schema_for(task: str | None) -> Any:
    """The pydantic model of the ``model:`` section for a config ``task:`` (None: its family has none).

    Read from the family's declarations, without its optional dependencies (a project whose family is
    not installed still loads its config; the family answers with its install hint when it is used).
    An unregistered task has no section (the ``task`` check reports it)."""
    name = INFERRED_TASKS_FAMILY if task is None else TASKS.get(task)
    if name is None:
        return None
    return _declarations(name).settings_schema()


def head_of_task(task: str) -> Any:
    """The head class (:mod:`modelloop.families.heads`) a config ``task:``'s models predict through:
    the family's ``task_heads`` entry for the task, else its first head. From the family's declarations
    (no optional dependency needed): the config's metric and split defaults and checks ask it."""
    from .heads import HEADS

    family = _declarations(TASKS[task])
    return HEADS[(getattr(family, "task_heads", None) or {}).get(task, family.heads[0])]


def _declarations(name: str) -> Any:
    """The ``FAMILY`` object of a registered family, imported without checking its ``requires``: only
    its declarations are read (a family package imports its heavy parts inside its methods)."""
    return _LOADED.get(name) or importlib.import_module(FAMILIES[name].module).FAMILY


def partial_labels(task: str | None) -> bool:
    """Whether a config ``task:``'s family reads ``data.target`` as optional, partial labels (used to
    choose and evaluate, never as a feature): the ingest keeps unlabelled rows, the profile does not
    treat the column as a target. From the specs alone: no family is imported."""
    name = TASKS.get(task) if task is not None else INFERRED_TASKS_FAMILY
    return name is not None and FAMILIES[name].labels == "partial"


VERDICT_COLUMN = "_verdict"
"""Where the feedback labels of a project without ``data.target`` are kept (a partial-labels task: an
anomaly project's analysts' verdicts): a private column, never a feature, merged in by ``retrain``."""


def label_column(cfg: Any) -> str | None:
    """The column a project's labels (its own and the feedback's) are in: ``data.target``, else
    ``VERDICT_COLUMN`` for a task whose labels are partial (no target needed) and whose feedback is a
    verdict (its head's ``VERDICTS``: anomaly detection; a recommender learns from interactions), else
    None."""
    target = cfg.data.target
    if (target is None and cfg.task is not None and partial_labels(cfg.task)
            and getattr(head_of_task(cfg.task), "VERDICTS", None)):
        return VERDICT_COLUMN
    return target


def tasks_with_settings() -> list[str]:
    """The config tasks whose family reads a ``model:`` section (its declarations only: no dependency
    of the family is needed to answer)."""
    return [task for spec in _SPECS if importlib.import_module(spec.module).FAMILY.settings_schema() is not None
            for task in spec.tasks]


def family_name_of(row: Mapping[str, Any]) -> str:
    """The family of a registered model version. Versions registered before families were recorded
    (catalog schema 1) are migrated by the catalog; this also reads a row built by hand."""
    if row.get("family"):
        return str(row["family"])
    from ..data.schema import Schema

    schema = Schema.from_dict(dict(row.get("input_schema") or {"columns": {}}))
    return "text" if schema.text and not schema.features() else "tabular"


def family_of(row: Mapping[str, Any]) -> Family:
    """The family object of a registered model version."""
    return get_family(family_name_of(row))
