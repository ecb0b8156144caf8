"""Config models for the ``quality:`` and ``clean:`` sections of ``modelloop.yaml``.

Every field has a default, so ``quality: {}`` and ``clean: {}`` are valid and mean "profile with the
built-in checks, gate off" and "no cleaning". Column names are checked against the data when the
config is used (``profile`` / ``apply_rules``), because the config alone does not know the columns.

Example::

    quality:
      rules:
        age: {type: numeric, min: 0, max: 120, not_null: true}
        email: {regex: '^[^@\\s]+@[^@\\s]+\\.[a-z]+$'}
        country: {allowed: [FR, DE, IT]}
        customer_id: {unique: true}
      checks:
        - {name: dates_ordered, expr: "end >= start"}
      keys: [customer_id]
      gate:
        min_completeness: 95
        min_validity: 90
        max_missing_share: 0.3
        forbid: [{kind: target_leakage, severity: error}]
    clean:
      rules:
        - {action: drop_duplicates}
        - {action: impute, columns: [age], strategy: median, indicator: true}
        - {action: normalize_text, columns: [country], case: upper}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError

__all__ = [
    "CLEAN_ACTIONS",
    "FINDING_KINDS",
    "SEVERITIES",
    "CleanConfig",
    "CleanRule",
    "ClipOutliers",
    "CoerceTypes",
    "ColumnRule",
    "CrossCheck",
    "DropColumns",
    "DropDuplicates",
    "DropLabelIssues",
    "DropOutliers",
    "DropRows",
    "ForbidFinding",
    "GateConfig",
    "Impute",
    "LabelIssuesConfig",
    "LeakageConfig",
    "MergeDuplicates",
    "NormalizeText",
    "OutliersConfig",
    "QualityConfig",
    "RelabelLabelIssues",
    "Severity",
    "ShiftConfig",
    "parse_section",
]

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "error")
FINDING_KINDS: tuple[str, ...] = (
    "missing_values", "duplicate_rows", "duplicate_keys", "key_conflict", "constant_column",
    "near_constant_column", "high_cardinality", "outliers", "target_leakage", "label_issues",
    "rule_violation", "check_failed", "type_mismatch", "spelling_variants", "class_imbalance", "split_shift",
    "source_conflict", "correlated_features",
    # the image family's profile checks (families/image/quality.py)
    "unreadable_files", "duplicate_images", "near_duplicate_images", "train_test_near_duplicates",
    "small_images", "extreme_aspect",
    # the recommend family's (families/recommend/quality.py)
    "duplicate_interactions", "single_interaction_users", "single_interaction_items", "rating_outliers",
    "popularity_skew",
)
Kind = Literal["numeric", "categorical", "boolean", "datetime", "text", "identifier"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_regex(v: str | None) -> str | None:
    if v is not None:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"must be a valid regular expression ({exc}), got {v!r}") from None
    return v


# ---- quality -----------------------------------------------------------------------------------
class ColumnRule(_Section):
    """Declared expectations for one column; each broken one counts against validity."""

    type: Kind | None = Field(default=None, description="the kind every non-missing value must parse as")
    min: float | None = None
    max: float | None = None
    regex: str | None = Field(default=None, description="every non-missing value must fully match")
    allowed: list[Any] | None = Field(default=None, description="the only values allowed")
    unique: bool = False
    not_null: bool = False

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, v: str | None) -> str | None:
        return _check_regex(v)

    @model_validator(mode="after")
    def _min_below_max(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min must be <= max, got min={self.min}, max={self.max}")
        return self


class CrossCheck(_Section):
    """A row-level rule over several columns, e.g. ``end >= start``; a row fails where it is false."""

    name: str = Field(min_length=1)
    expr: str = Field(min_length=1, description="comparison of columns, e.g. 'end >= start'")
    severity: Severity = "error"


class ForbidFinding(_Section):
    """The gate fails when a finding of ``kind`` has at least ``severity``."""

    kind: str
    severity: Severity = "warning"

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in FINDING_KINDS:
            raise ValueError(f"must be one of {', '.join(FINDING_KINDS)}, got {v!r}")
        return v


class GateConfig(_Section):
    """Pass/fail thresholds; the defaults let everything pass (the gate is opt-in)."""

    min_completeness: float = Field(default=0.0, ge=0, le=100)
    min_validity: float = Field(default=0.0, ge=0, le=100)
    min_consistency: float = Field(default=0.0, ge=0, le=100)
    min_overall: float = Field(default=0.0, ge=0, le=100)
    max_missing_share: float | None = Field(default=None, ge=0, le=1, description="per column")
    max_duplicate_share: float | None = Field(default=None, ge=0, le=1, description="exact duplicate rows")
    fail_on_severity: Severity | None = Field(default=None, description="any finding this severe fails")
    fail_on_leakage: bool = Field(default=False, description="a column reported as possible target leakage "
                                                             "fails (default: reported only)")
    forbid: list[ForbidFinding] = Field(default_factory=list)


class LabelIssuesConfig(_Section):
    """Confident-learning search for wrong labels (classification only), on a sample."""

    enabled: bool = True
    model: Literal["lightgbm", "logistic"] = "lightgbm"
    folds: int = Field(default=3, ge=2, le=10)
    max_rows: int = Field(default=20_000, ge=100)
    top: int = Field(default=50, ge=1, description="suspects listed in the report")
    # 0.1: on the fraud example 15.5% of the fraud rows are flagged, and 43 of those 62 are real fraud
    # drawn like genuine spending (the generator's truth); only 19 are the disputed genuine rows.
    overlap_share: float = Field(default=0.1, gt=0, le=1, description=(
        "a class with more of its rows flagged than this overlaps another class; its suspects are not "
        "label noise, and dropping or relabelling them is not suggested"))


class OutliersConfig(_Section):
    method: Literal["iqr", "zscore"] = "iqr"
    threshold: float | None = Field(
        default=None, gt=0, description="IQR factor (default 3.0) or robust z-score (default 3.5)")


class LeakageConfig(_Section):
    """When one column alone predicts the target suspiciously well (out-of-fold AUC, or R² for regression).

    Two rules. Any column at ``warn_threshold`` / ``threshold`` is reported whatever the others score.
    Below that, a column that stands out is still reported: a copy of the target with some noise
    scores an AUC of ~0.94, not 0.99, yet no honest single feature usually comes close, so a score of
    ``dominant_auc`` (``dominant_r2``) that beats every other column by ``dominant_margin`` is
    reported as possible leakage too (a warning: a genuinely dominant feature also looks like this).
    """

    enabled: bool = True
    threshold: float = Field(default=0.98, gt=0.5, le=1.0, description="single-feature AUC / R² flagged as error")
    warn_threshold: float = Field(default=0.95, gt=0.5, le=1.0)
    dominant_auc: float = Field(default=0.9, gt=0.5, le=1.0,
                                description="AUC reported when the column also beats the next by dominant_margin")
    dominant_r2: float = Field(default=0.8, gt=0.0, le=1.0,
                               description="R² reported when the column also beats the next by dominant_margin")
    dominant_margin: float = Field(default=0.05, ge=0.0, le=1.0, description="lead over the next best column")


class ShiftConfig(_Section):
    bins: int = Field(default=10, ge=2, le=100)
    psi_threshold: float = Field(default=0.2, gt=0)
    p_threshold: float = Field(default=0.01, gt=0, lt=1)
    effect_threshold: float = Field(default=0.1, gt=0, le=1, description="KS statistic or total variation distance")
    max_rows: int = Field(default=100_000, ge=1000, description=(
        "rows compared per side: a larger side (train or test split, reference or current table) is compared "
        "on a seeded uniform sample of this many rows, the same rows for every column"))


Dimension = Literal["completeness", "validity", "consistency"]


def _equal_weights() -> dict[Dimension, float]:
    return {"completeness": 1.0, "validity": 1.0, "consistency": 1.0}


class QualityConfig(_Section):
    """The ``quality:`` section: declared rules, cross-column checks, gate and detector settings."""

    rules: dict[str, ColumnRule] = Field(default_factory=dict)
    checks: list[CrossCheck] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list, description="key columns (default: data.id)")
    gate: GateConfig = Field(default_factory=GateConfig)
    label_issues: LabelIssuesConfig = Field(default_factory=LabelIssuesConfig)
    outliers: OutliersConfig = Field(default_factory=OutliersConfig)
    leakage: LeakageConfig = Field(default_factory=LeakageConfig)
    shift: ShiftConfig = Field(default_factory=ShiftConfig)
    sample_rows: int = Field(default=50_000, ge=1000, description="rows used by correlations and leakage")
    high_cardinality: int = Field(default=100, ge=2, description="distinct values above which a categorical is flagged")
    near_constant_share: float = Field(default=0.99, gt=0.5, le=1.0)
    correlation_threshold: float = Field(default=0.95, gt=0, le=1.0)
    weights: dict[Dimension, float] = Field(default_factory=_equal_weights)


# ---- clean -------------------------------------------------------------------------------------
class _Rule(_Section):
    def named_columns(self) -> list[str]:
        """Columns this rule names explicitly (checked against the data before it runs)."""
        cols = getattr(self, "columns", None)
        if isinstance(cols, dict):
            return list(cols)
        return list(cols or [])


class DropDuplicates(_Rule):
    action: Literal["drop_duplicates"]
    subset: list[str] | None = Field(default=None, description="default: every column but internal '_' ones")
    keep: Literal["first", "last", "none"] = "first"

    def named_columns(self) -> list[str]:
        return list(self.subset or [])


class MergeDuplicates(_Rule):
    """Rows sharing ``keys`` become one row: per column the first (or last) non-missing value."""

    action: Literal["merge_duplicates"]
    keys: list[str] = Field(min_length=1)
    prefer: Literal["first", "last"] = "first"

    def named_columns(self) -> list[str]:
        return list(self.keys)


class Impute(_Rule):
    action: Literal["impute"]
    columns: list[str] | None = Field(default=None, description="default: every column with missing values")
    strategy: Literal["median", "mean", "mode", "constant"] = "median"
    value: Any = Field(default=None, description="the fill value for strategy: constant")
    indicator: bool = Field(default=False, description="add '{col}__missing' (0/1) before filling")


class _Bounds(_Rule):
    columns: list[str] | None = Field(default=None, description="default: every numeric feature")
    method: Literal["iqr", "quantile"] = "iqr"
    factor: float = Field(default=1.5, gt=0, description="IQR multiplier")
    lower: float = Field(default=0.01, ge=0, lt=0.5, description="lower quantile (method: quantile)")
    upper: float = Field(default=0.99, gt=0.5, le=1, description="upper quantile (method: quantile)")


class ClipOutliers(_Bounds):
    action: Literal["clip_outliers"]


class DropOutliers(_Bounds):
    action: Literal["drop_outliers"]


class NormalizeText(_Rule):
    action: Literal["normalize_text"]
    columns: list[str] | None = Field(default=None, description="default: every string column but the target")
    unicode: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = "NFKC"
    collapse_whitespace: bool = True
    strip: bool = True
    case: Literal["lower", "upper", "none"] = "none"
    empty_as_null: bool = True
    # Chinese text: "half" maps full-width ASCII forms (Ａ１！, U+FF01-FF5E) and the ideographic space to
    # their half-width forms (NFKC does this too, with its other compatibility folds); "full" the reverse
    width: Literal["half", "full", "none"] = "none"
    # fold traditional Chinese characters to simplified (OpenCC t2s), so 這個產品 and 这个产品 are one text
    traditional_to_simplified: bool = False


class CoerceTypes(_Rule):
    """``columns: {amount: numeric, when: datetime, active: bool}``; failures become missing."""

    action: Literal["coerce_types"]
    columns: dict[str, Literal["numeric", "datetime", "bool", "string"]] = Field(min_length=1)
    datetime_format: str | None = None


class DropColumns(_Rule):
    action: Literal["drop_columns"]
    columns: list[str] = Field(min_length=1)


class DropRows(_Rule):
    """Drop the rows where ``expr`` is true (same syntax as quality checks, e.g. 'amount < 0')."""

    action: Literal["drop_rows"]
    expr: str = Field(min_length=1)


class _LabelRule(_Rule):
    features: list[str] | None = Field(default=None, description="default: every non-target column")
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="keep suspects at least this sure")
    max_share: float = Field(default=0.05, gt=0, le=1, description="act on at most this share of rows")
    max_class_share: float = Field(default=0.1, gt=0, le=1, description=(  # as label_issues.overlap_share
        "refuse to act on more than this share of any one class: so many suspects in a class mean it "
        "overlaps another, and dropping or relabelling them deletes real cases (1 = no limit)"))
    model: Literal["lightgbm", "logistic"] = "lightgbm"
    folds: int = Field(default=5, ge=2, le=10)
    seed: int = 0

    def named_columns(self) -> list[str]:
        return list(self.features or [])


class DropLabelIssues(_LabelRule):
    action: Literal["drop_label_issues"]


class RelabelLabelIssues(_LabelRule):
    action: Literal["relabel_label_issues"]
    min_confidence: float = Field(default=0.8, ge=0, le=1)


CleanRule = Annotated[
    DropDuplicates | MergeDuplicates | Impute | ClipOutliers | DropOutliers | NormalizeText | CoerceTypes | DropColumns | DropRows | DropLabelIssues | RelabelLabelIssues,
    Field(discriminator="action"),
]


CLEAN_ACTIONS: tuple[str, ...] = (
    "drop_duplicates", "merge_duplicates", "impute", "clip_outliers", "drop_outliers", "normalize_text",
    "coerce_types", "drop_columns", "drop_rows", "drop_label_issues", "relabel_label_issues")


class CleanConfig(_Section):
    """The ``clean:`` section: rules applied in order, each seeing the previous one's output."""

    rules: list[CleanRule] = Field(default_factory=list)


def parse_section(model: type[BaseModel], data: Any, path: str) -> Any:
    """``model`` validated from ``data``; every problem in one ConfigError as ``path.key: message``."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(dict(data or {}))
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            parts = [p for i, p in enumerate(e["loc"])
                     if not (p in CLEAN_ACTIONS and i > 0 and isinstance(e["loc"][i - 1], int))]
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
            got = "" if e["type"] == "missing" else f", got {e.get('input')!r}"
            problems.append(f"{path}{loc}: {e['msg']}{got}")
        raise ConfigError("; ".join(problems)) from None
