"""The ``anomaly:`` section of ``modelloop.yaml`` (task ``anomaly_detection``): where the alert line is
drawn and which detectors are searched.

The threshold is either the expected share of anomalies (``contamination``) or, as analysts count,
``alert_budget``: alerts per 1,000 records. Giving both is refused; giving neither means 1 %.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["AnomalyConfig", "DEFAULT_CONTAMINATION"]

DEFAULT_CONTAMINATION = 0.01


class AnomalyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    contamination: float | None = Field(None, description="expected share of anomalies, in (0, 0.5)")
    alert_budget: float | None = Field(None, description="alerts per 1,000 records, in (0, 500)")
    detectors: list[Literal["iforest", "ecod", "copod", "knn", "lof"]] = Field(
        default_factory=lambda: ["iforest", "ecod", "copod", "knn", "lof"], min_length=1)  # type: ignore[arg-type]
    positive_label: Any = Field(None, description="the data.target value that marks an anomaly (default: a value "
                                                  "such as 1, true, yes, anomaly, fraud; else the rarer one)")
    reasons: int = Field(3, ge=1, le=20, description="top contributing features given per flagged record")
    min_labels: int = Field(5, ge=1, description="labelled anomalies (train split) needed to choose by average "
                                                 "precision; fewer: the ensemble")

    @field_validator("contamination", "alert_budget")
    @classmethod
    def _a_share_below_half(cls, value: float | None, info: ValidationInfo) -> float | None:
        top = 0.5 if info.field_name == "contamination" else 500.0
        if value is not None and not 0.0 < value < top:
            what = "a share of the records" if top == 0.5 else "alerts per 1,000 records"
            raise PydanticCustomError("out_of_range", "must be in (0, {top}) ({what})", {"top": top, "what": what})
        return value

    @model_validator(mode="after")
    def _one_threshold(self) -> AnomalyConfig:
        if self.contamination is not None and self.alert_budget is not None:
            raise ValueError("give anomaly.contamination or anomaly.alert_budget, not both")
        return self

    @property
    def share(self) -> float:
        """The expected share of anomalies the threshold is drawn at."""
        if self.alert_budget is not None:
            return self.alert_budget / 1000.0
        return self.contamination if self.contamination is not None else DEFAULT_CONTAMINATION
