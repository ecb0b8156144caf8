"""Which of a recommender's recent interactions answer the champion's own recommendations (exposure bias).

A user clicks or rates what they were shown. Interactions that follow the champion's ``/v1/recommend``
answers are the champion's own picks coming back, so on them the champion is scored on its own
recommendations: it ranks exactly those items first and scores far above any challenger, whatever the
challenger's quality (walking the loop: recent NDCG 0.97 against 0.61 on ratings of the champion's
answers), and no challenger is ever promoted. The gate therefore compares the two models on the recent
interactions that did not come from the champion's answers (organic: found by search, browsing, another
model's answer), and where too few users remain (``MIN_ORGANIC_USERS``) the frozen holdout decides alone
(``retrain._decide``).

An interaction answers the champion when its ``request_id`` names one of the champion's answers (the
catalog's logged answer, else the ``served_by`` the server stored with it), or, without one, when its
item was in one of the champion's logged answers to that user (a page that did not pass the id on).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..families.heads import label_text
from ..workspace import Workspace
from .interactions import interaction_id, read_interactions_log

__all__ = ["MIN_ORGANIC_USERS", "exposure_words", "organic_rows"]

# Fewer users than this in the organic part of the recent slice: a ranking figure averaged over them says
# little, and the frozen holdout decides instead (the ranking figures are means over users).
MIN_ORGANIC_USERS = 20
# How many of the champion's latest logged answers are read for the items it showed each user.
_ANSWERS_READ = 200_000


def organic_rows(ws: Workspace, champion: dict[str, Any], recent: pd.DataFrame, user_col: str, *,
                 rating_col: str | None = None,
                 relevant_rating: float | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The recent rows the gate compares the models on, and what it found: ``{"exposed_rows",
    "organic_rows", "organic_users", "min_organic_users"}``, plus ``"exposure_bias": True`` where the
    organic rows are too few and the frozen holdout must decide (the rows returned are then the whole
    slice, scored for the record only). With no exposed row the slice is returned as it is.

    With ``relevant_rating`` (``model.relevant_rating``, on ratings ``rating_col``) the organic users are
    those with an interaction rated at least that (``metrics.relevant``): the others are left out of the
    ranking means, so they do not make the slice large enough to compare models; the note adds
    ``relevant_rating``."""
    from ..families.recommend.metrics import relevant

    exposed = exposed_mask(ws, champion, recent)
    organic = recent[~exposed]
    counted = organic
    rated = relevant_rating is not None and rating_col is not None and rating_col in organic.columns
    if rated:
        counted = organic[relevant(pd.to_numeric(organic[rating_col], errors="coerce").to_numpy(), relevant_rating)]
    users = int(counted[user_col].map(label_text).nunique()) if user_col in counted.columns else 0
    note: dict[str, Any] = {"exposed_rows": int(exposed.sum()), "organic_rows": len(organic),
                            "organic_users": users, "min_organic_users": MIN_ORGANIC_USERS,
                            **({"relevant_rating": relevant_rating} if rated else {})}
    if not exposed.any():
        return recent, note
    if users >= MIN_ORGANIC_USERS:
        return organic, note
    return recent, {**note, "exposure_bias": True}


def exposed_mask(ws: Workspace, champion: dict[str, Any], recent: pd.DataFrame) -> np.ndarray:
    """Whether each recent row (a stored interaction, by its ``_request_id``) answers the champion."""
    if recent.empty or "_request_id" not in recent.columns:
        return np.zeros(len(recent), dtype=bool)
    stored = {interaction_id(rec): rec for rec in read_interactions_log(ws)[0]}
    name, version = champion["name"], champion["version"]
    answers: dict[str, bool] = {}

    def champions(rid: str, served_by: Any) -> bool:
        if rid not in answers:
            row = ws.catalog.get_prediction(rid)
            by = {"name": row["name"], "version": row["version"]} if row else served_by or {}
            answers[rid] = by.get("name") == name and by.get("version") == version
        return answers[rid]

    shown: dict[str, set[str]] | None = None
    out = np.zeros(len(recent), dtype=bool)
    for n, key in enumerate(recent["_request_id"].tolist()):
        rec = stored.get(str(key))
        if rec is None:
            continue
        if rec.get("request_id") is not None:
            out[n] = champions(str(rec["request_id"]), rec.get("served_by"))
            continue
        if shown is None:
            shown = _shown(ws, name, version)
        out[n] = label_text(rec.get("item")) in shown.get(label_text(rec.get("user")), set())
    return out


def _shown(ws: Workspace, name: str, version: int) -> dict[str, set[str]]:
    """The items of the champion's logged answers, by the user they answered."""
    shown: dict[str, set[str]] = {}
    for row in ws.catalog.recent_predictions(name, _ANSWERS_READ, version=version):
        inputs, output = row.get("inputs") or {}, row.get("output") or {}
        if not isinstance(inputs, dict) or not isinstance(output, dict) or "recommendations" not in output:
            continue
        items = shown.setdefault(label_text(inputs.get("user")), set())
        items.update(label_text(r.get("item")) for r in output["recommendations"] if isinstance(r, dict))
    return shown


def exposure_words(note: dict[str, Any], *, decides: bool) -> str:
    """The reason's words: why the recent slice cannot compare models (``decides``: the holdout decides), or
    which of its interactions the comparison left out."""
    exposed, organic = note.get("exposed_rows", 0), note.get("organic_rows", 0)
    bias = "answer the champion's own recommendations, where it is favoured (exposure bias)"
    users = f"{note.get('organic_users', 0):,} users"
    if note.get("relevant_rating") is not None:
        users += f" with a rating of at least {note['relevant_rating']:g}"
    if not decides:
        return (f"judged on the recent slice's {organic:,} interactions ({users}) "
                f"that did not come from the champion's recommendations; the {exposed:,} that {bias} are left out")
    if not organic:
        return f"the recent slice's {exposed:,} interactions all {bias}"
    return (f"{exposed:,} of the recent slice's {exposed + organic:,} interactions {bias}, and the other "
            f"{organic:,} come from {users}, too few to compare models (fewer "
            f"than {note.get('min_organic_users', MIN_ORGANIC_USERS)})")
