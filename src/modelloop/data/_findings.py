"""Findings, the three quality scores and the pass/fail gate.

A *finding* is one problem (or notable fact) with a kind, an optional column, a severity and a
count. A *check* is one measured rule with ``checked`` values of which ``failed`` broke it; a
dimension's score is 100 × the mean pass rate of its checks (100 when nothing is checked), so one
badly broken rule is visible even in a wide table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .quality_config import SEVERITIES, GateConfig

__all__ = ["Check", "Finding", "compute_scores", "evaluate_gate", "score_dimension", "severity_rank"]

DIMENSIONS = ("completeness", "validity", "consistency")


@dataclass
class Finding:
    """One entry of the report's ``findings`` list (JSON: kind, column, severity, count, message)."""

    kind: str
    column: str | None
    severity: str
    count: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "severity": self.severity,
                "count": int(self.count), "message": self.message, "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(kind=d["kind"], column=d.get("column"), severity=d["severity"], count=int(d["count"]),
                   message=d["message"], details=dict(d.get("details") or {}))


@dataclass
class Check:
    """One measured rule: ``failed`` of ``checked`` values broke it."""

    dimension: str
    name: str
    checked: int
    failed: int

    @property
    def pass_rate(self) -> float:
        return 1.0 if self.checked <= 0 else max(0.0, 1.0 - self.failed / self.checked)


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def score_dimension(checks: list[Check], dimension: str) -> float:
    rates = [c.pass_rate for c in checks if c.dimension == dimension]
    return round(100.0 * sum(rates) / len(rates), 2) if rates else 100.0


def compute_scores(checks: list[Check], weights: dict[str, float]) -> dict[str, float]:
    """``completeness``, ``validity``, ``consistency`` and their weighted mean ``overall`` (0–100)."""
    scores = {d: score_dimension(checks, d) for d in DIMENSIONS}
    total = sum(weights.get(d, 0.0) for d in DIMENSIONS)
    overall = (sum(scores[d] * weights.get(d, 0.0) for d in DIMENSIONS) / total if total > 0
               else sum(scores.values()) / len(scores))
    scores["overall"] = round(overall, 2)
    return scores


def evaluate_gate(gate: GateConfig, scores: dict[str, float], findings: list[Finding],
                  columns: dict[str, dict[str, Any]], duplicate_share: float) -> list[dict[str, Any]]:
    """The failed gate checks, each ``{check, column, value, threshold, message}``; empty = passed."""
    failed: list[dict[str, Any]] = []

    def fail(check: str, value: Any, threshold: Any, message: str, column: str | None = None) -> None:
        failed.append({"check": check, "column": column, "value": value, "threshold": threshold,
                       "message": message})

    for dim in (*DIMENSIONS, "overall"):
        limit = getattr(gate, f"min_{dim}")
        if scores[dim] < limit:
            fail(f"min_{dim}", scores[dim], limit,
                 f"{dim} score {scores[dim]:.1f} is below quality.gate.min_{dim} = {limit:g}")
    if gate.max_missing_share is not None:
        for name, facts in columns.items():
            share = facts.get("missing_share", 0.0)
            if share > gate.max_missing_share:
                fail("max_missing_share", share, gate.max_missing_share,
                     f"column '{name}' is {share:.1%} missing, above quality.gate.max_missing_share = "
                     f"{gate.max_missing_share:g}", name)
    if gate.max_duplicate_share is not None and duplicate_share > gate.max_duplicate_share:
        fail("max_duplicate_share", duplicate_share, gate.max_duplicate_share,
             f"{duplicate_share:.1%} of rows are exact duplicates, above quality.gate.max_duplicate_share = "
             f"{gate.max_duplicate_share:g}")
    if gate.fail_on_severity is not None:
        floor = severity_rank(gate.fail_on_severity)
        for f in findings:
            if severity_rank(f.severity) >= floor:
                fail("fail_on_severity", f.severity, gate.fail_on_severity,
                     f"{f.kind} ({f.severity}): {f.message}", f.column)
    if gate.fail_on_leakage:
        for f in findings:
            if f.kind == "target_leakage":
                fail("fail_on_leakage", f.details.get("score"), f.details.get("threshold"),
                     f"{f.message}; quality.gate.fail_on_leakage refuses possible target leakage (set it "
                     f"to false to report it without failing)",
                     f.column)
    for rule in gate.forbid:
        floor = severity_rank(rule.severity)
        for f in findings:
            if f.kind == rule.kind and severity_rank(f.severity) >= floor:
                fail(f"forbid:{rule.kind}", f.severity, rule.severity,
                     f"{f.kind} is forbidden at severity >= {rule.severity}: {f.message}", f.column)
    return failed
