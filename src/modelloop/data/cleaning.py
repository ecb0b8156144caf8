"""Declarative cleaning: the ordered rules of ``clean:`` applied to a table, with a change log.

Each rule sees the previous rule's output. ``apply_rules`` returns the cleaned table and one change
record per rule (``index, action, columns, rows_changed, cells_changed, rows_dropped, details``),
which the lead stage stores as the new dataset version's lineage. ``fit_rules`` also returns a
``CleaningPlan``: the per-row transformations learned at clean time (impute values, clip bounds,
text normalization, type coercion, dropped columns), JSON-serialisable, which ``apply_inference``
replays on incoming records so that serving sees data shaped like the training data. Row-level
rules (duplicates, outliers, mislabelled rows, ``drop_rows``) are training-only and not replayed.

Example::

    df2, changes, plan = fit_rules(df, [{"action": "impute", "columns": ["age"], "indicator": True}],
                                   target="churn")
    json.dump(plan.to_dict(), f)
    live = CleaningPlan.from_dict(json.load(f)).apply_inference(records)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ._clean_rules import RULES, Ctx, replay_step
from ._tables import check_columns, is_internal, like_input, to_polars
from .quality_config import CleanConfig, parse_section

__all__ = ["PLAN_VERSION", "CleaningPlan", "apply_rules", "fit_rules", "parse_rules"]

PLAN_VERSION = 1


def parse_rules(rules: CleanConfig | Sequence[Any] | Mapping[str, Any] | None) -> list[Any]:
    """Rule models from a ``CleanConfig``, ``{"rules": [...]}`` or a list of dicts/models.

    Invalid rules raise one ConfigError listing every problem as ``clean.rules[i].field: message``.
    """
    if rules is None:
        return []
    if isinstance(rules, CleanConfig):
        return list(rules.rules)
    listed: Sequence[Any] = rules.get("rules", []) if isinstance(rules, Mapping) else rules
    items = [r.model_dump() if hasattr(r, "model_dump") else r for r in listed]
    return list(parse_section(CleanConfig, {"rules": items}, "clean").rules)


@dataclass
class CleaningPlan:
    """The replayable part of a cleaning run (``steps``), plus the columns it expects and makes."""

    steps: list[dict[str, Any]]
    input_columns: list[str]
    output_columns: list[str]
    target: str | None = None
    training_only: list[str] = field(default_factory=list)
    version: int = PLAN_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "target": self.target, "input_columns": self.input_columns,
                "output_columns": self.output_columns, "training_only": self.training_only, "steps": self.steps}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CleaningPlan:
        version = int(d.get("version", 1))
        if version > PLAN_VERSION:
            raise ConfigError(f"cleaning plan version {version} is newer than this modelloop supports "
                              f"({PLAN_VERSION}); upgrade modelloop")
        return cls(steps=list(d["steps"]), input_columns=list(d["input_columns"]),
                   output_columns=list(d["output_columns"]), target=d.get("target"),
                   training_only=list(d.get("training_only", [])), version=version)

    def apply_inference(self, df: Any) -> Any:
        """Replay the learned steps on incoming records (the target may be absent); same flavour out."""
        data = to_polars(df, "records")
        skip = (self.target,) if self.target and self.target not in data.columns else ()
        for i, step in enumerate(self.steps):
            data = replay_step(data, step, where=f"cleaning plan step {i} (rule {step.get('rule')})",
                               skip_missing=tuple(c for c in skip if c))
        return like_input(data, df)

    transform = apply_inference

    def apply_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`apply_inference` on JSON records (the serving path): records in, records out."""
        import polars as pl

        frame = pl.DataFrame(records, infer_schema_length=None, strict=False)
        return self.apply_inference(frame).to_dicts()

    def added_columns(self) -> list[str]:
        """Columns the plan makes (e.g. ``x__missing``): model inputs a client never sends."""
        given = set(self.input_columns)
        return [c for c in self.output_columns if c not in given]


def fit_rules(df: Any, rules: CleanConfig | Sequence[Any] | Mapping[str, Any] | None, *,
              target: str | None = None) -> tuple[Any, list[dict[str, Any]], CleaningPlan]:
    """``(cleaned, changes, plan)``: apply the rules in order and record what to replay at inference.

    A rule naming a column the table does not have (at that point) raises ConfigError naming the
    rule index and the column and listing the available columns.
    """
    parsed = parse_rules(rules)
    data = to_polars(df)
    inputs = [c for c in data.columns if not is_internal(c) and c != target]
    changes, steps, training_only = [], [], []
    for i, rule in enumerate(parsed):
        ctx = Ctx(i, target)
        check_columns(rule.named_columns(), data.columns, f"{ctx.where} ({rule.action})")
        data, change, step = RULES[rule.action](data, rule, ctx)
        change["details"]["rows_after"] = data.height
        changes.append(change)
        if step is not None:
            steps.append({"rule": i, **step})
        else:
            training_only.append(f"{i}:{rule.action}")
    plan = CleaningPlan(steps=steps, input_columns=inputs,
                        output_columns=[c for c in data.columns if not is_internal(c) and c != target],
                        target=target, training_only=training_only)
    return like_input(data, df), changes, plan


def apply_rules(df: Any, rules: CleanConfig | Sequence[Any] | Mapping[str, Any] | None, *,
                target: str | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """``(cleaned, changes)``; see ``fit_rules`` (which also returns the replayable plan)."""
    out, changes, _ = fit_rules(df, rules, target=target)
    return out, changes
