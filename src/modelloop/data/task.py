"""Which task a target column asks for, when ``modelloop.yaml`` does not say, and where it is recorded.

The inference is the rule of the family that serves a project whose ``task:`` is left out
(``families.INFERRED_TASKS_FAMILY``: the tabular family's ``infer_task``, AutoGluon's rules, in
``families/tabular/task.py``). It is made once, at ingest, and stored with the dataset version (its
``source`` report), so every later command of the project, and every version derived from it (clean,
feedback merge), sees the same task even when new rows would tip the ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    import polars as pl

__all__ = ["TaskInference", "infer_source_task", "infer_task", "recorded_task", "target_kind"]


@dataclass(frozen=True)
class TaskInference:
    """The task inferred for a target and why, as the train summary reports it (``task_inferred``)."""

    task: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def infer_task(y: pd.Series | pl.Series, target: str, kinds: Mapping[str, str] | None = None) -> TaskInference:
    """The task the values of target column ``target`` ask for, as the family that serves a left-out
    task infers it: from a pandas Series, or a Polars one (ingest of a Parquet source), read alike.
    ``kinds`` (the other columns' kinds, as ingest read them) lets it see a table that is really texts."""
    from ..families import family_for_task

    family: Any = family_for_task(None)  # its optional ``infer_task`` (the Family protocol's extension)
    return family.infer_task(y, target, kinds)


def infer_source_task(path: Path) -> TaskInference | None:
    """The task a file or folder ``data.source`` asks for before it is read (a folder of images, a table of
    image paths), as the family that serves a left-out task infers it (its optional ``infer_source_task``);
    None when the source does not say."""
    from ..families import family_for_task

    family: Any = family_for_task(None)
    return family.infer_source_task(path) if hasattr(family, "infer_source_task") else None


def target_kind(task: str) -> str | None:
    """How the data layer reads a target of ``task``: ``categorical`` (classes: at least two, class counts,
    imbalance, label issues, leakage by AUC) or ``numeric`` (numbers, leakage by R²), as the task's head
    declares (``target_kind``; None: neither, nothing checked)."""
    from ..families import head_of_task

    return head_of_task(task).target_kind


def recorded_task(catalog: Any, row: dict[str, Any]) -> TaskInference | None:
    """The inference stored at the ingest that ``row`` (a dataset version) derives from, if any. Its
    reason describes the ingested data, so one read from an earlier version says which (a cleaned
    version said "3 distinct values" of a target the clean had merged into 2)."""
    todo, seen = [row], set()
    while todo:
        r = todo.pop()
        if r["id"] in seen:
            continue
        seen.add(r["id"])
        stored = (r.get("source") or {}).get("task")
        if isinstance(stored, dict) and stored.get("task") in _registered_tasks():
            reason = str(stored.get("reason") or "")
            if r["id"] != row["id"] and reason:
                reason += f" (at the ingest of v{r['seq']}, which v{row['seq']} derives from)" \
                    if r.get("seq") and row.get("seq") else " (at the ingest this version derives from)"
            return TaskInference(str(stored["task"]), reason)
        todo += [catalog.get_dataset(p) for p in r.get("parents") or []]
    return None


def _registered_tasks() -> dict[str, str]:
    from ..families import TASKS

    return TASKS
