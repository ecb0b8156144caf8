"""The ``model:`` section of a recommendation project (task ``recommendation``): which recommenders the
search tries and the cutoff ``k`` its ranking metrics are computed at.

The interaction columns are ``data.user``, ``data.item`` and the optional ``data.rating`` (explicit
feedback; left out, interactions are implicit) and ``data.time`` (a time split).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EXPLICIT_MODELS", "IMPLICIT_MODELS", "RecommendSettings"]

# the recommenders that fit each kind of feedback: a rating is predicted by the biased models; implicit
# data (clicks, views, purchases) by the ranking ones
EXPLICIT_MODELS = ("popularity", "itemknn", "mf", "hybrid")
IMPLICIT_MODELS = ("popularity", "itemknn", "als", "bpr", "hybrid")


class RecommendSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    k: int = Field(10, ge=1, le=1000, description="the cutoff of the ranking metrics (precision@k, NDCG@k, ...)")
    models: list[Literal["popularity", "itemknn", "userknn", "mf", "als", "bpr", "content", "hybrid"]] | None = Field(
        None, description="recommenders the search tries; default: popularity, itemknn, mf, hybrid for ratings, "
                          "popularity, itemknn, als, bpr, hybrid for implicit feedback")
    epochs: int = Field(15, ge=1, le=500, description="passes of the factor models (ALS sweeps, BPR epochs)")

    def searched(self, explicit: bool) -> list[str]:
        """The recommenders the search tries for this kind of feedback."""
        return list(self.models or (EXPLICIT_MODELS if explicit else IMPLICIT_MODELS))
