"""What ``modelloop monitor`` says of a served recommender (``Family.drift_extra``), beyond the logged
inputs:

* the item column (``data.item``, by its name): the items users took lately (``POST /v1/interactions``
  since the window began, and the items of ``/v1/predict`` records) against the training interactions'
  item popularity: the popularity drift. It replaces the generic comparison of the logged item input,
  which ``/v1/recommend`` requests do not carry;
* the user column (``data.user``): known against new users among the window's requests (training: all
  known), so a wave of users the model never saw is drift. It replaces the generic comparison of user ids,
  which says nothing of a model that knows each user by id;
* the ``recommendations`` section: answers served, items shown, the click-through (interactions that name
  a served answer's request id, impressions, skips and dismissals aside; per answer and per item shown), the coverage of the catalog by what was
  served, the share answered by the popularity fallback, and the shares of new users and new items.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from ..heads import label_text
from .model import NOT_TAKEN

__all__ = ["recommend_drift", "served_figures"]


def _user_of(inputs: dict[str, Any], column: str) -> Any:
    return inputs.get(column, inputs.get("user"))  # /v1/predict records name the column; /v1/recommend "user"


def recommend_drift(ws: Any, model_row: dict[str, Any], reference: pd.DataFrame, recent: list[dict[str, Any]],
                    *, psi_threshold: float, p_threshold: float) -> tuple[dict[str, Any], dict[str, Any]]:
    from ...data.shift import compare_distributions
    from ...feedback.interactions import read_interactions_log
    from ...registry import load_model

    model = load_model(ws, model_row)
    served = [r for r in recent if isinstance(r.get("output"), dict) and "recommendations" in r["output"]]
    # the window's interactions: those since its first request (rows without a time: none)
    times = [r["at"] for r in recent if r.get("at") is not None]
    since = min(times).isoformat() if times and isinstance(min(times), dt.datetime) else str(min(times, default=""))
    taken = [x for x in read_interactions_log(ws)[0] if str(x.get("at", "")) >= since] if times else []
    items = [label_text(x["item"]) for x in taken]
    items += [label_text(r["inputs"][model.item_col]) for r in recent
              if (r.get("inputs") or {}).get(model.item_col) is not None and r not in served]
    features: dict[str, Any] = {}
    if items:
        name = model.item_col  # the user's own column name: it replaces the generic comparison of that input
        ref = pd.DataFrame({name: reference[model.item_col].map(label_text).astype("string")})
        features.update(compare_distributions(ref, pd.DataFrame({name: pd.Series(items, dtype="string")}),
                                              {name: "categorical"}, psi_threshold=psi_threshold,
                                              p_threshold=p_threshold))
    users = [_user_of(r.get("inputs") or {}, model.user_col) for r in recent]
    known = ["known" if label_text(u) in model.user_pos_ else "new" for u in users if u is not None]
    if known:
        name = model.user_col
        features.update(compare_distributions(pd.DataFrame({name: pd.Series(["known"] * len(reference), dtype="string")}),
                                              pd.DataFrame({name: pd.Series(known, dtype="string")}),
                                              {name: "categorical"}, psi_threshold=psi_threshold,
                                              p_threshold=p_threshold))
    ids = {r["request_id"] for r in served}
    clicks = sum(1 for x in taken if x.get("request_id") in ids and x.get("event") not in NOT_TAKEN)
    section = served_figures(recent)
    shown = section["items_shown"]
    section.update({
        "click_through": round(clicks / len(served), 4) if served else None,
        "click_through_per_item": round(clicks / shown, 4) if shown else None,
        "coverage": round(section["distinct_items_shown"] / len(model.items_), 4) if len(model.items_) else None,
        "new_users": round(known.count("new") / len(known), 4) if known else None,
        "new_items": round(sum(i not in model.item_pos_ for i in items) / len(items), 4) if items else None,
        "interactions": len(taken)})
    return features, {"recommendations": section}


def served_figures(recent: list[dict[str, Any]]) -> dict[str, Any]:
    """What the logged ``/v1/recommend`` answers say alone (``Family.serving_figures``: the monitor page's
    "Served answers"): answers, items shown, distinct items shown, the popularity-fallback share."""
    served = [r for r in recent if isinstance(r.get("output"), dict) and "recommendations" in r["output"]]
    shown = [i["item"] for r in served for i in r["output"]["recommendations"]]
    return {"served": len(served), "items_shown": len(shown), "distinct_items_shown": len(set(shown)),
            "fallback_share": round(sum("fallback" in r["output"] for r in served) / len(served), 4)
            if served else None}
