"""Batch prediction (``modelloop predict``): a file in, the same file with the model's answers added.

It runs the served object itself (:func:`~modelloop.serving.runtime.load_runtime`: the ONNX session the
API would use, the cleaning plan, the request validator), so an offline answer equals the online one.
Each chunk is turned into the JSON body a client would send, validated by the server's validator and
scored; the head of the model adds its columns (``label`` and ``proba_<class>``, or ``prediction``). The
input is read in chunks and the output written as it goes, to a temporary file renamed at the end: a
file larger than memory works, and an interrupted run leaves nothing half-written. MLflow users know
this as ``mlflow models predict``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.delimiters import EXCEL_ERRORS, Dialect, csv_header, file_dialect
from ..data.encoding import file_encoding, project_encoding, undecodable
from ..data.numbers import read_numbers
from ..errors import DataError
from ..workspace import Workspace

__all__ = ["FORMATS", "OUT_ENCODINGS", "ChunkMapper", "given_columns", "predict_file", "score_chunk"]

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".xlsx": "excel"}
EXCEL_ROWS = 1_048_576  # rows an Excel sheet holds, its header one of them
# a CSV output's encodings (``--out-encoding``): UTF-8 for programs (the default); UTF-8 with a BOM, which
# Excel needs to read UTF-8 (the default where the input CSV came from Excel: ``_out_encoding``); GBK and
# cp932 (Windows' Shift-JIS), what Excel on Chinese and Japanese Windows read and write
OUT_ENCODINGS = ("utf-8", "utf-8-sig", "gbk", "cp932")
_OUT_ALIASES = {"shift_jis": "cp932"}  # what Japanese Excel calls Shift-JIS is cp932, its superset
CHUNK_ROWS = 20_000

# Scores (offset, chunk) pairs, in order, into (scored chunk, added columns): in this process by default;
# ``serving.ray_predict`` fans them out to Ray workers (``modelloop predict --engine ray``).
ChunkMapper = Callable[[Any, Iterator[tuple[int, pd.DataFrame]]], Iterator[tuple[pd.DataFrame, list[str]]]]


def _format(path: Path, what: str) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        old = "; an Excel 97-2003 workbook: save it as .xlsx or CSV" if path.suffix.lower() == ".xls" else ""
        raise DataError(f"{what}: unknown file type '{path.suffix}' ({path}{old}); allowed: "
                        f"{', '.join(sorted(FORMATS))}")
    return kind


def _chunks(path: Path, kind: str, dtypes: dict[str, Any], rows: int, encoding: str = "auto",
            dialect: Dialect | None = None) -> Iterator[pd.DataFrame]:
    """The input in frames of ``rows`` rows; text-like columns stay text (``"007"`` is not 7). A CSV is
    read in ``encoding`` (the project's ``data.encoding``) as ingest reads it: detected when ``auto``
    (Excel in China saves GBK), else the one set; in ``dialect`` (default: detected, ``file_dialect``).
    JSON Lines are UTF-8."""
    if kind in ("csv", "jsonl"):
        enc = file_encoding(path, encoding) if kind == "csv" else "utf-8-sig"
        try:
            if kind == "csv":
                sep, decimal = dialect or file_dialect(path, encoding)
                yield from pd.read_csv(path, sep=sep, decimal=decimal, dtype=dtypes, chunksize=rows,
                                       keep_default_na=True, na_values=EXCEL_ERRORS, encoding=enc)
            else:
                yield from pd.read_json(path, lines=True, dtype=dtypes, chunksize=rows, encoding=enc)
        except UnicodeDecodeError as exc:  # a CSV's encoding was detected or set; a JSON Lines file is UTF-8
            csv_file = kind == "csv"
            why = undecodable(path, enc, exc, detected=csv_file and encoding == "auto",
                              force="data.encoding" if csv_file else None)
            raise DataError(f"--data: {why}") from None
    elif kind == "excel":  # a workbook is read whole (Excel's sheets are at most EXCEL_ROWS rows): its first sheet
        from ..data.sources import read_excel

        frame = read_excel(path, None, what="--data", dtype=dtypes)
        for start in range(0, len(frame), rows):
            yield frame.iloc[start:start + rows].reset_index(drop=True)
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()


def _blank_headers(path: Path, encoding: str, delimiter: str) -> dict[str, str]:
    """pandas' names for a CSV's blank header cells (``Unnamed: 0``: R's ``write.csv`` and pandas'
    ``to_csv`` leave the row-name column unnamed) mapped back to blank, so a table written from a CSV
    keeps its header as the user wrote it."""
    header = csv_header(path, file_encoding(path, encoding), delimiter, errors="replace")
    return {f"Unnamed: {i}": "" for i, name in enumerate(header) if name == ""}


def _out_encoding(src: Path, kind_out: str, asked: str | None, encoding: str = "auto") -> str | None:
    """A CSV output's encoding: ``asked`` (``--out-encoding``, one of ``OUT_ENCODINGS``), else UTF-8 with a
    BOM where the input CSV came from Excel, else UTF-8. None for another output (Parquet; JSON Lines are
    UTF-8). From Excel: the input began with a BOM (its "CSV UTF-8"), or was read (in ``encoding``, the
    project's, detected when ``auto``) in a code page (its plain "CSV": GBK on Chinese Windows, cp932 on
    Japanese, Windows-1252 on Western). Excel then opens the answers as it opened the input, and every
    character the model or the rows hold can be written; plain UTF-8 showed a Chinese team's Excel every
    Chinese cell garbled."""
    import codecs

    if asked is not None:
        try:
            name: str | None = codecs.lookup(asked).name
        except LookupError:
            name = None
        name = _OUT_ALIASES.get(name or "", name)
        if name not in OUT_ENCODINGS:
            raise DataError(f"--out-encoding: must be one of {', '.join(OUT_ENCODINGS)} (utf-8-sig: UTF-8 with "
                            f"the BOM Excel needs; gbk: Excel on Chinese Windows; cp932: Excel on Japanese "
                            f"Windows), got {asked!r}")
        if kind_out != "csv":
            raise DataError(f"--out-encoding: applies to a CSV output (.csv, .tsv); --out is {kind_out}")
        return name
    if kind_out != "csv":
        return None
    excel = False
    if src.is_file() and FORMATS.get(src.suffix.lower()) == "csv":
        with open(src, "rb") as fh:
            excel = fh.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
        try:
            excel = excel or codecs.lookup(file_encoding(src, encoding)).name not in ("utf-8", "utf-8-sig", "ascii")
        except LookupError:  # an unknown data.encoding: the read names it
            pass
    return "utf-8-sig" if excel else "utf-8"


def _out_dialect(given: Dialect | None, out: Path) -> Dialect:
    """A CSV answer's dialect: the input CSV's, so a file from Excel in Germany (semicolons, decimal commas)
    is answered as that Excel opens it, and Excel's tab-separated "Unicode Text" (``.txt``) as tab-separated
    text; a ``.tsv`` output's tab, a ``.csv`` output's comma where the input was tab-separated; else commas and
    decimal points. An answer separated by commas never writes a decimal comma."""
    suffix = out.suffix.lower()
    if suffix == ".tsv":
        delimiter = "\t"
    elif given is None or (suffix == ".csv" and given.delimiter == "\t"):
        delimiter = ","
    else:
        delimiter = given.delimiter
    return Dialect(delimiter, given.decimal if given is not None and delimiter != "," else ".")


def _unencodable(frame: pd.DataFrame, names: list[Any] | None, encoding: str, offset: int) -> str:
    """Which header name or cell (the first row, 1-based in the file's data rows) ``encoding`` cannot hold."""
    def fits(v: Any) -> bool:
        try:
            str(v).encode(encoding)
        except UnicodeEncodeError:
            return False
        return True

    fix = f"choose another --out-encoding ({', '.join(e for e in OUT_ENCODINGS if e != encoding)})"
    bad_name = next((n for n in names or [] if not fits(n)), None)
    if bad_name is not None:
        return f"--out-encoding {encoding}: the column name {bad_name!r} cannot be written in {encoding}; {fix}"
    first: tuple[int, str, Any] | None = None
    for col in frame.columns:
        values = frame[col]
        if values.dtype != object and not isinstance(values.dtype, pd.StringDtype):
            continue
        bad = values.map(lambda v: isinstance(v, str) and not fits(v)).to_numpy(dtype=bool)
        if bad.any() and (first is None or int(bad.argmax()) < first[0]):
            first = (int(bad.argmax()), str(col), values.iloc[int(bad.argmax())])
    if first is None:
        return f"--out-encoding {encoding}: a value of rows {offset + 1}-{offset + len(frame)} cannot be written; {fix}"
    return (f"--out-encoding {encoding}: row {offset + first[0] + 1}, {first[1]}: {first[2]!r} cannot be written "
            f"in {encoding}; {fix}")


def _excel_value(v: Any) -> Any:
    """A cell's value: a time as Excel holds one, without a zone (an aware one in UTC)."""
    if isinstance(v, pd.Timestamp):
        return (v.tz_convert(None) if v.tzinfo is not None else v).to_pydatetime()
    return v


class _Writer:
    """Appends frames to a temporary file next to ``path``; ``commit`` renames it into place.
    ``header`` renames columns in a CSV's header line (``_blank_headers``); ``encoding`` and ``dialect`` are a
    CSV's (``_out_encoding``, ``_out_dialect``). A value a CSV's encoding cannot hold is a DataError naming its
    row and column."""

    def __init__(self, path: Path, kind: str, header: dict[str, str] | None = None, encoding: str | None = None,
                 dialect: Dialect | None = None):
        self.path, self.kind, self.header, self.encoding = path, kind, header or {}, encoding or "utf-8"
        self.dialect = dialect or _out_dialect(None, path)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._parquet: Any = None
        self._book: Any = None  # an Excel output: a write-only workbook, its rows streamed in to ``_sheet``
        self._sheet: Any = None
        self._first = True
        self._rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "csv":
            names = [self.header.get(str(c), c) for c in frame.columns] if self._first else None
            try:  # utf-8-sig appended: Python writes the BOM only at the start of the file
                frame.to_csv(self.tmp, sep=self.dialect.delimiter, decimal=self.dialect.decimal, index=False,
                             header=names if names is not None else False,
                             mode="w" if self._first else "a", encoding=self.encoding)
            except UnicodeEncodeError:
                raise DataError(_unencodable(frame, names, self.encoding, self._rows)) from None
        elif self.kind == "jsonl":
            with open(self.tmp, "w" if self._first else "a", encoding="utf-8") as fh:
                # the text as written (评论, not \u8bc4\u8bba): the file is UTF-8, like the input it copies
                fh.write(frame.to_json(orient="records", lines=True, date_format="iso", force_ascii=False))
        elif self.kind == "excel":
            self._write_excel(frame)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        self._first = False
        self._rows += len(frame)

    def _write_excel(self, frame: pd.DataFrame) -> None:
        """Rows appended to the sheet ``predictions``: numbers, booleans and text as cells, a missing value
        empty. More rows than a sheet holds, or a control character Excel cannot store, is a DataError
        naming what to write instead, and nothing is written."""
        from openpyxl.utils.exceptions import IllegalCharacterError

        if self._book is None:
            from openpyxl import Workbook

            self._book = Workbook(write_only=True)
            self._sheet = self._book.create_sheet("predictions")
            self._sheet.append([str(c) for c in frame.columns])
        if self._rows + len(frame) >= EXCEL_ROWS:
            raise DataError(f"--out: an Excel sheet holds {EXCEL_ROWS - 1:,} rows and a header; the input has more: "
                            f"write .csv or .parquet")
        cells = frame.astype(object).where(frame.notna(), None)
        for n, row in enumerate(cells.itertuples(index=False, name=None), self._rows + 1):
            try:
                self._sheet.append([_excel_value(v) for v in row])
            except IllegalCharacterError:
                raise DataError(f"--out: row {n} holds a control character an Excel cell cannot store; write "
                                f".csv or .parquet") from None

    def commit(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self.kind == "excel" and self._book is None:  # nothing written: still a workbook Excel opens
            from openpyxl import Workbook

            self._book = Workbook()
        if self._book is not None:
            self._book.save(self.tmp)
        if self._first:  # no rows at all: still an output file with nothing in it
            self.tmp.touch()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self.tmp.unlink(missing_ok=True)


def predict_file(ws: Workspace, data: str | Path, out: str | Path, *, model: str | None = None,
                 chunk_rows: int = CHUNK_ROWS, progress: Callable[[int], None] | None = None,
                 map_chunks: ChunkMapper | None = None, out_encoding: str | None = None) -> dict[str, Any]:
    """Score every row of ``data`` with ``model`` (production by default) into ``out``.

    Returns ``{"model", "data", "out", "rows", "columns", "variant", "seconds"}`` (and ``failed``, the rows
    a family's reader marked in an ``error`` column). A row the server would refuse stops the run with a
    DataError naming the row and the field; nothing is written. A family that reads its own kind of input
    (the image family: a folder of images, a table of image paths) gives the scored frames through its
    optional ``predict_frames(runtime, src, chunk_rows)`` hook instead. ``map_chunks`` scores the
    chunks elsewhere (Ray workers), in order; the file is still read and written here.

    A CSV input is read in the project's ``data.encoding`` (detected when ``auto``), as ingest reads it
    (with ``data.sources``, the encoding they agree on: ``encoding.project_encoding``). A
    CSV output is written in ``out_encoding`` (``OUT_ENCODINGS``; default: UTF-8, with a BOM where the
    input CSV came from Excel: ``_out_encoding``), returned as ``out_encoding``; a value it cannot hold
    stops the run (a DataError naming the row and column), and nothing is written.
    """
    from ..families import family_of
    from .runtime import load_runtime

    src, dst = Path(data), Path(out)
    if not src.exists():
        raise DataError(f"--data: file not found: {src}")
    if dst.resolve() == src.resolve():
        raise DataError(f"--out: {dst} is the input file; write the predictions to another file")
    kind_out = _format(dst, "--out")
    started, encoding = time.time(), project_encoding(ws.config.data)
    enc_out = _out_encoding(src, kind_out, out_encoding, encoding)
    d = ws.config.data  # a CSV input's dialect (data.delimiter, data.decimal; detected when auto)
    dialect = file_dialect(src, encoding, d.delimiter, d.decimal) if src.is_file() and FORMATS.get(src.suffix.lower()) == "csv" else None
    runtime = load_runtime(ws, model, text_threads=None)
    own = getattr(family_of(runtime.row), "predict_frames", None)
    if own is not None:
        frames = own(runtime, src, chunk_rows)
    elif src.is_dir():
        raise DataError(f"--data: {src} is a folder; this model scores a file ({', '.join(sorted(FORMATS))})")
    else:
        coerced: dict[str, int] | None = {} if ws.config.data.on_type_error == "coerce" else None
        frames = _scored_chunks(runtime, src, _format(src, "--data"), chunk_rows, map_chunks, coerced, encoding,
                                dialect)
    blank = _blank_headers(src, encoding, dialect.delimiter) if kind_out == "csv" and dialect is not None else {}
    writer = _Writer(dst, kind_out, blank, enc_out, _out_dialect(dialect, dst))
    rows, added, failed = 0, [], None
    try:
        for frame, added in frames:
            writer.write(frame)
            rows += len(frame)
            if "error" in added:
                failed = (failed or 0) + int(frame["error"].notna().sum())
            if progress is not None:
                progress(rows)
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    return {"model": {"name": runtime.name, "version": runtime.version}, "data": str(src), "out": str(dst),
            "rows": rows, "columns": added, "variant": runtime.variant,
            **({"out_encoding": enc_out} if enc_out is not None else {}),
            "seconds": round(time.time() - started, 2), **({"failed": failed} if failed is not None else {}),
            **({"coerced": coerced} if own is None and coerced else {})}


def _scored_chunks(runtime: Any, src: Path, kind_in: str, chunk_rows: int, map_chunks: ChunkMapper | None = None,
                   coerced: dict[str, int] | None = None, encoding: str = "auto", dialect: Dialect | None = None,
                   ) -> Iterator[tuple[pd.DataFrame, list[str]]]:
    """The input's chunks with the model's columns added, validated as the server validates a body. With
    ``coerced`` (the project's ``data.on_type_error: coerce``) a value that is not a number in a numeric
    column, or not a date in a date-time one, is missing, as ingest stored it, and counted there per
    column: the file the model was trained on is scored as it was read for training. A CSV is read in
    ``encoding`` (``data.encoding``, as ingest reads it)."""
    schema, validator = runtime.request_schema, runtime.validator
    texts = {c: str for c, k in schema.columns.items() if k in ("categorical", "text", "datetime", "identifier")}

    def numbered() -> Iterator[tuple[int, pd.DataFrame]]:
        rows = 0
        for chunk in _chunks(src, kind_in, texts, chunk_rows, encoding, dialect):
            if chunk.empty:  # a header alone (a CSV's one chunk): nothing to score
                continue
            missing = [c for c in validator.features if c not in chunk.columns]
            if missing:
                raise DataError(f"--data: {src.name} has no column(s) {', '.join(missing[:10])}; the model reads "
                                f"{', '.join(validator.features[:20])}")
            yield rows, (chunk if coerced is None else _coerce_types(chunk, schema, coerced))
            rows += len(chunk)
        if not rows:  # the validator's "records: list should have at least 1 item" said it in its terms
            raise DataError(f"--data: {src.name} has no data rows to score (a header alone)")

    if map_chunks is not None:
        yield from map_chunks(runtime, numbered())
        return
    for offset, chunk in numbered():
        yield score_chunk(runtime, chunk, offset)


def score_chunk(runtime: Any, chunk: pd.DataFrame, offset: int) -> tuple[pd.DataFrame, list[str]]:
    """One chunk (its first row is the file's row ``offset + 1``) with the model's columns added, and their
    names; a row the server would refuse is a DataError naming the file's row and the field."""
    schema, validator = runtime.request_schema, runtime.validator
    sent = [c for c in chunk.columns if c in validator.allowed]
    # 15 decimal places, pandas' most: its default, 10, sent -0.000123456789 as -0.0001234568 (a rate, a
    # coordinate's last digits), which /v1/predict keeps, so the answers could differ from the server's
    body = b'{"records":' + _numbers(chunk[sent], schema, offset).to_json(
        orient="records", date_format="iso", double_precision=15).encode() + b"}"
    try:
        records = validator.validate_json(body)
    except ValueError as exc:  # ValidationProblem: records[i] -> the file's row number
        raise DataError(_row_message(str(exc), offset)) from None
    columns = runtime.head.columns(runtime.score_records(records)[0])
    return given_columns(chunk, columns).assign(**columns), list(columns)


def given_columns(frame: pd.DataFrame, answers: Iterable[str]) -> pd.DataFrame:
    """The input ``frame`` with each column whose name an answer column has (a labelled file's ``label``,
    a ratings file's ``rating``) kept as ``given_<name>``: the answers keep the names programs read
    (``label``, ``proba_<class>``, ``prediction``, ``rating``), and the input's values are not overwritten
    by them, as they were."""
    clash = [c for c in answers if c in frame.columns]
    return frame.rename(columns={c: f"given_{c}" for c in clash}) if clash else frame


def _coerce_types(chunk: pd.DataFrame, schema: Any, counts: dict[str, int]) -> pd.DataFrame:
    """``chunk`` with what ingest's ``check_types(coerce=True)`` would make missing made missing (the
    same reading of numbers and dates), counted into ``counts``."""
    from ..data.schema import Schema
    from ..data.sources import check_types

    kinds = {c: k for c, k in schema.columns.items() if k in ("numeric", "datetime") and c in chunk.columns}
    if not kinds:
        return chunk
    fixed, found = check_types(chunk, Schema(columns=kinds, datetime_formats=dict(schema.datetime_formats)),
                               coerce=True)
    for c, report in found.items():
        counts[c] = counts.get(c, 0) + int(report["coerced_to_missing"])
    return fixed


def _numbers(frame: pd.DataFrame, schema: Any, offset: int) -> pd.DataFrame:
    """Numeric columns as numbers. One stray word in a CSV column makes pandas read every cell of it
    as text, which the validator would refuse row by row; name the cell that is not a number instead."""
    for col in frame.columns:
        if schema.columns.get(col) != "numeric" or pd.api.types.is_numeric_dtype(frame[col]):
            continue
        numbers = read_numbers(frame[col])
        bad = frame[col].notna() & numbers.isna() & (frame[col].astype(str).str.strip() != "")
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise DataError(f"--data: row {offset + i + 1}, {col}: must be a number (or empty for a missing "
                            f"value), got {frame[col].iloc[i]!r}")
        frame = frame.assign(**{col: numbers})
    return frame


def _row_message(message: str, offset: int) -> str:
    """``records[3].amount: ...`` as ``row 1004, amount: ...`` (1-based data rows of the file)."""
    import re

    def row(m: re.Match[str]) -> str:
        return f"row {offset + int(m.group(1)) + 1}, "

    first = message.split("; ")[0]
    return "--data: " + re.sub(r"records\[(\d+)\]\.?", row, first) + (" (and more)" if "; " in message else "")
