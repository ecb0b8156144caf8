"""A family's search space as data, read off the same ``suggest`` function its search runs.

The search draws parameters through Optuna's ``trial.suggest_*`` calls; declaring the ranges a second
time would drift from them. :func:`describe_space` runs the family's suggest function against a
recording trial instead, once per branch of a conditional space, and returns what it asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["describe_space"]


class _RecordingTrial:
    """Duck-typed ``optuna.Trial``: records each distribution, answers ``fixed`` values or the low end."""

    def __init__(self, fixed: dict[str, Any]):
        self.fixed = fixed
        self.space: dict[str, dict[str, Any]] = {}
        self.params: dict[str, Any] = {}

    def _answer(self, name: str, spec: dict[str, Any], default: Any) -> Any:
        self.space[name] = spec
        self.params[name] = self.fixed.get(name, default)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False,
                      step: float | None = None) -> float:
        return self._answer(name, {"type": "float", "low": low, "high": high, "log": log}, low)

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False, step: int = 1) -> int:
        return self._answer(name, {"type": "int", "low": low, "high": high, "log": log}, low)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._answer(name, {"type": "categorical", "choices": list(choices)}, choices[0])


def describe_space(suggest: Callable[[Any], Any], branches: dict[str, Sequence[Any]] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """``{parameter: {type, low, high, log} | {type, choices}}`` over every branch: ``branches`` maps
    a categorical parameter to the values to walk (e.g. ``{"family": ["lightgbm", "linear"]}``)."""
    space: dict[str, dict[str, Any]] = {}
    ((key, values),) = (branches or {"": [None]}).items()
    for value in values:
        trial = _RecordingTrial({key: value} if key else {})
        suggest(trial)
        space.update(trial.space)
    return space
