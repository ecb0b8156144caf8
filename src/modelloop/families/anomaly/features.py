"""A typed table as the numbers the detectors read, and each record's per-column deviation (its reasons).

Every feature column of the schema becomes one or more encoded columns, fitted on the training rows:

* numeric and boolean: a robust z-score, ``(x - median) / scale`` with the scale the IQR / 1.349 (the
  standard deviation of a normal column), else the standard deviation; a missing value sits at the median;
* datetime: its cyclic parts (month, day, day of week, hour) as numbers, each only when the training
  rows span its whole cycle (a year, 31 days, a week, a day); the year and the epoch are left out, since
  a later record (a time split, live traffic) would always look new;
* categorical: the value's rarity, ``-log`` of its training share (an unseen value the rarest), and for
  each pair of categorical columns (up to ``MAX_PAIR_COLUMNS`` of them) the pair's surprise against
  independence, ``max(0, -log(p(a, b) / (p(a) p(b))))``: a rare combination of common values.

With ``data.time`` and ``anomaly.window`` (default one hour), a **time window** column too: how many
records (of the same ``anomaly.window_by`` value, e.g. the same machine; else any) arrived in the
``window`` before the record, as a robust z-score against the training rows' counts: a burst of
ordinary-looking readings stands out by its count. The history a record is counted against is the
training rows, then the records after them: the scored frame's own, or at serving the records the
server has scored (:class:`WindowHistory`, replayed in the runtime), so a record scored alone, in a
batch or within a frame gets the same count once the server has seen what came before it.

A column with a single value (or none) in the training rows is left out; a table left with no column
is refused (``DataError`` naming the columns). The deviation of a record on a column (its reason) is the
absolute robust z-score, or the rarity above the column's most common value, plus half the surprise of
each pair it is in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from ...data.schema import Schema
from ...errors import DataError, cap_list

__all__ = ["MAX_PAIR_COLUMNS", "TableEncoder", "WindowHistory"]

MAX_PAIR_COLUMNS = 6
_CYCLIC = ("month", "day", "dayofweek", "hour")
# the days the training rows must span for a part's whole cycle to be seen: a part whose cycle they do
# not cover would make every later record look new (two weeks of readings: the 20th of the month never seen)
_CYCLE_DAYS = {"month": 365.0, "day": 31.0, "dayofweek": 7.0, "hour": 1.0}


@dataclass
class TableEncoder:
    """Fitted on training rows; ``encode`` gives the detectors' matrix, ``deviations`` the reasons."""

    schema: Schema
    columns: list[str] = field(default_factory=list)     # the raw feature columns kept, in order
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it was left out
    numeric_: dict[str, tuple[float, float]] = field(default_factory=dict)  # prepared -> (median, scale)
    owner_: dict[str, str] = field(default_factory=dict)   # prepared numeric column -> raw column
    freq_: dict[str, dict[str, float]] = field(default_factory=dict)  # categorical -> value -> share
    pairs_: dict[tuple[str, str], dict[tuple[str, str], float]] = field(default_factory=dict)
    rarity_scale_: dict[str, tuple[float, float]] = field(default_factory=dict)  # (floor, scale)
    time: str | None = None          # data.time: the window column counts records before each one
    window: float | None = None      # seconds (anomaly.window); None: no window column
    window_by: str | None = None     # count only records with the same value of this column
    window_ref_: dict[str, np.ndarray] = field(default_factory=dict)  # key -> sorted training epochs (s)
    window_part_: str | None = None  # the encoded column's name, once fitted

    def fit(self, df: pd.DataFrame) -> TableEncoder:
        prepared = self._prepare(df)
        for col in self.schema.features():
            kind = self.schema.columns[col]
            parts = [f"{col}__{p}" for p in self._covered(prepared, col)] if kind == "datetime" else [col]
            usable = False
            for part in parts:
                values = prepared[part]
                if kind == "categorical":
                    counts = values.dropna().value_counts()
                    if len(counts) < 2:
                        continue
                    share = (counts / len(values)).to_dict()
                    self.freq_[col] = {str(k): float(v) for k, v in share.items()}
                    floor = -np.log(max(share.values()))
                    rarity = self._rarity(col, values)
                    self.rarity_scale_[col] = (float(floor), float(np.std(rarity)) or 1.0)
                else:
                    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
                    x = x[np.isfinite(x)]
                    if len(x) == 0 or np.nanmin(x) == np.nanmax(x):
                        continue
                    q1, med, q3 = np.percentile(x, [25, 50, 75])
                    scale = (q3 - q1) / 1.349 or float(np.std(x)) or 1.0
                    self.numeric_[part] = (float(med), float(scale))
                    self.owner_[part] = col
                usable = True
            if usable:
                self.columns.append(col)
            else:
                self.dropped[col] = "a single value in the training rows" if len(df) else "no training rows"
        if not self.columns:
            features = self.schema.features()
            what = (f"only constant columns ({cap_list(features)})" if features else
                    f"no feature column (columns: {cap_list(list(self.schema.columns))})")
            raise DataError(f"data.source: no usable feature for anomaly detection: {what}; a detector needs at "
                            "least one column whose values vary (numeric, boolean, categorical or datetime)")
        self._fit_window(df)
        cats = [c for c in self.columns if c in self.freq_][:MAX_PAIR_COLUMNS]
        for a, b in combinations(cats, 2):
            joint = (prepared[a].astype(str) + "\x1f" + prepared[b].astype(str)).value_counts() / len(prepared)
            self.pairs_[(a, b)] = {tuple(str(k).split("\x1f", 1)): float(v) for k, v in joint.items()}  # type: ignore[misc]
        return self

    @staticmethod
    def _covered(prepared: pd.DataFrame, col: str) -> list[str]:
        """The cyclic parts of datetime ``col`` whose whole cycle the training rows span."""
        epoch = pd.to_numeric(prepared[f"{col}__epoch"], errors="coerce").dropna()
        days = float(epoch.max() - epoch.min()) / 86400.0 if len(epoch) else 0.0
        return [p for p in _CYCLIC if days >= _CYCLE_DAYS[p]]

    # ---- the time window --------------------------------------------------------------------------
    def window_keys(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each record's time (epoch seconds, NaN when missing) and window key (its ``window_by`` value)."""
        assert self.time is not None
        from ..tabular.model import prepare_features

        own = Schema(columns={self.time: "datetime"}, datetime_formats=dict(self.schema.datetime_formats))
        epoch = prepare_features(df, own)[f"{self.time}__epoch"].to_numpy(dtype=np.float64)
        keys = (df[self.window_by].astype(str).to_numpy(dtype=object) if self.window_by
                else np.full(len(df), "", dtype=object))
        return epoch, keys

    def _fit_window(self, df: pd.DataFrame) -> None:
        if not (self.time and self.window and self.time in self.columns):
            return
        if self.window_by and self.window_by not in self.columns:  # served records carry the features only
            raise DataError(f"anomaly.window_by: column '{self.window_by}' is not a feature column the detectors "
                            f"use; allowed: {cap_list(self.columns)}")
        epoch, keys = self.window_keys(df)
        ok = np.isfinite(epoch)
        self.window_ref_ = {str(k): np.sort(epoch[ok & (keys == k)]) for k in pd.unique(keys[ok])}
        counts = self._window_counts(epoch, keys, None)
        q1, med, q3 = np.percentile(counts, [25, 50, 75])
        scale = (q3 - q1) / 1.349 or float(np.std(counts)) or 1.0
        self.window_part_ = f"{self.time}__window"
        self.numeric_[self.window_part_] = (float(med), float(scale))
        self.owner_[self.window_part_] = self.window_by or self.time

    def window_counts(self, df: pd.DataFrame, history: WindowHistory | None = None) -> np.ndarray:
        """Each record's count of records (of its key) in the window before it (see ``_window_counts``)."""
        return self._window_counts(*self.window_keys(df), history)

    @property
    def _window_end(self) -> float:
        return max((float(v[-1]) for v in self.window_ref_.values() if len(v)), default=-np.inf)

    def _window_counts(self, epoch: np.ndarray, keys: np.ndarray, history: WindowHistory | None) -> np.ndarray:
        """Records in ``[t - window, t)`` of each record's key: the training rows, the records after them
        in ``history`` (served before) and in this frame."""
        assert self.window is not None
        end = self._window_end
        later = np.isfinite(epoch) & (epoch > end)
        extra_t, extra_k = (history.times, history.keys) if history is not None else (np.zeros(0), np.zeros(0, object))
        extra_t, extra_k = np.r_[extra_t, epoch[later]], np.r_[extra_k, keys[later]]
        out = np.zeros(len(epoch))
        for key in pd.unique(keys):
            rows = (keys == key) & np.isfinite(epoch)
            t = epoch[rows]
            seen = np.sort(np.r_[self.window_ref_.get(str(key), np.zeros(0)), extra_t[extra_k == key]])
            out[rows] = np.searchsorted(seen, t, side="left") - np.searchsorted(seen, t - self.window, side="left")
        return out

    # ---- transforms ------------------------------------------------------------------------------
    def _prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        from ..tabular.model import prepare_features

        if not self.schema.features():
            raise DataError("data.source: no usable feature for anomaly detection: no feature column (columns: "
                            f"{cap_list(list(self.schema.columns))})")
        return prepare_features(df, self.schema)

    def _rarity(self, col: str, values: pd.Series) -> np.ndarray:
        share = self.freq_[col]
        unseen = 1.0 / (1.0 + 1.0 / max(min(share.values()), 1e-12))  # rarer than the rarest seen value
        return -np.log(values.map(lambda v: share.get(str(v), unseen) if pd.notna(v) else max(share.values()))
                       .to_numpy(dtype=np.float64))

    def _surprise(self, a: str, b: str, prepared: pd.DataFrame) -> np.ndarray:
        joint, fa, fb = self.pairs_[(a, b)], self.freq_[a], self.freq_[b]
        floor = 1.0 / (1.0 + 1.0 / max(min(joint.values()), 1e-12))
        out = np.empty(len(prepared), dtype=np.float64)
        for i, (va, vb) in enumerate(zip(prepared[a].astype(str), prepared[b].astype(str), strict=True)):
            pa, pb = fa.get(va), fb.get(vb)
            if pa is None or pb is None:  # an unseen value: its own rarity says it
                out[i] = 0.0
                continue
            out[i] = max(0.0, -np.log(joint.get((va, vb), floor) / (pa * pb)))
        return out

    def _parts(self, df: pd.DataFrame, history: WindowHistory | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(encoded columns by name, deviation per raw column)."""
        prepared = self._prepare(df)
        encoded: dict[str, np.ndarray] = {}
        deviation = {c: np.zeros(len(df)) for c in self.columns}
        window_part = getattr(self, "window_part_", None)  # an encoder pickled before the window has none
        for part, (med, scale) in self.numeric_.items():
            if part == window_part:
                x = self._window_counts(*self.window_keys(df), history)
            else:
                x = pd.to_numeric(prepared[part], errors="coerce").to_numpy(dtype=np.float64)
            z = np.clip(np.where(np.isfinite(x), (x - med) / scale, 0.0), -1e6, 1e6)
            encoded[part] = z
            deviation[self.owner_[part]] += np.abs(z)
        for col in self.freq_:
            rarity = self._rarity(col, prepared[col])
            floor, scale = self.rarity_scale_[col]
            encoded[col] = (rarity - floor) / scale
            deviation[col] += np.maximum(rarity - floor, 0.0) / scale
        for a, b in self.pairs_:
            s = self._surprise(a, b, prepared)
            encoded[f"{a}*{b}"] = s
            deviation[a] += s / 2.0
            deviation[b] += s / 2.0
        return encoded, deviation

    def encode(self, df: pd.DataFrame, history: WindowHistory | None = None) -> np.ndarray:
        """The detectors' matrix: ``(n, encoded columns)`` float64."""
        encoded, _ = self._parts(df, history)
        return np.column_stack(list(encoded.values())) if encoded else np.zeros((len(df), 0))

    def encode_with_deviations(self, df: pd.DataFrame, history: WindowHistory | None = None
                               ) -> tuple[np.ndarray, np.ndarray]:
        """The matrix and ``(n, len(columns))`` per-column deviations, from one preparation."""
        encoded, deviation = self._parts(df, history)
        return np.column_stack(list(encoded.values())), np.column_stack([deviation[c] for c in self.columns])

    def describe(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "dropped": dict(self.dropped),
                "pairs": [f"{a}*{b}" for a, b in self.pairs_],
                "window": None if getattr(self, "window_part_", None) is None else {"column": self.time, "seconds": self.window,
                                                                  "by": self.window_by}}


class WindowHistory:
    """The records a server has scored after the training rows (time, window key), kept for one window
    back from the latest: what the time window column counts at serving. Not thread-safe by itself
    (the runtime holds a lock around ``load``, score and ``add``).

    With a ``catalog`` (the served runtime's), the records are kept in its ``anomaly_window`` table under
    the model ``name``, each once by its content's digest (a record sent twice counts once), and ``load``
    reads back the ones a frame's records are counted against: a restarted server, and every worker of
    one, count the records kept before (two batches scored at the same moment by two workers do not see
    each other: each worker's lock is its own). Without one (offline), only in this object's memory."""

    def __init__(self, encoder: TableEncoder, catalog: Any = None, name: str | None = None):
        self.encoder, self.catalog, self.name = encoder, catalog, name
        self.times, self.keys = np.zeros(0), np.zeros(0, dtype=object)

    def load(self, df: pd.DataFrame) -> None:
        """From the catalog: the kept records of ``df``'s keys from one window before its first record."""
        if self.catalog is None:
            return
        epoch, keys = self.encoder.window_keys(df)
        ok = np.isfinite(epoch)
        self.times, self.keys = np.zeros(0), np.zeros(0, dtype=object)
        if not ok.any():
            return
        since = float(np.min(epoch[ok])) - float(self.encoder.window or 0.0)
        found = self.catalog.window_records(self.name, sorted({str(k) for k in keys[ok]}), since)
        end = self.encoder._window_end  # a record up to the training rows' end is one of them already
        own = set(_digests(df))  # a record sent again is counted as the frame's own, not twice
        kept = [(k, t) for r, k, t in found if t > end and r not in own]
        self.times = np.array([t for _, t in kept], dtype=np.float64)
        self.keys = np.array([k for k, _ in kept], dtype=object)

    def add(self, df: pd.DataFrame) -> None:
        epoch, keys = self.encoder.window_keys(df)
        later = np.isfinite(epoch) & (epoch > self.encoder._window_end)
        self.times, self.keys = np.r_[self.times, epoch[later]], np.r_[self.keys, keys[later]]
        if len(self.times):
            keep = self.times >= self.times.max() - float(self.encoder.window or 0.0)
            self.times, self.keys = self.times[keep], self.keys[keep]
        if self.catalog is not None and later.any():
            digests = _digests(df.loc[later])
            latest = float(np.max(epoch[later]))
            self.catalog.add_window_records(
                self.name, list(zip(digests, [str(k) for k in keys[later]], epoch[later].tolist(), strict=True)),
                before=latest - float(self.encoder.window or 0.0))


def _digests(df: pd.DataFrame) -> list[str]:
    """Each record's identity in the kept window: sha256 of its values by column name."""
    return [hashlib.sha256(json.dumps(r, sort_keys=True, default=str).encode()).hexdigest()
            for r in df.to_dict(orient="records")]
