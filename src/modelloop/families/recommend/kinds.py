"""Every recommender by name, at its defaults: what the search draws from and ``model.models`` lists."""

from __future__ import annotations

from typing import Any

from .content import Content, Hybrid
from .recommenders import BPR, BiasedMF, ImplicitALS, ItemKNN, Popularity, Recommender, UserKNN

__all__ = ["DEFAULTS", "KINDS", "build_recommender"]

KINDS: dict[str, type[Recommender]] = {"popularity": Popularity, "itemknn": ItemKNN, "userknn": UserKNN,
                                       "mf": BiasedMF, "als": ImplicitALS, "bpr": BPR, "content": Content,
                                       "hybrid": Hybrid}

# each recommender at sensible defaults, tried first by the search
DEFAULTS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"neighbors": 50, "shrink": 10.0},
    "userknn": {"neighbors": 50, "shrink": 10.0},
    "mf": {"factors": 32, "reg": 5.0},
    # ALS's regularisation is not scaled by the counts: a small catalog needs tens (the example: 50)
    "als": {"factors": 32, "reg": 50.0, "alpha": 20.0},
    "bpr": {"factors": 32, "lr": 0.02, "reg": 0.001},
    "content": {},
    "hybrid": {"w_knn": 1.0, "w_factors": 1.0, "w_content": 0.5, "w_popularity": 0.25},
}


def build_recommender(name: str, params: dict[str, Any]) -> Any:
    """An unfitted recommender ``name`` with ``params`` (the search's)."""
    return KINDS[name](**params)
