"""Where the alert line is drawn: the share of records the threshold flags, from ``anomaly.contamination``
or ``anomaly.alert_budget``.

Analysts count alerts, not shares. A budget per 1,000 records is a share at once; a budget per day is a
share only against how many records arrive a day, which the dataset version tells: its rows (every
split: a random split's train rows are a share of the traffic over the same days) over the days their
``data.time`` spans (rows that ``retrain`` merged from feedback are left out: they are the alerts, not
the traffic). The threshold is then ``1 - share`` on the calibrated score, so a day of
traffic like the training rows' raises about the budgeted number of alerts when served. A budget that
would flag half the records or more, or training rows without a time span, is refused naming the key.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError
from .config import AnomalyConfig

__all__ = ["alert_rates", "records_per_day", "threshold_share"]


def records_per_day(df: pd.DataFrame, time: str | None) -> float | None:
    """The training rows' records per day by the ``time`` column (None without one or without a span)."""
    if not time or time not in df.columns:
        return None
    if "_origin" in df.columns:  # feedback merged by retrain: alerts, not traffic
        df = df[df["_origin"].astype(str) != "feedback"]
    stamps = pd.to_datetime(df[time], errors="coerce").dropna()
    if len(stamps) < 2:
        return None
    days = (stamps.max() - stamps.min()).total_seconds() / 86400.0
    return float(len(stamps) / days) if days > 0 else None


def threshold_share(settings: AnomalyConfig, train: pd.DataFrame, time: str | None) -> tuple[float, dict[str, Any]]:
    """``(share, what it came from)``: the share of records the threshold flags on the training rows."""
    per_day = settings.per_day
    if per_day is None:
        share = settings.share
        source = ({"alert_budget": settings.alert_budget, "alerts_per_1000": round(share * 1000, 6)}
                  if settings.alert_budget is not None else {"contamination": share})
        return share, {**source, "share": share}
    rate = records_per_day(train, time)
    if rate is None:
        raise ConfigError(f"anomaly.alert_budget: {settings.alert_budget!r} (alerts per day) needs training rows "
                          f"spread over time in data.time ('{time}'); they span no time: give alerts per 1,000 "
                          "records (a number, or '5 per 1000') instead")
    share = per_day / rate
    if not share < 0.5:
        raise ConfigError(f"anomaly.alert_budget: {settings.alert_budget!r} would flag {share:.0%} of the records "
                          f"(the training rows arrive {rate:.1f} a day); allowed: fewer than {rate / 2:.1f} alerts "
                          "a day (half the records)")
    return share, {"alert_budget": settings.alert_budget, "alerts_per_day": per_day,
                   "records_per_day": round(rate, 3), "share": share}


def alert_rates(flagged_share: float, budget: dict[str, Any]) -> dict[str, float]:
    """The evaluation's alert counts at the flagged share: per 1,000 records, and per day at the training
    rows' rate when the budget was given so (what served traffic like them would raise)."""
    out = {"alerts_per_1000": round(1000.0 * flagged_share, 3)}
    if budget.get("records_per_day"):
        out["alerts_per_day"] = round(float(np.float64(flagged_share) * budget["records_per_day"]), 3)
    return out
