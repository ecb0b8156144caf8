"""Readers: CSV (any common encoding), Parquet, JSONL and SQL queries, plus schema inference.

Everything a reader can get wrong is reported as a DataError that names the file, the line or the
column, and what to do about it; nothing is written until a read has fully succeeded.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast


import numpy as np
import polars as pl

from ..errors import ConfigError, DataError, shown_url
from ._tables import is_stringy, pandas_dtype
from .delimiters import EXCEL_ERRORS, csv_header, file_dialect
from .encoding import detect_encoding, file_encoding, undecodable, where_undecodable
from .schema import Schema
from .source_url import file_kind, is_sql_source  # here too: data.sources.is_sql_source is public

if TYPE_CHECKING:  # pandas on first use: a Parquet source's schema is inferred with Polars
    import pandas as pd

__all__ = ["ReadReport", "check_types", "detect_encoding", "file_kind", "infer_schema", "is_sql_source",
           "read_excel", "read_table"]

_BOOL_STRINGS = {"true", "false", "yes", "no", "t", "f", "y", "n"}


class ReadReport(dict):
    """What a read noticed: encoding used, malformed lines skipped (with line numbers), coercions."""


def _read_csv(path: Path, encoding: str, on_bad_lines: str, report: ReadReport, delimiter: str = "auto",
              decimal: str = "auto") -> pd.DataFrame:
    import pandas as pd

    detected, encoding = encoding == "auto", file_encoding(path, encoding)
    dialect = file_dialect(path, encoding, delimiter, decimal)  # as `predict` reads it
    report.update(encoding=encoding, delimiter=dialect.delimiter, decimal=dialect.decimal)
    codes = _code_columns(path, encoding, dialect.delimiter)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = pd.read_csv(path, encoding=encoding, low_memory=False, sep=dialect.delimiter,
                             decimal=dialect.decimal, na_values=EXCEL_ERRORS, dtype=dict.fromkeys(codes, str) or None,
                             on_bad_lines="warn" if on_bad_lines == "skip" else "error")
    except UnicodeDecodeError as exc:
        raise DataError(undecodable(path, encoding, exc, detected=detected, force="data.encoding")) from None
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        where = f" line {m.group(2)}: expected {m.group(1)} fields, saw {m.group(3)}" if m else f" {exc}"
        raise DataError(f"{path}:{where}; fix the row or set data.on_bad_lines: skip") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty; expected a header row and data rows") from None
    bad = [int(n) for w in caught for n in re.findall(r"Skipping line (\d+)", str(w.message))]
    report["skipped_lines"] = bad
    if repeated := _repeated_names(csv_header(path, encoding, dialect.delimiter, errors="replace"), df.columns):
        report["repeated_columns"] = repeated
    return df


def _repeated_names(header: list[str], columns: Any) -> dict[str, list[str]]:
    """A name the header gives more than one column, with the names pandas gave them (``a``, ``a.1``): they
    are read apart under those names, which a user who wrote ``a`` twice should be told."""
    if len(header) != len(columns):
        return {}
    named: dict[str, list[str]] = {}
    for name, read in zip(header, columns, strict=True):
        if name.strip():
            named.setdefault(name.strip(), []).append(str(read))
    return {name: reads for name, reads in named.items() if len(reads) > 1}


CODE_SAMPLE_ROWS = 10_000  # rows a CSV's columns of codes with leading zeros are found in
_DIGITS = r"^\s*[0-9]+\s*$"
_LEADING_ZERO = r"^\s*0[0-9]"


def is_code_column(values: Any) -> bool:
    """Whether text ``values`` (pandas or Polars) are codes written with digits: every present value digits
    only, at least one with a leading zero (zip codes 00782, accounts 000123, products 0042). As numbers
    their zeros were lost: 00782 was trained as 782, a client sending the code as written got the answer for
    an unseen category, and a column of such codes was numeric. They are categories or identifiers."""
    if isinstance(values, pl.Series):
        present = values.drop_nulls().cast(pl.String)
        return (not present.is_empty() and bool(present.str.contains(_DIGITS).all())
                and bool(present.str.contains(_LEADING_ZERO).any()))
    present = values.dropna().astype(str)
    return (not present.empty and bool(present.str.match(_DIGITS).all())
            and bool(present.str.match(_LEADING_ZERO).any()))


def _code_columns(path: Path, encoding: str, delimiter: str) -> list[str]:
    """The columns of a CSV whose first ``CODE_SAMPLE_ROWS`` rows hold codes with leading zeros
    (``is_code_column``), to be read as text; none where those rows cannot be read (the full read reports
    why). A column whose first leading zero comes later is read as numbers."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = pd.read_csv(path, encoding=encoding, sep=delimiter, nrows=CODE_SAMPLE_ROWS, dtype=str,
                               na_values=EXCEL_ERRORS, on_bad_lines="skip")
    except (ValueError, OSError, UnicodeDecodeError):
        return []
    return [c for c in head.columns if is_code_column(head[c])]


def _read_sql(source: str, query: str | None) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy as sa

    if not query:
        raise ConfigError(f"data.query: a SQL source ({shown_url(source)}) needs a query, got null")
    try:
        engine = sa.create_engine(source)
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(query), conn)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = getattr(exc, "orig", None) or exc.__cause__ or exc
        msg = str(getattr(cause, "orig", None) or cause).splitlines()[0]
        raise DataError(f"data.query failed on {shown_url(source)}: {shown_url(msg)}") from None


def read_table(source: str, *, root: Path = Path("."), fmt: str = "auto", query: str | None = None,
               encoding: str = "auto", on_bad_lines: str = "error", delimiter: str = "auto",
               decimal: str = "auto", sheet: str | None = None) -> tuple[pd.DataFrame, ReadReport]:
    """Read one source into a DataFrame; the report says how (a CSV's encoding, delimiter and decimal mark,
    skipped lines; an Excel workbook's sheet)."""
    report = ReadReport(source=shown_url(source))  # kept in the catalog and shown: no password
    if fmt == "sql" or is_sql_source(source):
        df = _read_sql(source, query)
    else:
        path = Path(source) if Path(source).is_absolute() else root / source
        if not path.exists():
            raise DataError(f"data.source: file not found: {path}")
        if path.is_dir():
            from .text_folder import read_text_folder

            df = read_text_folder(path, encoding=encoding, report=report)
            df.columns = [str(c).strip() for c in df.columns]
            return df, report
        if path.is_file() and path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty; expected a header row and data rows")
        kind = file_kind(path, fmt)
        if kind is None:
            old = " (an Excel 97-2003 workbook: save it as .xlsx or CSV)" if path.suffix.lower() == ".xls" else ""
            raise DataError(f"{path}: unknown file type '{path.suffix}'{old}; allowed: .csv, .parquet, .jsonl, "
                            f".xlsx (or set data.format)")
        if kind == "excel":
            df = read_excel(path, sheet, report)
        else:
            df = _read_file(path, kind, encoding, on_bad_lines, report, delimiter, decimal)
    if df.shape[1] == 0 or len(df) == 0:
        raise DataError(f"{source}: no data rows; expected a header and at least one row")
    df.columns = [str(c).strip() for c in df.columns]
    # Excel leaves empty columns without a header after a table it saved (a trailing ';;' on each line): pandas
    # named them 'Unnamed: 3', they became features, and every client had to send "Unnamed: 3": null
    empty = [c for c in df.columns if c.startswith("Unnamed: ") and df[c].isna().all()]
    if empty:
        df = df.drop(columns=empty)
        report["empty_columns_dropped"] = empty
    return df, report


def read_excel(path: Path, sheet: str | None, report: ReadReport | None = None, *, what: str = "data.sheet",
               dtype: Any = None, rows: int | None = None) -> pd.DataFrame:
    """An Excel workbook's sheet (``sheet``; None: the first) as a frame: numbers, dates and text as the cells
    hold them (openpyxl; a formula as its value Excel last saved), its first ``rows`` only when given (0: the
    header). A file that is no workbook, or a sheet it does not have, is a DataError naming the sheets it has
    (``what``: the setting that names the sheet)."""
    import zipfile

    import pandas as pd

    missing: list[str] | None = None
    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            names = [str(n) for n in book.sheet_names]
            chosen = sheet if sheet is not None else names[0]
            if chosen in names:
                df = book.parse(chosen, dtype=dtype, nrows=rows, na_values=EXCEL_ERRORS)
            else:
                missing = names
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a valid Excel workbook (.xlsx) ({first}); save it from Excel again, or as "
                        f"CSV") from None
    if missing is not None:
        raise DataError(f"{what}: {path.name} has no sheet {sheet!r}; its sheets: {', '.join(map(repr, missing))}")
    if report is not None:
        report["sheet"] = chosen
    return df


def _read_file(path: Path, kind: str, encoding: str, on_bad_lines: str, report: ReadReport, delimiter: str = "auto",
               decimal: str = "auto") -> pd.DataFrame:
    import pandas as pd

    if kind == "csv":
        return _read_csv(path, encoding, on_bad_lines, report, delimiter, decimal)
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True, encoding="utf-8-sig" if encoding == "auto" else encoding)
    except UnicodeDecodeError as exc:
        enc = "utf-8" if encoding == "auto" else encoding  # utf-8-sig: UTF-8 with or without a BOM
        raise DataError(f"{path}: cannot be decoded as {enc} ({where_undecodable(path, enc, exc)}); "
                        f"JSON Lines files are UTF-8 (or set data.encoding)") from None
    except (ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a valid {kind} file ({first})") from None


# ---- schema inference ---------------------------------------------------------------------------
# A Polars column (ingest of a Parquet source) is judged by Polars where its kind is certain without
# pandas (``_polars_kind``): the same rules, so that such an ingest never imports pandas (42 MiB of its
# peak). Where Polars cannot settle a rule exactly (a share of numbers near the bar, text that might be
# dates), the column goes to the pandas rules below, as every column did before.
_BOOL_DTYPES = ("bool", "object")  # pandas' dtype of a Polars boolean column without / with a gap
_NUMBER = r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"  # text pd.to_numeric surely reads
# text read_numbers might read (what it reads is a subset): nothing but digits, signs, points,
# exponents, spaces, a dollar or percent sign ($1,234.50, 12.5%: numbers.CURRENCIES), or a signed
# inf/infinity/nan, or any non-ASCII character (not judged here)
_NOT_NUMBER = r"[^0-9+\-.,_eE\s\x1c-\x1f$%]"
_SPECIAL_NUMBER = r"(?i)^[\s\x1c-\x1f]*[-+]?(inf|infinity|nan)[\s\x1c-\x1f]*$"
_NON_ASCII = r"[^\x00-\x7f]"
_SPACES = r"[\s\x1c-\x1f]+"  # Python's \s (str.isspace): Rust's Unicode \s and the four separators
# Chinese and Japanese characters (Han, kana): scripts written without spaces between words, one Python
# and Rust regex alike (the characters themselves in the class, not escapes either engine reads its own way)
_UNSPACED = "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_PLAUSIBLE_YEAR = r"(?:1[89]|2[0-2])[0-9]{2}"  # a year of YEARS, or one a time zone moves into them


def _looks_datetime(s: pd.Series) -> bool:
    """Values that carry a date (``data.dates``): codes (``m01``), month and weekday names and bare
    times stay categorical, though dateutil reads them as times in year 1 or in this year."""
    from .dates import DATE_SHARE, is_datetime_column

    sample = s.dropna().head(500).astype(str)
    if sample.empty or sample.str.fullmatch(r"[-+]?\d+(\.\d+)?").mean() > 0.5:
        return False
    # a value read as a date carries a four-digit year (every reader of ``data.dates`` reads it from the
    # text); without one in DATE_SHARE of the values the column cannot pass, and its readers are spared
    if sample.str.contains(r"\d{4}").mean() < DATE_SHARE:
        return False
    return is_datetime_column(sample)


def _date_prefilter(sample: pl.Series) -> bool | None:
    """``_looks_datetime`` of the first non-missing values ``sample`` (text), by Polars: False where it
    is False without reading dates, else None (the date readers decide). Its shares bound pandas': an
    ASCII digit is a digit to Python's ``\\d`` too, and a non-ASCII character is never ruled out (Python's
    and Rust's Unicode tables differ). A value read as a date in YEARS carries that year in its text (or
    one an offset moves into them: 1899, 2201), which is stricter than the four digits pandas' rule asks."""
    from .dates import DATE_SHARE

    if sample.is_empty() or _share(sample.str.contains(r"^[-+]?[0-9]+(\.[0-9]+)?$")) > 0.5:
        return False
    possible = sample.str.contains(_PLAUSIBLE_YEAR) | sample.str.contains(_NON_ASCII)
    return False if _share(possible) < DATE_SHARE else None


def _share(mask: pl.Series) -> float:
    """The share of true values of a boolean Series (with no missing value)."""
    return float(mask.sum()) / len(mask)


def _infer_kind(s: pd.Series) -> str:
    import pandas as pd

    non_null = s.dropna()
    n = max(len(non_null), 1)
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    if pd.api.types.is_numeric_dtype(s):
        is_int = pd.api.types.is_integer_dtype(s)
        if is_int and _identifier_name(s.name, n) and non_null.nunique() == n:
            return "identifier"
        return "numeric"
    text = non_null.astype(str)
    # The per-value rules read each distinct value once, weighted by its count: the same shares, and
    # a column of a few categories costs what its categories cost.
    counts = text.value_counts(sort=False)
    return _text_kind(pd.Series(counts.index, dtype=text.dtype), counts.to_numpy(), text.head(500), len(text))


def _identifier_name(name: Any, n: int) -> bool:
    """A column of more than 50 whole numbers named like an id (``id``, ``user_id``), or with no name at all:
    pandas reads a blank header as ``Unnamed: 0``, the row numbers R's ``write.csv`` and pandas'
    ``to_csv`` write by default. Row numbers are never a feature (a file sorted by its target would
    leak it through them)."""
    return n > 50 and re.search(r"(^|_)id$|^Unnamed: \d+$|^$", str(name), re.IGNORECASE) is not None


def _polars_kind(values: pl.Series) -> str | None:
    """``_infer_kind`` of a Polars column that is not text, by Polars, where it is certain without pandas;
    else None. pandas reads integers with a gap as floats (numeric, never an identifier) and booleans
    with one as objects (their text, "True" and "False", is boolean too)."""
    dtype, nulls = values.dtype, values.null_count()
    if dtype == pl.Boolean:
        return "boolean" if nulls < len(values) else None
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype in (pl.Float32, pl.Float64):
        return "numeric"
    if dtype.is_integer() and pandas_dtype(dtype, bool(nulls)) is not None:
        n = max(len(values) - nulls, 1)
        if not nulls and _identifier_name(values.name, n) and values.n_unique() == n:
            return "identifier"
        return "numeric"
    return None


def _counted_text_kind(values: pl.Series, allow_pandas: bool = True) -> str | None:
    """``_infer_kind`` of a whole Polars text column, its values counted by Polars: the rules read the
    distinct values (and the first 500), not a Python object per row (a million e-mail addresses held
    ~70 MiB of them, at the ingest's peak), for the same kind. The rules run in Polars; where they
    cannot settle the kind there, pandas' rules do (None instead when ``allow_pandas`` is false)."""
    text = values.drop_nulls().cast(pl.String)
    counts = text.value_counts(name="_n")
    distinct, weight = counts.get_column(values.name), counts.get_column("_n").cast(pl.Int64).to_numpy()
    kind = _polars_text_kind(distinct, weight, text.head(500), text.len())
    if kind is not None or not allow_pandas:
        return kind
    import pandas as pd

    return _text_kind(pd.Series(distinct.to_list(), dtype=object), weight,
                      pd.Series(text.head(500).to_list(), dtype=object), text.len())


def _polars_text_kind(distinct: pl.Series, weight: np.ndarray, head: pl.Series, present: int) -> str | None:
    """``_text_kind`` in Polars (text ``distinct`` and ``head``), or None where it is not certain there."""
    n = max(present, 1)
    if present > 0 and distinct.str.to_lowercase().is_in(list(_BOOL_STRINGS)).all():
        return "boolean"
    if present and not is_code_column(distinct):  # 00782: a code (``_text_kind``)
        surely = distinct.str.contains(_NUMBER).to_numpy()
        maybe = (surely | ~distinct.str.contains(_NOT_NUMBER).to_numpy()
                 | distinct.str.contains(_SPECIAL_NUMBER).to_numpy() | distinct.str.contains(_NON_ASCII).to_numpy())
        if weight[surely].sum() / present >= 0.9:
            return "numeric"
        if weight[maybe].sum() / present >= 0.9:
            return None  # near the bar: pd.to_numeric decides
    dated = _date_prefilter(head)
    if dated is None:
        return None
    uniq = len(distinct) / n

    def mean(per_value: pl.Series) -> float:
        return float((weight * per_value.to_numpy().astype(np.int64)).sum() / present) if present else 0.0

    words = mean(distinct.str.count_matches(_SPACES)) + 1 if present else 0
    return _kind_of_text(words, mean(distinct.str.len_chars()), uniq, n, mean(distinct.str.count_matches(_UNSPACED)))


def _text_kind(distinct: pd.Series, weight: np.ndarray, head: pd.Series, present: int) -> str:
    """The kind of a text column from its ``distinct`` values, their counts (``weight``), its first
    non-missing values (``head``, at least 500 of them where it has them) and its ``present`` values."""
    from .numbers import read_numbers

    n = max(present, 1)
    if distinct.str.lower().isin(_BOOL_STRINGS).all() and present > 0:
        return "boolean"
    coded = is_code_column(distinct)  # 00782: a code, neither a number nor a date
    if not coded and present and weight[read_numbers(distinct).notna().to_numpy()].sum() / present >= 0.9:
        return "numeric"  # a numeric column with a few stray strings: check_types reports them
    if not coded and _looks_datetime(head):
        return "datetime"
    uniq = len(distinct) / n

    def mean(per_value: pd.Series) -> float:
        return float((weight * per_value.to_numpy(dtype=np.int64)).sum() / present) if present else 0.0

    words = mean(distinct.str.count(r"\s+")) + 1 if present else 0
    return _kind_of_text(words, mean(distinct.str.len()), uniq, n, mean(distinct.str.count(_UNSPACED)))


UNSPACED_TEXT_CHARS = 6  # Chinese/Japanese characters a value holds on average to read as text: ~4 words


def _kind_of_text(words: float, length: float, uniq: float, n: int, unspaced: float = 0.0) -> str:
    """A text column that is neither booleans, numbers nor dates, by its mean number of ``words`` and
    ``length`` (per value), its share of distinct values ``uniq`` among ``n``, and its mean count of
    characters of scripts written without spaces (``unspaced``): a Chinese review (跑鞋退货了，外观不行。) is
    one "word" by its spaces and under 40 characters, and was read as an identifier (mostly distinct),
    so a Chinese sentiment table trained a tabular model with no features. Such a column is text from
    ``UNSPACED_TEXT_CHARS`` of those characters when mostly distinct; a category (电子产品) stays one."""
    if words >= 4 or (length > 40 and uniq > 0.5) or (unspaced >= UNSPACED_TEXT_CHARS and uniq > 0.5):
        return "text"
    if uniq > 0.9 and n > 50:
        return "identifier"
    return "categorical"


def _datetime_formats(df: pd.DataFrame, kinds: Mapping[str, str]) -> dict[str, str]:
    """The one format each text datetime column is written in, read from all its values (a sample
    could miss a ``13/05/2024`` that makes the column day-first)."""
    import pandas as pd

    from .dates import infer_datetime_format

    out: dict[str, str] = {}
    for c, kind in kinds.items():
        if kind == "datetime" and c in df and not pd.api.types.is_datetime64_any_dtype(df[c]):
            fmt = infer_datetime_format(df[c])
            if fmt is not None:
                out[c] = fmt
    return out


def infer_schema(df: pd.DataFrame | pl.DataFrame | pl.LazyFrame, *, target: str, id: str | None = None,
                 time: str | None = None, text: str | None = None, overrides: Mapping[str, str] | None = None,
                 drop: list[str] | tuple[str, ...] = (),
                 each: Callable[[str, str, pd.Series | pl.Series], None] | None = None) -> Schema:
    """Kinds per column; config overrides win, the id column is an identifier, dropped columns too.

    ``df`` may be a Polars frame, a lazy one read a column at a time, so that ingest infers the schema of
    a Parquet file without loading it (nor pandas, unless a column needs its rules: ``_polars_kind``).
    Kinds the config sets are not inferred, and a long text column is judged on a sample
    (``_kind_values``): the rules read every value, which took 12 s of a 1M-row ingest.
    ``each(name, kind, values)`` is called with every column (but those starting with ``_``), in order,
    while it is read: ingest checks and hashes it then, instead of reading the column again.
    """
    polars = isinstance(df, (pl.DataFrame, pl.LazyFrame))
    names = df.collect_schema().names() if polars else list(df.columns)
    overrides = dict(overrides or {})
    cols = [c for c in names if not c.startswith("_")]
    for name in [target, id, time, text, *overrides, *drop]:
        if name is not None and name not in names:
            close = ", ".join(cols[:30])
            raise DataError(f"column '{name}' named in the config is not in the data; columns: {close}")
    fixed = {**({id: "identifier"} if id else {}), **({text: "text"} if text else {}),
             **{c: "identifier" for c in drop}}
    kinds: dict[str, str] = {}
    dtypes: dict[str, str] = {}
    dates: dict[str, pd.Series] = {}  # text columns of dates: their format is read from every value
    for c in cols:
        values = df.select(c).collect().to_series() if isinstance(df, pl.LazyFrame) else df[c]
        kinds[c] = fixed.get(c) or overrides.get(c) or _column_kind(values)
        dtypes[c] = _pandas_dtype(values)
        if each is not None:
            each(c, kinds[c], values)
        if kinds[c] == "datetime" and isinstance(values, pl.Series) and values.dtype not in (pl.Date, pl.Datetime):
            dates[c] = values.to_pandas()  # text: its format is found below (a date or datetime has none)
    kinds.update(fixed)
    if not polars:
        formats = _datetime_formats(df, kinds)
    else:  # pandas only for text columns of dates (their formats are pandas' guesses)
        formats = _datetime_formats(_frame(dates), kinds) if dates else {}
    return Schema(columns=kinds, target=target, id=id, text=text, time=time, dtypes=dtypes,
                  datetime_formats=formats)


def _frame(columns: dict[str, pd.Series]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns)


_SAMPLE_ROWS = 20_000  # values of a long text column that the kind rules read
_HEAD_ROWS = 2_000  # a column's first values, always in the sample: _looks_datetime reads the first 500
_SHARE_SLACK = 0.05  # how far the sample's share of distinct values may lie from the column's


def _column_kind(values: pd.Series | pl.Series) -> str:
    """The inferred kind of a column: ``_infer_kind`` of what ``_kind_values`` reads of it; a Polars
    column by Polars where it can (``_polars_kind``), a text one read whole counted by Polars
    (``_counted_text_kind``)."""
    if isinstance(values, pl.Series) and is_stringy(values.dtype):
        kept = _text_sample(values)
        return cast(str, _counted_text_kind(kept if kept is not None else values))
    if isinstance(values, pl.Series):
        kind = _polars_kind(values)
        if kind is not None:
            return kind
    return _infer_kind(_kind_values(values))


def _text_sample(values: pl.Series) -> pl.Series | None:
    """``_kind_values`` of a long Polars text column, in Polars: the sample, or None to read it whole."""
    drawn = _sample_rows(values)
    if drawn is None:
        return None
    rows, share = drawn
    sample = values.gather(rows)
    present = sample.drop_nulls().cast(pl.String)
    return sample if abs(present.n_unique() / max(len(present), 1) - share) <= _SHARE_SLACK else None


def _kind_values(values: pd.Series | pl.Series, whole: bool = True) -> pd.Series | None:
    """What ``_infer_kind`` reads of a column: all of it, or a sample of a long text column (the
    rules' cost is per value) where a sample reads as the column does.

    Per-value shares (numbers, words, lengths) are estimated from at least ``_SAMPLE_ROWS`` values,
    within about 0.5 percentage points. The two column-wide facts a sample cannot estimate are kept:
    a column of few distinct values is sampled with every one of them (so "all values are ..." holds
    on the sample as on the column), and the sample is used only when its share of distinct values is
    within ``_SHARE_SLACK`` of the column's (few distinct values, or nearly all distinct); columns in
    between are read whole. The sample is drawn with a fixed seed: the same file, the same schema.
    """
    if isinstance(values, pl.Series):
        sample = _text_sample(values)
        if sample is not None:
            return sample.to_pandas()
        return values.to_pandas() if whole else None
    column = _to_polars(values)
    drawn = _sample_rows(column) if column is not None else None
    if drawn is not None:
        rows, share = drawn
        sample = values.iloc[rows]
        present = sample.dropna().astype(str)
        if abs(present.nunique() / max(len(present), 1) - share) <= _SHARE_SLACK:
            return sample
    return values if whole else None


def _sample_rows(s: pl.Series) -> tuple[np.ndarray, float] | None:
    """Rows of ``s`` to infer its kind from (in order) and the column's share of distinct values, or
    None to read it whole."""
    n, present = len(s), len(s) - s.null_count()
    if not is_stringy(s.dtype) or present <= 2 * _SAMPLE_ROWS:
        return None
    distinct = cast(int, s.approx_n_unique())  # HyperLogLog, within ~1%: ms where n_unique took 0.3 s
    share = min(distinct / present, 1.0)
    if share >= 1 - _SHARE_SLACK:
        size, every = _SAMPLE_ROWS, np.empty(0, dtype=np.int64)
    elif distinct <= _SHARE_SLACK * present / 4:
        size, every = max(_SAMPLE_ROWS, int(distinct / _SHARE_SLACK)), s.arg_unique().to_numpy()
    else:
        return None
    draw = int(size * n / present)  # rows holding about ``size`` values
    if draw >= n // 2:
        return None
    valid = s.is_not_null().to_numpy()
    head, first_null = np.flatnonzero(valid)[:_HEAD_ROWS], np.flatnonzero(~valid)[:1]
    drawn = np.random.default_rng(0).choice(n, draw, replace=False)
    return np.unique(np.concatenate([head, first_null, every, drawn])), share


def _to_polars(values: pd.Series) -> pl.Series | None:
    try:
        return pl.Series(values)
    except (TypeError, ValueError, pl.exceptions.PolarsError):  # mixed Python objects: read it whole
        return None


def _pandas_dtype(values: pd.Series | pl.Series) -> str:
    """The dtype pandas reads the column as (a gap turns integers into floats, so a null row is shown)."""
    if not isinstance(values, pl.Series):
        return str(values.dtype)
    known = pandas_dtype(values.dtype, bool(values.null_count()))
    if known is not None:
        return known
    rows = [0, *np.flatnonzero(values.is_null().to_numpy())[:1]] if len(values) else []
    return str(values.gather(rows).to_pandas().dtype)


def check_types(df: pd.DataFrame, schema: Schema, *, coerce: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Find numeric or date-time columns holding text in some rows that is not one: an error naming an
    example row, or (``coerce``) the value made missing. Numbers with thousands separators are numbers
    (:func:`.numbers.read_numbers`); a date is what training and the server read as one
    (:func:`.dates.parse_datetimes` in the column's format)."""
    import pandas as pd

    from .numbers import read_numbers

    report: dict[str, Any] = {}
    for c, kind in schema.columns.items():
        s = df[c]
        if kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(s):
            df, found = _check_dates(df, c, schema.datetime_format(c), coerce)
            report.update(found)
            continue
        if kind != "numeric" or pd.api.types.is_numeric_dtype(s):
            continue
        as_num = read_numbers(s)
        bad = as_num.isna() & s.notna() & (s.astype(str).str.strip() != "")
        if not bad.any():
            df = df.assign(**{c: as_num})
            continue
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        if not coerce:
            raise DataError(
                f"column '{c}' is numeric but {int(bad.sum())} row(s) hold text, e.g. row {pos + 1} "
                f"(file line {pos + 2}): {str(s.iloc[pos])!r}; fix the data, declare "
                f"data.columns.{c}: categorical, or set data.on_type_error: coerce")
        df = df.assign(**{c: as_num})
        schema.columns[c] = "numeric"
        report[c] = {"coerced_to_missing": int(bad.sum()), "example_row": pos + 1,
                     "example_value": str(s.iloc[pos])}
    return df, report


def _check_dates(df: pd.DataFrame, c: str, fmt: str | None, coerce: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``check_types`` of a date-time column kept as text: a value no reader reads as a date was kept
    as it was, read as missing by training, and refused by the server ("must be an ISO 8601
    date-time"), so the model could not serve its own training rows. Now it is an error naming the
    row, as text in a numeric column is, or (``coerce``) missing in the dataset too."""
    from .dates import parse_datetimes

    s = df[c]
    text = s.astype(str).str.strip()
    bad = (parse_datetimes(s, fmt).isna() & s.notna() & (text != "")).to_numpy()
    if not bad.any():
        return df, {}
    pos = int(np.flatnonzero(bad)[0])
    if not coerce:
        raise DataError(
            f"column '{c}' holds dates but {int(bad.sum())} row(s) hold text that is not one, e.g. row {pos + 1} "
            f"(file line {pos + 2}): {str(s.iloc[pos])!r}; fix the data, declare data.columns.{c}: categorical, "
            f"or set data.on_type_error: coerce")
    return df.assign(**{c: s.mask(bad)}), {c: {"coerced_to_missing": int(bad.sum()), "example_row": pos + 1,
                                                "example_value": str(s.iloc[pos])}}
