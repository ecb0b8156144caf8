"""Column kinds and the table schema that travels with every dataset version and model.

Kinds decide how a column is treated downstream: ``numeric``/``boolean``/``categorical``/``datetime``
columns become model features; ``text`` goes to text models (or is dropped by tabular ones);
``identifier`` columns are never features because they let a model memorise rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ColumnKind = Literal["numeric", "categorical", "boolean", "datetime", "text", "identifier"]
KINDS: tuple[str, ...] = ("numeric", "categorical", "boolean", "datetime", "text", "identifier")
FEATURE_KINDS: tuple[str, ...] = ("numeric", "categorical", "boolean", "datetime")


@dataclass
class Schema:
    """Column name -> kind (in table order), plus the roles taken from the config."""

    columns: dict[str, str]
    target: str | None = None
    id: str | None = None
    text: str | None = None
    time: str | None = None
    dtypes: dict[str, str] = field(default_factory=dict)
    # datetime column -> the one strptime format its non-ISO values share (``data.dates``), so the
    # server reads a value as training did; absent for ISO 8601 columns and mixed spellings
    datetime_formats: dict[str, str] = field(default_factory=dict)

    def features(self) -> list[str]:
        """Columns a tabular model uses: feature kinds, minus the target and id."""
        roles = {self.target, self.id}
        return [c for c, k in self.columns.items() if k in FEATURE_KINDS and c not in roles]

    def datetime_format(self, column: str) -> str | None:
        """The format of a datetime column, if it has one."""
        return self.datetime_formats.get(column)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a schema pickled with a model registered before ``datetime_formats`` existed
        self.__dict__.update({"datetime_formats": {}, **state})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        return cls(**d)
