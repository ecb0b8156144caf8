"""``modelloop predict`` on images: a folder of image files, or a table of image paths (or base64 images).

The family's ``predict_frames`` hook of :func:`modelloop.serving.batch.predict_file`: it yields output
frames that the generic writer writes (temp file, renamed at the end). Each file is decoded and scored as
the server would (the served runtime's graph and decoding, with its pixel cap), and a file that cannot
be read or decoded is one row with its ``error`` (the message the API would give) and no answer: one
bad file among thousands does not stop the run. Images scored here are not kept for retraining (only
the server keeps what it was sent).

* a folder: every visible file below it, in path order; the output's first column is ``path``
  (relative to the folder);
* a table (CSV, TSV, Parquet, JSONL): its columns are kept; the images are its ``image`` column
  (base64) when it has one, else the files its path column names (the column whose values end in an
  image suffix, or one named like ``path``/``file``), relative to the table's folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.images import IMAGE_COLUMN, PATH_COLUMN, BadImage, decode_base64, path_column, visible_files
from ...errors import DataError
from ...serving.batch import given_columns
from .serve import ImageRequestValidator

__all__ = ["ERROR_COLUMN", "predict_frames"]

ERROR_COLUMN = "error"
_TABLES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


def predict_frames(runtime: Any, src: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, list[str]]]:
    """(output frame, columns the model added) per chunk of ``chunk_rows`` images of ``src``."""
    frame, read = _inputs(src)
    validator = ImageRequestValidator(runtime.validator.base, runtime.validator.image_size,
                                      runtime.validator.max_pixels)  # keeps nothing: not served traffic
    for start in range(0, len(frame), max(1, chunk_rows)):
        part = frame.iloc[start:start + chunk_rows].reset_index(drop=True)
        yield _scored(runtime, validator, part, [read(i) for i in range(start, start + len(part))])


def _inputs(src: Path) -> tuple[pd.DataFrame, Callable[[int], Callable[[], bytes]]]:
    """The input table and, per row, how to get the image's bytes."""
    if src.is_dir():
        files = visible_files(src)
        if not files:
            raise DataError(f"--data: {src} holds no file; point it at a folder of images or a table of paths")
        frame = pd.DataFrame({PATH_COLUMN: [str(f.relative_to(src)) for f in files]})
        return frame, lambda i: files[i].read_bytes
    if src.suffix.lower() not in _TABLES:
        raise DataError(f"--data: {src.name}: an image model scores a folder of images or a table "
                        f"({', '.join(_TABLES)}) of image paths or base64 images")
    from ...data.sources import read_table

    frame, _ = read_table(str(src), root=Path.cwd())
    if IMAGE_COLUMN in frame.columns:
        texts = frame[IMAGE_COLUMN].tolist()
        return frame, lambda i: (lambda: decode_base64(str(texts[i])))
    column = path_column(frame, "", f"--data: {src.name}")
    paths = frame[column].tolist()
    return frame, lambda i: (src.parent / str(paths[i])).read_bytes


def _scored(runtime: Any, validator: ImageRequestValidator, part: pd.DataFrame,
            readers: list[Callable[[], bytes]]) -> tuple[pd.DataFrame, list[str]]:
    records: list[dict[str, Any]] = []
    ok: list[int] = []
    errors: list[str | None] = []
    for i, read in enumerate(readers):
        try:
            records.append(validator.record(read()))
            ok.append(i)
            errors.append(None)
        except BadImage as exc:  # not an image, truncated, too many pixels, not base64
            errors.append(str(exc))
        except OSError as exc:  # a path that is missing or unreadable
            errors.append(f"cannot read the file: {exc.strerror or exc}")
    scores = runtime.score_records(records)[0] if records else np.zeros((0, len(runtime.head.classes or [])))
    columns = runtime.head.columns(np.asarray(scores))
    out = given_columns(part, [*columns, ERROR_COLUMN]).copy()
    for name, values in columns.items():
        full = pd.Series([None] * len(part), dtype=object if values.dtype == object else np.float64)
        full.iloc[ok] = values
        out[name] = full
    out[ERROR_COLUMN] = pd.Series(errors, dtype=object)
    return out, [*columns, ERROR_COLUMN]
