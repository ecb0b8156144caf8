"""The ``anomaly:`` section of ``modelloop.yaml`` (task ``anomaly_detection``): where the alert line is
drawn and which detectors are searched.

The threshold is either the expected share of anomalies (``contamination``) or, as analysts count,
``alert_budget``: alerts per 1,000 records (a number, or ``"5 per 1000"``) or alerts per day
(``"20 per day"``, with ``data.time``: the share is the budget over the training rows' records per day,
:func:`budget_share`). Giving both is refused; giving neither means 1 %.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["AnomalyConfig", "BUDGET_FORMS", "DEFAULT_CONTAMINATION", "parse_budget", "window_seconds"]

DEFAULT_CONTAMINATION = 0.01
BUDGET_FORMS = ('alerts per 1,000 records (a number in (0, 500), or "5 per 1000") or alerts per day '
                '("20 per day", needs data.time)')
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:(?:/|per)\s*(day|1,?000(?: records)?))?\s*$",
                     re.IGNORECASE)


def window_seconds(value: str) -> float | None:
    """A positive duration (``"1h"``, ``"30min"``) in seconds; None when it is not one."""
    import pandas as pd

    try:
        seconds = pd.Timedelta(str(value)).total_seconds()
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def parse_budget(value: float | str) -> tuple[float, str]:
    """``(alerts, per)`` of an ``alert_budget``: ``per`` is ``"1000"`` (records) or ``"day"``; a ValueError
    for any other form or an alerts count outside its range."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        alerts, per = float(value), "1000"
    else:
        found = _BUDGET.match(str(value))
        if not found:
            raise ValueError(value)
        alerts, per = float(found.group(1)), "day" if (found.group(2) or "").lower() == "day" else "1000"
    if not alerts > 0 or (per == "1000" and not alerts < 500):
        raise ValueError(value)
    return alerts, per


class AnomalyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    contamination: float | None = Field(None, description="expected share of anomalies, in (0, 0.5)")
    alert_budget: float | str | None = Field(None, description="alerts per 1,000 records (a number in (0, 500), or "
                                                               "'5 per 1000') or per day ('20 per day', needs "
                                                               "data.time)")
    # left out: these five, and the autoencoder too for wide data (search.default_detectors); given: exactly those
    detectors: list[Literal["iforest", "ecod", "copod", "knn", "lof", "autoencoder"]] = Field(
        default_factory=lambda: ["iforest", "ecod", "copod", "knn", "lof"], min_length=1)  # type: ignore[arg-type]
    positive_label: Any = Field(None, description="the data.target value that marks an anomaly (default: a value "
                                                  "such as 1, true, yes, anomaly, fraud; else the rarer one)")
    window: str | None = Field("1h", description="with data.time: count the records in this window before each "
                                                 "record (a burst); a duration such as '1h' or '30min'; null: none")
    window_by: str | None = Field(None, description="count only the records with the same value of this column "
                                                    "(e.g. the machine); default: every record")
    reasons: int = Field(3, ge=1, le=20, description="top contributing features given per flagged record")
    min_labels: int = Field(5, ge=1, description="labelled anomalies (train split) needed to choose by average "
                                                 "precision; fewer: the ensemble")
    backbone: str | None = Field(None, description="images: data.source is a folder of images and the detectors read "
                                                   "this backbone's frozen features ('efficientnet-lite0' or a "
                                                   "transformers image model, as model.backbone); null: a table")
    image_size: int = Field(224, ge=16, le=1024, description="with backbone: pixels per side of the network's input")

    @field_validator("contamination")
    @classmethod
    def _a_share_below_half(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value < 0.5:
            raise PydanticCustomError("out_of_range", "must be in (0, 0.5) (a share of the records)")
        return value

    @field_validator("alert_budget", mode="before")
    @classmethod
    def _a_budget_form(cls, value: Any) -> Any:
        if value is None:
            return value
        try:
            parse_budget(value)
        except (TypeError, ValueError):
            raise PydanticCustomError("budget_form", "must be {forms}", {"forms": BUDGET_FORMS}) from None
        return value

    @field_validator("window")
    @classmethod
    def _a_duration(cls, value: str | None) -> str | None:
        if value is not None and window_seconds(value) is None:
            raise PydanticCustomError("duration", "must be a duration such as '1h', '30min' or '2d' (or null: no "
                                                  "time window)")
        return value

    @property
    def window_seconds(self) -> float | None:
        return None if self.window is None else window_seconds(self.window)

    @model_validator(mode="after")
    def _one_threshold(self) -> AnomalyConfig:
        if self.contamination is not None and self.alert_budget is not None:
            raise ValueError("give anomaly.contamination or anomaly.alert_budget, not both")
        return self

    @property
    def per_day(self) -> float | None:
        """Alerts per day when the budget is given so, else None."""
        if self.alert_budget is None:
            return None
        alerts, per = parse_budget(self.alert_budget)
        return alerts if per == "day" else None

    @property
    def share(self) -> float:
        """The expected share of anomalies the threshold is drawn at (a budget per day: see
        :func:`modelloop.families.anomaly.budget.budget_share`, which needs the training rows' rate)."""
        if self.alert_budget is not None:
            alerts, per = parse_budget(self.alert_budget)
            if per == "day":
                raise ValueError("an alert budget per day has a share only against a rate of records per day")
            return alerts / 1000.0
        return self.contamination if self.contamination is not None else DEFAULT_CONTAMINATION
