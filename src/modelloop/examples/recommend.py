"""The ``recommend`` example: a shop's ratings with real structure, generated (seeded).

Users and items share a few latent taste dimensions: each item belongs to a category (books, games,
garden, kitchen, music, outdoor, toys, tools) whose direction in taste space it leans to, and each user
likes two or three categories. A user picks items with probability growing with their affinity and the
item's popularity, rates them 1-5 by that affinity plus noise, and over the months popular taste drifts
(items released later gain weight): a time trend that a time split sees. Items carry a title (text) and a
price, which ``/v1/recommend`` can filter on (``"filter": {"category": "books"}``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CATEGORIES", "generate_interactions"]

CATEGORIES = ("books", "games", "garden", "kitchen", "music", "outdoor", "toys", "tools")
_WORDS = {"books": ("novel", "atlas", "guide"), "games": ("puzzle", "board game", "card game"),
          "garden": ("rake", "planter", "hose"), "kitchen": ("pan", "knife", "kettle"),
          "music": ("vinyl", "headphones", "ukulele"), "outdoor": ("tent", "lantern", "backpack"),
          "toys": ("robot", "kite", "blocks"), "tools": ("drill", "wrench", "level")}


def generate_interactions(users: int = 300, items: int = 120, per_user: float = 18.0, seed: int = 0,
                          dims: int = 6) -> pd.DataFrame:
    """One row per rating: ``user``, ``item``, ``rating`` (1-5), ``ts`` (ISO date), ``category``, ``title``,
    ``price``. Users have between 3 and ~3x ``per_user`` ratings (a long tail of light users)."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(0, 1, (len(CATEGORIES), dims))
    cat_of = rng.integers(0, len(CATEGORIES), items)
    item_taste = directions[cat_of] + rng.normal(0, 0.4, (items, dims))
    popularity = rng.lognormal(0, 1.0, items)
    release = rng.uniform(0, 1, items)  # when each item came out, as a share of the period
    liked = [rng.choice(len(CATEGORIES), rng.integers(2, 4), replace=False) for _ in range(users)]
    user_taste = np.array([directions[c].mean(axis=0) for c in liked]) + rng.normal(0, 0.3, (users, dims))
    rows = []
    start = pd.Timestamp("2026-01-01")
    for u in range(users):
        n = int(np.clip(rng.lognormal(np.log(per_user), 0.6), 3, items // 2))
        affinity = item_taste @ user_taste[u] / dims
        when = np.sort(rng.uniform(0, 1, n))
        taken: set[int] = set()
        for t in when.tolist():
            weight = np.exp(2.5 * affinity) * popularity * np.where(release <= t + 0.2, 1.0 + release, 0.05)
            weight[list(taken)] = 0.0
            i = int(rng.choice(items, p=weight / weight.sum()))
            taken.add(i)
            rating = int(np.clip(np.round(3.2 + 2.2 * affinity[i] + rng.normal(0, 0.6)), 1, 5))
            rows.append((f"u{u}", f"i{i}", rating, (start + pd.Timedelta(days=180 * t)).strftime("%Y-%m-%d %H:%M")))
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "ts"])
    index = df["item"].str[1:].astype(int).to_numpy()
    category = np.asarray(CATEGORIES, dtype=object)[cat_of]
    df["category"] = category[index]
    words = [f"{rng.choice(['red', 'small', 'classic', 'pro', 'family', 'eco'])} {rng.choice(_WORDS[c])}"
             for c in category.tolist()]
    df["title"] = np.asarray(words, dtype=object)[index]
    df["price"] = np.round(5 + 95 * rng.beta(2, 5, items), 2)[index]
    return df.sort_values("ts", kind="stable").reset_index(drop=True)
