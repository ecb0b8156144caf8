"""The ``model:`` section of a recommendation project (task ``recommendation``): which recommenders the
search tries, the cutoff ``k`` its ranking metrics are computed at, and (ratings) the lowest rating a
held-out interaction counts as relevant at (``relevant_rating``).

The interaction columns are ``data.user``, ``data.item`` and the optional ``data.rating`` (explicit
feedback; left out, interactions are implicit) and ``data.time`` (a time split).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

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
    # left out: every held-out interaction is relevant (a 1-star rating a hit too), as before it existed
    relevant_rating: float | None = Field(
        None, allow_inf_nan=False, description="with data.rating: a held-out rating below it is not relevant in "
                                               "the ranking metrics (e.g. 4 on 1-5 stars); default: every "
                                               "held-out interaction is")

    @field_validator("relevant_rating", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A rating is a number: not true (YAML's yes) nor a quoted '4'."""
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise PydanticCustomError("rating_number", "must be a number, the lowest held-out rating that counts "
                                                       "as relevant (e.g. 4 on 1-5 stars)")
        return value

    def searched(self, explicit: bool) -> list[str]:
        """The recommenders the search tries for this kind of feedback."""
        return list(self.models or (EXPLICIT_MODELS if explicit else IMPLICIT_MODELS))
