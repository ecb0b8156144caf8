"""Small helpers shared by the quality, cleaning, shift and integrate modules.

Every public function there accepts a pandas or a Polars frame; the work is done in Polars, and
cleaning hands back the flavour it was given so that callers on pandas stay on pandas.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache
from typing import Any, Iterable, Sequence

import polars as pl

from ..errors import ConfigError, DataError

BATCH_COLUMNS = 6  # columns read per query by table-wide passes: bounds the memory intermediates take

__all__ = [
    "BATCH_COLUMNS",
    "check_columns",
    "column_batches",
    "is_internal",
    "is_numeric",
    "is_stringy",
    "like_input",
    "pandas_dtype",
    "preview",
    "release_memory",
    "to_lazy",
    "to_polars",
    "user_columns",
    "worker_threads",
]


def to_polars(df: Any, what: str = "data") -> pl.DataFrame:
    """A Polars frame of ``df`` (pandas, Polars eager or lazy); float NaN becomes missing (null)."""
    if isinstance(df, pl.LazyFrame):
        df = df.collect()
    elif not isinstance(df, pl.DataFrame):
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is a dependency
            pd = None
        if pd is None or not isinstance(df, pd.DataFrame):
            raise DataError(f"{what}: expected a pandas or Polars DataFrame, got {type(df).__name__}")
        try:
            df = pl.from_pandas(df, nan_to_null=True)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"{what}: cannot convert the pandas frame to Polars ({exc})") from exc
    return _nan_to_null(df)


def to_lazy(df: Any, what: str = "data") -> pl.LazyFrame:
    """A lazy Polars view of ``df``: a Parquet path is scanned, a Polars frame is not copied.

    Float NaN becomes missing (null) inside the query, so each later ``collect`` reads only the
    columns it selects; pandas input is converted once, as by ``to_polars``.
    """
    if isinstance(df, (str, os.PathLike)):
        return _nan_to_null(pl.scan_parquet(os.fspath(df)))
    if isinstance(df, (pl.DataFrame, pl.LazyFrame)):
        return _nan_to_null(df.lazy())
    return to_polars(df, what).lazy()


def _nan_to_null(df: Any) -> Any:
    floats = [c for c, t in df.collect_schema().items() if t.is_float()]
    return df.with_columns(pl.col(floats).fill_nan(None)) if floats else df


def column_batches(schema: pl.Schema, names: Sequence[str]) -> list[list[str]]:
    """``names`` split for the per-column passes: up to ``BATCH_COLUMNS`` fixed-width columns per batch,
    each string-like (or nested) column in a batch of its own.

    A string column costs several times a number column (16-byte views plus the text, and a hash table
    as large when its values are mostly distinct), so two of them in one query double the peak.
    """
    batches: list[list[str]] = []
    fixed: list[str] = []
    for c in names:
        t = schema[c]
        if is_stringy(t) or t.is_nested() or t in (pl.Binary, pl.Object):
            batches.append([c])
        else:
            fixed.append(c)
            if len(fixed) == BATCH_COLUMNS:
                batches.append(fixed)
                fixed = []
    return batches + ([fixed] if fixed else [])


def pandas_dtype(dtype: pl.DataType, has_nulls: bool) -> str | None:
    """The name of the dtype pandas reads a Polars column of ``dtype`` as (``Series.to_pandas``), told
    without importing pandas: a gap turns integers into floats and booleans into objects. None for the
    types this does not know (nested, decimal, times of day, durations, fixed offsets): ask pandas then."""
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64):
        return "float64" if has_nulls else str(dtype).lower()
    if dtype in (pl.Float32, pl.Float64):
        return str(dtype).lower()
    if dtype == pl.Boolean:
        return "object" if has_nulls else "bool"
    if dtype == pl.String:
        return "str" if _pandas_major() >= 3 else "object"  # pandas 3 reads text as its ``str`` dtype
    if isinstance(dtype, pl.Categorical):
        return "category"
    if dtype == pl.Date:
        return "datetime64[ms]"
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return f"datetime64[{dtype.time_unit}]"
    if isinstance(dtype, pl.Datetime) and (dtype.time_zone == "UTC" or "/" in (dtype.time_zone or "")):
        return f"datetime64[{dtype.time_unit}, {dtype.time_zone}]"  # a zone's name, as pandas prints it
    return None


@cache
def _pandas_major() -> int:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("pandas").split(".")[0])
    except (PackageNotFoundError, ValueError):  # pragma: no cover - pandas is a dependency
        return 0


def like_input(out: pl.DataFrame, original: Any) -> Any:
    """``out`` as pandas when ``original`` was pandas, else as Polars."""
    if isinstance(original, (pl.DataFrame, pl.LazyFrame)):
        return out
    return out.to_pandas()


def is_internal(column: str) -> bool:
    """Columns starting with '_' (``_row_id``, ``_source``) are bookkeeping, not data."""
    return column.startswith("_")


def user_columns(df: pl.DataFrame) -> list[str]:
    return [c for c in df.columns if not is_internal(c)]


def check_columns(names: Iterable[str], available: Sequence[str], where: str) -> None:
    """ConfigError naming ``where`` and the first unknown column, listing the available ones."""
    have = set(available)
    missing = [n for n in names if n not in have]
    if missing:
        listed = ", ".join(str(c) for c in available[:40]) + (" ..." if len(available) > 40 else "")
        raise ConfigError(f"{where}: column '{missing[0]}' is not in the data; available columns: {listed}")


def is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() and dtype != pl.Boolean


def is_stringy(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum))


def preview(values: Iterable[Any], n: int = 3) -> str:
    """'a', 'b', 2.5 – a short list of example values for messages (text quoted, numbers not)."""
    out: list[str] = []
    for v in values:
        if len(out) == n:
            break
        if isinstance(v, bool) or v is None:
            out.append(str(v))
        elif isinstance(v, float):
            out.append(f"{v:.6g}")
        elif isinstance(v, int):
            out.append(str(v))
        else:
            text = str(v)
            out.append(repr(text[:40] + "…" if len(text) > 40 else text))
    return ", ".join(out)


def release_memory() -> None:
    """Hand the memory a pass over a large table freed back to the system before the next pass: pyarrow's
    pool and glibc's heap keep it otherwise, and the next pass's peak would sit on top of it."""
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def worker_threads(most: int = 2) -> int:
    """Threads for independent pieces of work that run without the GIL (a column's read and sorts, a
    fold's LightGBM fit): the cores this process may use, at most ``most`` (two: the pieces' memory adds
    up, and the machines this is tuned for have two cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, most))
