"""Which text columns hold dates, and how one of their values is read.

One set of rules serves schema inference, training features and the served request validator, so
a value a client sends is read exactly as the same value was read in the training rows:

1. **ISO 8601 / RFC 3339** in any spelling Python or pandas read (``2024-03-05``,
   ``2024-03-05 08:55:00``, ``2024-03-05T08:55:00Z``, ``t``/``z`` in any case);
2. else the column's **one format**, when all its values share one non-ISO spelling
   (``03/05/2024 08:55`` is ``%m/%d/%Y %H:%M``; ``13/05/2024`` in the same column makes it
   ``%d/%m/%Y``), found at ingest and kept in the schema (``Schema.datetime_formats``);
3. else, in a column of mixed spellings, any spelling dateutil reads (``5 Mar 2024``) **provided
   the value carries its year** in four digits.

Rule 3's proviso is the point of this module: dateutil reads nearly anything. A merchant code
``m01`` is 00:00:01 on 1 January of year 1 and a month name ``may`` is 1 May of year 1, so columns
of codes and month names were inferred as dates, their feature destroyed (every code one
timestamp) and every served record refused. A column is a date column only when nearly all its
values read as dates in plausible years (:data:`YEARS`); month and weekday names, codes and bare
times stay categorical.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas on first use: ingest imports the constants (DATE_SHARE) without it
    import pandas as pd

__all__ = ["DATE_SHARE", "YEARS", "infer_datetime_format", "is_datetime_column", "parse_datetimes",
           "read_datetime"]

YEARS = (1900, 2200)
"""Years a date column's values fall in; a parse outside them (year 1) is a misreading."""
DATE_SHARE = 0.95
"""Share of a column's values that must read as dates for the column to be a date column."""
_GUESSED_FROM = 20  # values a format is guessed from (each month-first, then day-first)


# ---- one value (the server) ----------------------------------------------------------------------
def read_datetime(value: str, fmt: str | None = None) -> dt.datetime | None:
    """``value`` as a datetime (aware when it names an offset), or None when the rules above do not
    read it or an aware time lies outside years 1-9999 once in UTC, as the model reads it
    (``0001-01-01T02:00:01+02:01``: the server's conversion raised OverflowError, an HTTP 500 the schema
    fuzzer found; training reads it as no date, ``parse_datetimes``). ``fmt`` is the column's format from
    the schema (None: a column of mixed spellings)."""
    import pandas as pd

    text = value.strip()
    t = _python_iso(text)
    if t is None and fmt is not None:
        try:
            t = dt.datetime.strptime(text, fmt)
        except ValueError:
            pass
    if t is None:  # pandas' ISO reader also takes ``2024-03``; it costs 40 µs, so it comes late
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        t = None if pd.isna(parsed) else parsed.to_pydatetime()
    if t is None and fmt is None:
        t = _dated(text)
    if t is not None and t.tzinfo is not None:
        try:
            t.astimezone(dt.timezone.utc)
        except OverflowError:
            return None
    return t


def _python_iso(text: str) -> dt.datetime | None:
    if text[-1:] in ("z", "Z"):  # RFC 3339's Z in either case (Python 3.10 reads neither)
        text = text[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _dated(text: str) -> dt.datetime | None:
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": each value is read on its own
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    if pd.isna(parsed) or f"{parsed.year:04d}" not in text:
        return None
    return parsed.to_pydatetime()


# ---- a column (training) -------------------------------------------------------------------------
def parse_datetimes(values: pd.Series, fmt: str | None = None) -> pd.Series:
    """A column as naive UTC ``datetime64[us]`` (NaT where :func:`read_datetime` reads nothing, and where a
    time lies outside years 1-9999 once in UTC, as the server refuses it: ``0001-01-01T02:00:01+02:01`` is
    year 0 there, which NumPy holds and Python's datetime cannot, and the profile's and drift's time spans
    raised on it).

    Each distinct value is read once, by the same rules and readers as :func:`read_datetime` (the
    column's format by pandas' vectorised port of ``strptime``, which reads as Python's does; the
    order differs, which matters nowhere since two readers that both read a value agree on it), so
    a column of a million timestamps costs what its distinct values cost."""
    import pandas as pd

    present = values.notna().to_numpy()
    codes, uniq = pd.factorize(values[present].astype(str).str.strip().to_numpy(dtype=object))
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[us]")
    out[present] = _parse_unique(np.asarray(uniq, dtype=object), fmt)[codes]
    out[(out < _FIRST) | (out > _LAST)] = np.datetime64("NaT")
    return pd.Series(out, index=values.index)


_FIRST, _LAST = np.datetime64("0001-01-01T00:00:00", "us"), np.datetime64("9999-12-31T23:59:59.999999", "us")


def _parse_unique(uniq: np.ndarray, fmt: str | None) -> np.ndarray:
    if fmt is not None:  # the column's format first: nearly every value is in it
        out = _read(uniq, fmt)
        todo = np.flatnonzero(np.isnat(out))
        out[todo] = _iso_unique(uniq[todo])
        return out
    out = _iso_unique(uniq)
    todo = np.flatnonzero(np.isnat(out))
    if len(todo):
        out[todo] = _read(uniq[todo], "mixed")
    return out


def _read(uniq: np.ndarray, fmt: str) -> np.ndarray:
    """pandas' reader in ``fmt`` (``"mixed"``: dateutil's guess, kept where the value carries its year)."""
    import pandas as pd

    text = pd.Series(uniq, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = pd.to_datetime(text, errors="coerce", format=fmt, utc=True)
    if fmt == "mixed":
        years = read.dt.year.to_numpy()
        carried = [pd.notna(y) and f"{int(y):04d}" in v for y, v in zip(years, text, strict=True)]
        read = read.where(np.asarray(carried, dtype=bool))
    return _utc(read)


def _iso_unique(uniq: np.ndarray) -> np.ndarray:
    """Both ISO 8601 readers over distinct values: pandas' (vectorised), then Python's for what
    pandas refuses (a lowercase t or z, ``20240305``)."""
    import pandas as pd

    out = np.full(len(uniq), np.datetime64("NaT"), dtype="datetime64[us]")
    if not len(uniq):
        return out
    out[:] = _utc(pd.to_datetime(pd.Series(uniq), errors="coerce", format="ISO8601", utc=True))
    todo = np.flatnonzero(np.isnat(out))
    # an ISO 8601 value starts with its year: the others (03/05/2024) skip a raised ValueError each
    todo = todo[pd.Series(uniq[todo], dtype=object).str.match(r"\s*\d{4}").fillna(False).to_numpy(dtype=bool)]
    for i in todo:
        t = _python_iso(str(uniq[i]))
        if t is not None:
            out[i] = _naive_utc(t)
    return out


def _utc(s: pd.Series) -> np.ndarray:
    return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]", copy=True)


def _naive_utc(t: dt.datetime) -> np.datetime64:
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return np.datetime64(t, "us")


# ---- inference (ingest) --------------------------------------------------------------------------
def infer_datetime_format(values: pd.Series) -> str | None:
    """The one ``strptime`` format every non-ISO value of the column is written in, or None (all
    ISO 8601, or mixed spellings). Month-first is tried before day-first, so ``03/05/2024`` reads
    as pandas and dateutil read it unless the column also holds ``13/05/2024``."""
    import pandas as pd

    uniq = pd.unique(values.dropna().astype(str).str.strip().to_numpy(dtype=object))
    uniq = uniq[uniq != ""]
    rest = pd.Series(uniq[np.isnat(_iso_unique(uniq))])
    if rest.empty:
        return None
    for fmt in _candidates(rest.head(_GUESSED_FROM)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if pd.to_datetime(rest, errors="coerce", format=fmt).notna().all():
                return fmt
    return None


def _candidates(sample: Iterable[str]) -> list[str]:
    """Formats guessed from ``sample`` that carry a four-digit year and that no ISO reader could
    read otherwise (``%Y-%d-%m`` would turn ISO's 5 March into 3 May)."""
    try:  # public from pandas 2.2
        from pandas.tseries.api import guess_datetime_format
    except ImportError:  # pragma: no cover - pandas 2.1
        from pandas._libs.tslibs.parsing import guess_datetime_format

    out: list[str] = []
    for dayfirst in (False, True):
        for v in sample:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fmt = guess_datetime_format(v, dayfirst=dayfirst)
            if fmt and "%Y" in fmt and not fmt.startswith("%Y-%d") and fmt not in out:
                out.append(fmt)
    return out


def is_datetime_column(values: pd.Series, fmt: str | None = None) -> bool:
    """Nearly all values (:data:`DATE_SHARE`) read as dates in plausible years (:data:`YEARS`)."""
    values = values.dropna()
    if values.empty:
        return False
    parsed = parse_datetimes(values, fmt if fmt is not None else infer_datetime_format(values))
    years = parsed.dt.year
    return bool((years.between(*YEARS)).mean() >= DATE_SHARE)
