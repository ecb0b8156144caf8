"""Which text encoding a file's bytes are in, when ``data.encoding`` is ``auto``: one rule shared by
the table readers (``sources.py``), the text-folder reader (``text_folder.py``), and the commands that
read a user's file outside ingest (``init --source``'s header, ``predict --data``, ``evaluate --data``),
so a GBK CSV saved by Excel is read alike everywhere, and a UTF-8 file with a few bad bytes is reported
as that everywhere."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["SAMPLE_BYTES", "detect_encoding", "file_encoding", "project_encoding", "undecodable", "where_undecodable"]

SAMPLE_BYTES = 8 << 20  # bytes read to detect a file's encoding
_GB_ALIASES = {"gbk", "gb2312", "gb18030", "cp936", "hz"}


def _mostly_cjk(text: str) -> bool:
    wide = [ch for ch in text if ord(ch) > 127]
    cjk = sum(1 for ch in wide if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return bool(wide) and cjk / len(wide) >= 0.9


def _mostly_utf8(raw: bytes) -> bool:
    """UTF-8 with a few bad bytes (a file edited by two programs, a character cut short): at least two
    valid multi-byte characters, and at least two thirds of the non-ASCII bytes in them. A legacy file
    makes valid UTF-8 only by chance (Windows-1252's 'Ã©', a GBK pair), among many more bytes that are
    not: GBK and Shift-JIS text keeps well under half of its bytes in valid sequences."""
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(raw, final=False)
    bad = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")  # one lone surrogate per undecodable byte
    wide = [ch for ch in text if ord(ch) > 127 and not "\udc80" <= ch <= "\udcff"]
    good = sum(len(ch.encode()) for ch in wide)
    return len(wide) >= 2 and good >= 2 * bad


def detect_encoding(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 when it decodes to Chinese text, else UTF-8 again when
    it is UTF-8 with a few bad bytes (``_mostly_utf8``: its read then stops at the first of them, and
    ``undecodable`` says where, where Windows-1252 read every Chinese or accented character of it
    wrong, with no word), else Windows-1252 / Latin-1. Deterministic on purpose: statistical guessers
    mistake short Western files for Baltic or Cyrillic code pages. Other encodings are set with
    ``data.encoding``."""
    for enc in ("utf-8-sig", "gb18030", "cp1252"):
        if enc == "cp1252" and _mostly_utf8(raw):
            return "utf-8-sig"
        try:  # not final: the sample may end inside a multi-byte character, and nowhere else
            text = codecs.getincrementaldecoder(enc)().decode(raw, final=False)
        except UnicodeDecodeError:
            continue
        if enc != "gb18030" or _mostly_cjk(text):
            return enc
    return "latin-1"


def project_encoding(data: DataConfig) -> str:
    """The encoding a user's CSV for this project (``predict --data``, ``evaluate --data``) is read in,
    as ingest read the training data: ``data.encoding`` with one source; with ``data.sources`` (each
    read in its own ``encoding``), the one encoding every source read as text agrees on (a SQL or
    Parquet source has none), else ``data.encoding`` (``auto``: detected). Codec aliases agree (``GBK``
    and ``cp936``)."""
    from .source_url import is_sql_source

    def name(enc: str) -> str:
        try:
            return enc if enc == "auto" else codecs.lookup(enc).name
        except LookupError:
            return enc

    text = {name(s.encoding) for s in data.sources
            if s.format not in ("sql", "parquet") and not is_sql_source(s.source)
            and not (s.format == "auto" and Path(s.source).suffix.lower() in (".parquet", ".pq"))}
    return text.pop() if len(text) == 1 else data.encoding


def file_encoding(path: Path, encoding: str = "auto") -> str:
    """The codec a text file is read with: ``auto`` detected from its first ``SAMPLE_BYTES``; a GB name
    as GB18030, the superset Python decodes every GBK and GB2312 file with."""
    if encoding == "auto":
        with open(path, "rb") as fh:
            return detect_encoding(fh.read(SAMPLE_BYTES))
    if encoding.lower().replace("-", "").replace("_", "") in _GB_ALIASES:
        return "gb18030"
    return encoding


def where_undecodable(path: Path, encoding: str, exc: UnicodeDecodeError) -> str:
    """Where the file stops decoding, as a line and byte of the file: pandas' error counts bytes
    from the start of its read buffer, not of the file."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines = 0, 1
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            held = len(decoder.getstate()[0])  # bytes of a character begun in the last chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                before = chunk[:max(err.start - held, 0)]
                line = lines + before.count(b"\n")
                return f"{err.reason} at line {line}, byte {offset - held + err.start}"
            offset += len(chunk)
            lines += chunk.count(b"\n")
    return f"{exc.reason} at byte {exc.start} of a read buffer"


def undecodable(path: Path, encoding: str, exc: UnicodeDecodeError, *, detected: bool, force: str | None) -> str:
    """The message for a file that stops decoding, with the line and byte of the first bad byte. A file
    read as UTF-8 because ``auto`` found it so is UTF-8 with bad bytes (``detect_encoding``): fixing them
    is the cure, or setting ``force`` (the key that takes another encoding; None where the command has none)."""
    where = where_undecodable(path, encoding, exc)
    if detected and codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        other = f", or set {force} to read the whole file in one other encoding (e.g. cp1252)" if force else ""
        return (f"{path} is UTF-8 with bytes that are not UTF-8 (the first: {where}; a file saved by two "
                f"programs, or a character cut short): fix those bytes (save the file as UTF-8){other}")
    shown = "utf-8" if encoding == "utf-8-sig" else encoding  # utf-8-sig: UTF-8 with or without a BOM
    fix = f"set {force} (e.g. utf-8, gb18030, latin-1)" if force else "save it as UTF-8"
    return f"{path} cannot be decoded as {shown} ({where}); {fix}"
