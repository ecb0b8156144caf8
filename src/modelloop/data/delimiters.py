"""Which field delimiter and decimal mark a CSV is written with, when ``data.delimiter`` and ``data.decimal``
are ``auto``: Excel in Germany, France, Italy, Spain, the Netherlands, Brazil or Russia saves its "CSV" with
semicolons between the fields and commas in the numbers (``34,56;DE;no``), the comma being their decimal mark.
Read with commas, such a file was one column named ``betrag;land;kunde`` and every ``init --source`` and
``ingest`` of it failed. One rule for every reader of a user's CSV (ingest, ``init --source``'s header,
``predict --data``, ``evaluate --data``), so a file reads alike everywhere, and ``predict`` answers in the
dialect it was asked in.

Deterministic on purpose, like ``encoding.detect_encoding``: the header and the first records decide, by
counts a user can check. Python's ``csv.Sniffer`` guesses from character frequencies and takes letters and
spaces for delimiters on short files."""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
from pathlib import Path
from typing import NamedTuple

from .encoding import SAMPLE_BYTES, file_encoding, file_version

__all__ = ["DECIMALS", "DELIMITERS", "EXCEL_ERRORS", "Dialect", "csv_header", "detect_dialect", "file_dialect"]

DELIMITERS = (",", ";", "\t", "|")
"""Delimiters ``auto`` tells apart, in order of preference where two read a file equally well."""
DECIMALS = (".", ",")
EXCEL_ERRORS = ["#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!"]
"""Excel's error values, which its CSVs and workbooks hold where a formula failed: a missing value to every
reader of a user's file (pandas already reads #N/A so). A numeric column with one stopped ingest ("holds text
... '#DIV/0!'") and a text column learnt it as a category."""
SAMPLE_RECORDS = 200  # records (the header first) a dialect is judged on
CONSISTENT = 0.9  # share of the sampled records that must have the header's number of fields
_COMMA_NUMBER = re.compile(r"\s*[-+]?\d+,\d+\s*")  # 34,56: a decimal comma (a thousands comma is not in
_POINT_NUMBER = re.compile(r"\s*[-+]?\d*\.\d+\s*")  # a field of a file whose delimiter is not the comma)


class Dialect(NamedTuple):
    """How a CSV is read (and how ``predict`` writes its answers to one): ``delimiter`` between fields,
    ``decimal`` the mark in its numbers."""

    delimiter: str
    decimal: str

    def describe(self) -> str:
        names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
        mark = "decimal comma" if self.decimal == "," else "decimal point"
        return f"{names.get(self.delimiter, repr(self.delimiter))}-separated, {mark}"


def detect_dialect(text: str, *, delimiter: str = "auto", decimal: str = "auto") -> Dialect:
    """The dialect of a CSV's first lines ``text`` (cut at a line end). Delimiter: of ``DELIMITERS``, the one
    that splits the header into the most fields (at least two) with at least ``CONSISTENT`` of the sampled
    records having that many; none such: the comma (a one-column file; a malformed one, which the read
    reports). Decimal: the comma when the delimiter is the semicolon (the dialect of Excel where the comma is
    the decimal mark), some field is a number with a decimal comma (``34,56``) and none one with a decimal
    point (``34.56``); else the point (a tab-separated file's ``3,4`` may be a list: ``data.decimal`` says). A value set (not ``auto``)
    is kept as it is."""
    if delimiter == "auto":
        best, fields = ",", 1
        for candidate in DELIMITERS:
            records = _records(text, candidate)
            if not records or len(records[0]) <= fields:
                continue
            width = len(records[0])
            body = records[1:]
            if not body or sum(len(r) == width for r in body) >= CONSISTENT * len(body):
                best, fields = candidate, width
        delimiter = best
    if decimal == "auto":
        decimal = "."
        if delimiter == ";":
            values = [v for r in _records(text, delimiter)[1:] for v in r]
            if any(_COMMA_NUMBER.fullmatch(v) for v in values) and not any(_POINT_NUMBER.fullmatch(v) for v in values):
                decimal = ","
    return Dialect(delimiter, decimal)


def _records(text: str, delimiter: str) -> list[list[str]]:
    out: list[list[str]] = []
    try:
        for record in csv.reader(io.StringIO(text), delimiter=delimiter):
            if record and any(field.strip() for field in record):
                out.append(record)
                if len(out) == SAMPLE_RECORDS:
                    break
    except csv.Error:  # a NUL byte, a field over the size limit: this delimiter does not read it
        return out
    return out


def file_dialect(path: Path, encoding: str = "auto", delimiter: str = "auto", decimal: str = "auto") -> Dialect:
    """The dialect a CSV file is read with: ``delimiter`` and ``decimal`` as set, else detected from its first
    lines (``detect_dialect``), decoded as the file is read (``file_encoding``), once per version of the
    file. A ``.tsv`` file is tab-separated."""
    if Path(path).suffix.lower() == ".tsv" and delimiter == "auto":
        delimiter = "\t"
    if delimiter != "auto" and decimal != "auto":
        return Dialect(delimiter, decimal)
    return _detected(*file_version(path), file_encoding(path, encoding), delimiter, decimal)


def csv_header(path: Path, encoding: str, delimiter: str, *, errors: str = "strict") -> list[str]:
    """A CSV's first record as written (blank and repeated names kept, which pandas renames ``Unnamed: 0`` and
    ``a.1``), read in ``encoding`` (``errors`` as ``open`` takes it) with ``delimiter``."""
    with open(path, newline="", encoding=encoding, errors=errors) as fh:
        return next(csv.reader(fh, delimiter=delimiter), [])


_HEAD_BYTES = min(SAMPLE_BYTES, 1 << 16)  # SAMPLE_RECORDS records of a wide table fit; a record that does
# not (a long text field) reads as one field too few, and the header still decides


@functools.lru_cache(maxsize=64)
def _detected(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int, encoding: str, delimiter: str,
              decimal: str) -> Dialect:
    with open(path, "rb") as fh:
        raw = fh.read(_HEAD_BYTES)
    text = codecs.getincrementaldecoder(encoding)("replace").decode(raw, final=len(raw) < _HEAD_BYTES)
    if len(raw) == _HEAD_BYTES:  # the last line may be cut short: judge whole lines only
        text = text[:text.rfind("\n") + 1] or text
    return detect_dialect(text, delimiter=delimiter, decimal=decimal)
