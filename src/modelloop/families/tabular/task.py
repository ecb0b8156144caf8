"""Which task a target column asks for, when ``modelloop.yaml`` does not say: the tabular family's
inference (it serves a project whose ``task:`` is left out, ``families.INFERRED_TASKS_FAMILY``).

The rules are AutoGluon's (``infer_problem_type``): two distinct values, text or booleans make a
classification; floats that are not whole numbers, or numbers with many distinct values (more than
10 % of the rows, 5 % past 1,000 rows, or more than 1,000 values) make a regression; a few distinct
whole numbers (ratings, codes) make a classification. Guessing a classifier for a continuous target
once spent the search on a 400-class model and crashed evaluation; guessing a regressor for codes
would predict 2.4 for class 2 or 3, so whole numbers with few values stay classes.

A table whose features are one free-text column (and at most ``TEXT_TABLE_MAX_OTHER`` others: a language,
a source) with a class target is a text classification: a tabular model drops free text, so reviews and
their sentiment trained as a table came out at chance, answering one class for every row.

``column_task`` is the profile's quicker reading of a target it profiles without a task (from the
column's Polars type, kind and distinct count). The data layer asks for both through the family
(``data/task.py``, ``data/quality.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...data.task import TaskInference
from ...errors import cap_list

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["column_task", "infer_source_task", "infer_task", "interactions_warning", "ordinal_warning",
           "padded_classes_warning", "text_warning"]

MULTICLASS_UPPER_LIMIT = 1000   # more distinct numbers than this: a regression, whatever the rows
LARGE_DATA_ROWS = 1000          # past this many rows the share of distinct values must be smaller
GENERATION_MIN_ROWS = 20       # a text target with at least this many values ...
GENERATION_DISTINCT_SHARE = 0.5  # ... at least this share of them distinct: answers to write, not classes
TEXT_TABLE_MAX_OTHER = 3       # other feature columns beside one text column that still make a table of texts
FEW_VALUES_SHARE = 0.1          # at most this share of distinct values: classes (numbers)
FEW_VALUES_SHARE_LARGE = 0.05


def infer_task(y: pd.Series | pl.Series, target: str, kinds: Mapping[str, str] | None = None) -> TaskInference:
    """``classification`` or ``regression`` for the values of target column ``target``: a pandas Series,
    or a Polars one (ingest of a Parquet source reads its target without pandas), read alike; with the
    feature columns' ``kinds``, ``text_classification`` for a class target on a table of texts."""
    found = _target_task(y, target)
    if found.task != "classification" or not kinds:
        return found
    text = [c for c, k in kinds.items() if k == "text"]
    other = [c for c, k in kinds.items() if k not in ("text", "identifier")]
    if len(text) != 1 or len(other) > TEXT_TABLE_MAX_OTHER:
        return found
    if (answers := _free_text(y)) is not None:
        return TaskInference("text_generation", f"target '{target}' holds free text ({answers}) and the "
                                                f"features are the free text of '{text[0]}': a generative "
                                                f"model learns to write the one from the other")
    beside = f" beside {cap_list(other)}" if other else ""
    return TaskInference("text_classification", f"{found.reason}, and the features are the free text of "
                                                f"'{text[0]}'{beside}: a text classifier reads it, a "
                                                f"tabular model would drop it")


def _free_text(y: pd.Series | pl.Series) -> str | None:
    """How a target reads as answers to write rather than labels to choose: text, at least
    ``GENERATION_MIN_ROWS`` values, at least ``GENERATION_DISTINCT_SHARE`` of them distinct; None otherwise."""
    if hasattr(y, "dropna"):  # pandas
        import pandas as pd

        values = y.dropna()
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            return None
        distinct = int(values.nunique())
    else:
        import polars as pl

        values = y.drop_nulls()
        if values.dtype not in (pl.String, pl.Categorical):
            return None
        distinct = values.n_unique()
    rows = len(values)
    if rows < GENERATION_MIN_ROWS or distinct < GENERATION_DISTINCT_SHARE * rows:
        return None
    return f"{distinct} distinct values in {rows} rows"


SOURCE_PEEK_ROWS = 200  # rows of a table read to tell a table of image paths


def infer_source_task(path: Path) -> TaskInference | None:
    """``image_classification`` for what the image family reads (``data.images``): a folder or a zip whose
    files are mostly images, or a table with a column of image paths (more than half of its first
    ``SOURCE_PEEK_ROWS`` values end in an image suffix); None otherwise (a folder of .txt files is read as a
    table of texts and inferred as one). A folder of images read as a folder of texts and failed, and a
    table of paths trained a classifier of the path strings."""
    import zipfile

    from ...data.images import image_paths, mostly_images, visible_files

    if path.is_dir() or zipfile.is_zipfile(path):
        images, files = image_paths(visible_files(path) if path.is_dir()
                                    else [n for n in zipfile.ZipFile(path).namelist() if not n.endswith("/")])
        if not mostly_images(images, files):
            return None
        return TaskInference("image_classification", f"data.source {path.name}{'/' if path.is_dir() else ''} "
                                                     f"holds images ({images} of its {files} files)")
    column, share = _image_path_column(path)
    if column is None:
        return None
    return TaskInference("image_classification", f"column '{column}' of {path.name} holds image paths ({share})")


def _image_path_column(path: Path) -> tuple[str | None, str]:
    """The text column of a table file whose first values are mostly image paths, and how many were."""
    import polars as pl

    from ...data.images import image_paths, mostly_images

    from ...data.delimiters import file_dialect

    def csv() -> pl.DataFrame:
        return pl.read_csv(path, separator=file_dialect(path).delimiter, n_rows=SOURCE_PEEK_ROWS, infer_schema=False)

    readers = {".csv": csv, ".tsv": csv,
               ".jsonl": lambda: pl.read_ndjson(path, n_rows=SOURCE_PEEK_ROWS),
               ".ndjson": lambda: pl.read_ndjson(path, n_rows=SOURCE_PEEK_ROWS),
               ".parquet": lambda: pl.read_parquet(path, n_rows=SOURCE_PEEK_ROWS),
               ".pq": lambda: pl.read_parquet(path, n_rows=SOURCE_PEEK_ROWS)}
    read = readers.get(path.suffix.lower())
    if read is None:
        return None, ""
    try:
        head = read()
    except Exception:  # undecodable, malformed: ingest's own reader reports it in full
        return None, ""
    for name in head.columns:
        if head[name].dtype != pl.String:
            continue
        hits, total = image_paths(head[name].drop_nulls().to_list())
        if mostly_images(hits, total):
            return str(name), f"{hits} of the first {total} values"
    return None, ""


def _target_task(y: pd.Series | pl.Series, target: str) -> TaskInference:
    """The target's own reading (AutoGluon's rules, the module's docstring)."""
    import numpy as np

    if hasattr(y, "dropna"):  # pandas
        import pandas as pd

        y = y.replace([np.inf, -np.inf], np.nan).dropna()
        numbers = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
        floats, distinct = pd.api.types.is_float_dtype(y), int(y.nunique())
    else:  # Polars: integers with a gap stay integers (pandas' floats of them are whole numbers too)
        y = y.filter(y.is_finite()) if y.dtype.is_float() else y.drop_nulls()
        numbers, floats, distinct = y.dtype.is_integer() or y.dtype.is_float(), y.dtype.is_float(), y.n_unique()
    rows = len(y)
    what = f"target '{target}'"
    if rows == 0 or distinct <= 2:
        return TaskInference("classification", f"{what} holds {distinct} distinct value(s)")
    if not numbers:
        return TaskInference("classification", f"{what} holds text or booleans ({distinct} distinct values)")
    share = FEW_VALUES_SHARE_LARGE if rows > LARGE_DATA_ROWS else FEW_VALUES_SHARE
    few = distinct <= share * rows and distinct <= MULTICLASS_UPPER_LIMIT
    counted = f"{distinct} distinct values in {rows} rows"
    if not few:
        return TaskInference("regression", f"{what} holds numbers with many distinct values ({counted})")
    if floats and not np.array_equal(y.to_numpy(), np.round(y.to_numpy())):
        return TaskInference("regression", f"{what} holds fractional numbers ({counted})")
    return TaskInference("classification", f"{what} holds few distinct whole numbers ({counted}, at most "
                                           f"{share:.0%} of the rows)")


def column_task(dtype: Any, kind: str | None, distinct: int) -> str:
    """classification for categorical/boolean/text targets and integers with <= 20 values (``dtype``: Polars)."""
    import polars as pl

    if kind in ("categorical", "boolean") or not dtype.is_numeric() or dtype.is_(pl.Boolean):
        return "classification"
    return "classification" if dtype.is_integer() and distinct <= 20 else "regression"


ORDINAL_MIN_LEVELS = 4  # fewer evenly spaced numbers read as codes as often as grades


def ordinal_warning(y: pd.Series, target: str) -> str | None:
    """A suggestion to train a regression when a multiclass target's labels are ordered numbers: at least
    ``ORDINAL_MIN_LEVELS`` whole numbers, evenly spaced (a rating 3..9, a grade 1..5). As classes their
    order is lost: predicting 4 for a 9 costs as much as 8 for a 9, and a level with a handful of rows
    is nearly never predicted. None when the labels are not such numbers."""
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(pd.Series(y).dropna(), errors="coerce")
    if values.isna().any() or pd.api.types.is_bool_dtype(y):
        return None
    levels = np.unique(values.to_numpy(dtype=float))
    if len(levels) < ORDINAL_MIN_LEVELS or not np.array_equal(levels, np.round(levels)):
        return None
    steps = np.diff(levels)
    if not np.allclose(steps, steps[0]):
        return None
    picked = levels if len(levels) <= 5 else [*levels[:3], None, levels[-1]]
    shown = ", ".join("..." if v is None else f"{v:g}" for v in picked)
    return (f"target '{target}' holds {len(levels)} evenly spaced numbers ({shown}): they are "
            "trained as unordered classes; if their order matters (a rating, a grade), set `task: regression` "
            "in modelloop.yaml and round its predictions")


def padded_classes_warning(y: pd.Series, target: str) -> str | None:
    """A classification target whose labels differ only in surrounding spaces ('yes' and 'yes ', as a
    spreadsheet leaves them): trained as classes apart, each with part of its rows, though the served labels,
    feedback and evaluation read them as one text. The profile names them too (``spelling_variants``), in a
    report a user running ``modelloop run`` may never open. None when the labels have no such pair."""
    import pandas as pd

    from ..heads import label_text

    counts = pd.Series(y).dropna().value_counts()
    by_text: dict[str, list[Any]] = {}
    for label in counts.index:
        by_text.setdefault(label_text(label), []).append(label)
    padded = [labels for labels in by_text.values() if len(labels) > 1]
    if not padded:
        return None
    shown = "; ".join(" and ".join(f"{v!r} ({counts[v]} rows)" for v in labels) for labels in padded[:3])
    return (f"target '{target}' holds labels that differ only in surrounding spaces ({shown}): the model learns "
            f"them as separate classes; the clean rule {{action: normalize_text, columns: [{target}], strip: true}} "
            f"(under clean.rules) merges them")


def text_warning(columns: Mapping[str, str], roles: set[str | None]) -> str | None:
    """What a tabular model leaves out of a table with free-text ``columns`` (name -> kind; ``roles``: the
    target and id): their words never reach it, which a user reading only the score would not know."""
    text = [c for c, k in columns.items() if k == "text" and c not in roles]
    if not text:
        return None
    return (f"{cap_list(repr(c) for c in text)} hold{'s' if len(text) == 1 else ''} free text, which a tabular "
            f"model does not read; to train on it, set task: text_classification and data.text: {text[0]} "
            f"(a text classifier reads one text column), or data.columns: {{{text[0]}: categorical}} to use "
            f"its values as categories")


_USER = re.compile(r"^(user|customer|client|member|buyer|visitor|reader|viewer|listener)[ _-]?(id)?$", re.IGNORECASE)
_ITEM = re.compile(r"^(item|product|movie|film|book|song|track|article|sku|video|course|listing)[ _-]?(id)?$",
                   re.IGNORECASE)
INTERACTIONS_MAX_OTHER = 2  # other features beside a user and an item column that still make an interaction log


def interactions_warning(columns: Mapping[str, str], roles: set[str | None], target: str) -> str | None:
    """A table of who-rated-what (a user column, an item column, at most ``INTERACTIONS_MAX_OTHER`` others)
    trained as a table: its ids are numbers or codes to a tabular model, which learns little from them
    (users' ratings of items trained as classes came out at chance); a recommender is what reads them."""
    features = [c for c in columns if c not in roles]
    users = [c for c in features if _USER.match(str(c))]
    items = [c for c in features if _ITEM.match(str(c))]
    if not users or not items or len(features) - 2 > INTERACTIONS_MAX_OTHER:
        return None
    return (f"the features look like interactions ({users[0]} x {items[0]}): a tabular model reads the ids as "
            f"numbers or categories; to recommend items to users, set task: recommendation with "
            f"data.user: {users[0]}, data.item: {items[0]} and data.rating: {target} (no data.rating for clicks or "
            f"purchases)")
