"""Interactions: reading ``data.source`` as a table of (user, item[, rating][, time]) rows, and the sparse
user x item matrix every recommender is fitted on.

Ids are matched by their string form (``42``, ``42.0`` and ``"42"`` name the same user), at ingest and
when a client asks, so a CSV read as numbers and a JSON client sending strings agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError, cap_list
from ..heads import label_text

__all__ = ["Interactions", "id_text", "interaction_columns", "item_features", "read_interactions", "read_side_table"]


def id_text(values: Any) -> np.ndarray:
    """Ids as text (``label_text``: 1, 1.0 and '1' agree); a missing id stays None."""
    return np.array([None if v is None or (not isinstance(v, str) and pd.isna(v)) else label_text(v)
                     for v in values], dtype=object)


def interaction_columns(cfg: Any) -> tuple[str, str, str | None, str | None]:
    """``(user, item, rating, time)`` columns of the config (``data.user`` and ``data.item`` required)."""
    d = cfg.data
    missing = [k for k in ("user", "item") if not getattr(d, k, None)]
    if missing:
        raise ConfigError(f"data.{missing[0]}: required for task recommendation (the {missing[0]} id column), "
                          "got nothing")
    return d.user, d.item, d.rating, d.time


def read_interactions(cfg: Any) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str]]:
    """``Family.read_source``: the interactions table, checked, with ids as text. A missing user or item
    column, ratings that are not numbers, a table with one user: a DataError (exit 2) naming it."""
    from ...data.sources import read_table

    user, item, rating, time = interaction_columns(cfg)
    d = cfg.data
    assert d.source is not None
    df, report = read_table(d.source, root=cfg.root, fmt=d.format, query=d.query, encoding=d.encoding,
                            on_bad_lines=d.on_bad_lines, delimiter=d.delimiter, decimal=d.decimal, sheet=d.sheet)
    for key, column in (("user", user), ("item", item), ("rating", rating), ("time", time)):
        if column is not None and column not in df.columns:
            raise DataError(f"data.{key}: column '{column}' is not in {d.source}; columns: {cap_list(df.columns)}")
    df = df.copy()
    for column in (user, item):
        df[column] = id_text(df[column])
    df = df[df[user].notna() & df[item].notna()].reset_index(drop=True)
    if rating is not None:
        values = pd.to_numeric(df[rating], errors="coerce")
        bad = df[rating][values.isna() & df[rating].notna()]
        if len(bad):
            raise DataError(f"data.rating: column '{rating}' must hold numbers, got {bad.iloc[0]!r} "
                            f"({len(bad)} such rows)")
        df[rating] = values.astype(np.float64)
        df = df[df[rating].notna()].reset_index(drop=True)
    users = df[user].nunique()
    if users < 2:
        raise DataError(f"data.user: column '{user}' holds {users} user(s); a recommender learns from what "
                        "several users share: give interactions of at least two users")
    # the ids are the model's inputs; the item's attributes (category, title, price) describe it and are
    # what a request may filter on, never a feature
    for key, column in (("item_features", item), ("user_features", user)):
        read_side_table(cfg, key, column)  # checked at ingest, where its copy is taken (a bad one: exit 2)
    kinds = {c: "identifier" for c in df.columns if c not in (user, item, rating, time)}
    kinds.update({user: "categorical", item: "categorical"})
    if rating is not None:
        kinds[rating] = "numeric"
    return df, dict(report), kinds


def read_side_table(cfg: Any, key: str, id_column: str,
                    dataset_path: Any = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``data.<key>`` (``item_features`` / ``user_features``): ``({column: {id: value}}, ids)`` read from a
    table with one row per id (its ``id_column``; a repeated id keeps its last row): the copy kept in the
    dataset version at ``dataset_path`` (``data.side_tables``), never the file as it is now. Nothing
    configured: ``({}, [])``. A missing file or id column is a DataError naming the key."""
    from ...data.side_tables import side_table_source
    from ...data.sources import read_table

    source, path = side_table_source(cfg, key, dataset_path)
    if source is None:
        return {}, []
    try:
        df, _ = read_table(str(path), root=cfg.root)
    except DataError as exc:
        raise DataError(f"data.{key}: {exc}") from None
    if id_column not in df.columns:
        raise DataError(f"data.{key}: column '{id_column}' (the id) is not in {source}; columns: {cap_list(df.columns)}")
    df = df.assign(**{id_column: id_text(df[id_column])})
    df = df[df[id_column].notna()].drop_duplicates(id_column, keep="last")
    ids = df[id_column].tolist()
    features = {str(c): {i: (v.item() if isinstance(v, np.generic) else v)
                         for i, v in zip(ids, df[c], strict=True) if not (isinstance(v, float) and np.isnan(v))}
                for c in df.columns if c != id_column}
    return features, ids


def item_features(df: pd.DataFrame, item: str, skip: set[str]) -> dict[str, dict[str, Any]]:
    """The columns of the interactions table that describe the item (one value per item: a category, a
    price), as ``{column: {item id: value}}``: what ``filter`` of ``/v1/recommend`` can select on."""
    out: dict[str, dict[str, Any]] = {}
    for column in df.columns:
        if column in skip or column == item or str(column).startswith("_"):
            continue
        per_item = df[[item, column]].dropna().drop_duplicates()
        if len(per_item) and not per_item[item].duplicated().any():
            out[str(column)] = {k: (v.item() if isinstance(v, np.generic) else v)
                                for k, v in zip(per_item[item], per_item[column], strict=True)}
    return out


@dataclass
class Interactions:
    """Ids, their positions and the user x item matrix (summed duplicates for implicit feedback, the
    last rating for explicit)."""

    users: np.ndarray      # id text per user position
    items: np.ndarray      # id text per item position
    u: np.ndarray          # user position per interaction
    i: np.ndarray          # item position per interaction
    values: np.ndarray     # rating, or 1.0 per implicit interaction

    @classmethod
    def from_frame(cls, df: pd.DataFrame, user: str, item: str, rating: str | None,
                   more_items: list[str] | None = None) -> Interactions:
        """``more_items``: catalog items no interaction names yet (an item side table's): they get a position."""
        u, users = pd.factorize(df[user].to_numpy(dtype=object), sort=True)
        i, items = pd.factorize(df[item].to_numpy(dtype=object), sort=True)
        extra = sorted(set(more_items or ()) - set(items))
        if extra:  # appended: the interactions' own positions stay what they were
            items = np.concatenate([np.asarray(items, dtype=object), np.asarray(extra, dtype=object)])
        values = df[rating].to_numpy(dtype=np.float64) if rating else np.ones(len(df))
        return cls(np.asarray(users, dtype=object), np.asarray(items, dtype=object), u.astype(np.int64),
                   i.astype(np.int64), values)

    def matrix(self, rows: np.ndarray | None = None, explicit: bool = False) -> Any:
        """The CSR user x item matrix of the interactions ``rows`` (all by default)."""
        import scipy.sparse as sp

        sel = slice(None) if rows is None else rows
        shape = (len(self.users), len(self.items))
        coo = sp.coo_matrix((self.values[sel], (self.u[sel], self.i[sel])), shape=shape)
        if not explicit:
            return coo.tocsr()  # duplicates summed: a confidence
        frame = pd.DataFrame({"u": self.u[sel], "i": self.i[sel], "v": self.values[sel]}).drop_duplicates(
            ["u", "i"], keep="last")
        return sp.csr_matrix((frame["v"].to_numpy(), (frame["u"].to_numpy(), frame["i"].to_numpy())),
                             shape=shape)  # the last rating of a pair wins
