"""Which text encoding a file's bytes are in, when ``data.encoding`` is ``auto``: one rule shared by
the table readers (``sources.py``), the text-folder reader (``text_folder.py``), and the commands that
read a user's file outside ingest (``init --source``'s header, ``predict --data``, ``evaluate --data``),
so a GBK CSV saved by Excel is read alike everywhere, and a UTF-8 file with a few bad bytes is reported
as that everywhere."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["SAMPLE_BYTES", "detect_encoding", "file_encoding", "project_encoding", "undecodable", "where_undecodable"]

SAMPLE_BYTES = 8 << 20  # bytes read to detect a file's encoding
_GB_ALIASES = {"gbk", "gb2312", "gb18030", "cp936", "hz"}


def _mostly_cjk(text: str) -> bool:
    wide = [ch for ch in text if ord(ch) > 127]
    cjk = sum(1 for ch in wide if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return bool(wide) and cjk / len(wide) >= 0.9


class _Utf8Read(NamedTuple):
    """A sample read as UTF-8: ``wide`` valid multi-byte characters (``good`` bytes), ``bad`` bytes that
    are not UTF-8, and ``letters``: the letters among those characters on lines with no bad byte, the
    first on line ``first_line`` (0: none)."""

    wide: int
    good: int
    bad: int
    letters: int
    first_line: int

    @property
    def mostly_utf8(self) -> bool:
        """UTF-8 with a few bad bytes (a file edited by two programs, a character cut short): at least two
        valid multi-byte characters, and at least two thirds of the non-ASCII bytes in them. A legacy file
        makes valid UTF-8 only by chance (Windows-1252's 'Ã©', a GBK pair), among many more bytes that are
        not: GBK and Shift-JIS text keeps well under half of its bytes in valid sequences."""
        return self.wide >= 2 and self.good >= 2 * self.bad

    @property
    def mixed(self) -> bool:
        """A legacy file with lines in UTF-8 (Excel's Windows-1252 CSV with rows pasted from a UTF-8
        program or a web page; as Windows-1252 those rows read 'cafÃ©'), not mostly UTF-8: at least two
        letters in valid multi-byte UTF-8 characters on lines with no byte that is not UTF-8, and at least
        one such byte elsewhere. Windows-1252 text makes such a letter only by chance, an accented capital
        or 'ß' (bytes C0-DF) before a quote, dash or symbol (80-BF), as 'Ã©'; its own accented letters are
        bytes that are not UTF-8 ('é' alone), so a chance pair on a line that has one does not count, and
        one chance pair alone keeps the file Windows-1252. Such a file in Windows-1252 as a whole sets
        ``data.encoding: cp1252``. GBK and Shift-JIS text is GB18030 before this rule is asked (its chance
        pairs lie on lines of bytes that are not UTF-8 where it is not)."""
        return not self.mostly_utf8 and self.letters >= 2 and self.bad > 0


def _utf8_read(raw: bytes) -> _Utf8Read:
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(raw, final=False)
    wide = good = bad = letters = first_line = 0
    for number, line in enumerate(text.split("\n"), 1):
        if line.isascii():
            continue
        high = [ch for ch in line if ord(ch) > 127]
        right = [ch for ch in high if not "\udc80" <= ch <= "\udcff"]  # one lone surrogate per undecodable byte
        wide, good, bad = wide + len(right), good + sum(len(ch.encode()) for ch in right), bad + len(high) - len(right)
        if len(right) == len(high) and (n := sum(ch.isalpha() for ch in right)):
            letters, first_line = letters + n, first_line or number
    return _Utf8Read(wide, good, bad, letters, first_line)


def detect_encoding(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 when it decodes to Chinese text, else UTF-8 again when
    it is UTF-8 with a few bad bytes (``_Utf8Read.mostly_utf8``) or a legacy file with lines in UTF-8
    (``_Utf8Read.mixed``): its read then stops at the first bad byte, and ``undecodable`` says where,
    where Windows-1252 read every Chinese or accented character of those lines wrong, with no word;
    else Windows-1252 / Latin-1. Deterministic on purpose: statistical guessers
    mistake short Western files for Baltic or Cyrillic code pages. Other encodings are set with
    ``data.encoding``."""
    for enc in ("utf-8-sig", "gb18030", "cp1252"):
        if enc == "cp1252" and ((read := _utf8_read(raw)).mostly_utf8 or read.mixed):
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
    from .source_url import file_kind, is_sql_source

    def name(enc: str) -> str:
        try:
            return enc if enc == "auto" else codecs.lookup(enc).name
        except LookupError:
            return enc

    text = {name(s.encoding) for s in data.sources
            if s.format != "sql" and not is_sql_source(s.source) and file_kind(s.source, s.format) != "parquet"}
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
    read as UTF-8 because ``auto`` found it so is UTF-8 with bad bytes, or a legacy file with lines in
    UTF-8, named with the first of those lines (``detect_encoding``): fixing the file is the cure, or
    setting ``force`` (the key that takes another encoding; None where the command has none)."""
    where = where_undecodable(path, encoding, exc)
    if detected and codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        other = f", or set {force} to read the whole file in one other encoding (e.g. cp1252)" if force else ""
        with open(path, "rb") as fh:
            read = _utf8_read(fh.read(SAMPLE_BYTES))
        if read.mixed:
            return (f"{path} mixes two encodings (rows pasted from another program?): lines in UTF-8 (the "
                    f"first: line {read.first_line}) and bytes that are not UTF-8, as Windows-1252 writes 'é' "
                    f"(the first: {where}); read in either one, the other's lines come out garbled ('café' as "
                    f"'cafÃ©'): save the file as UTF-8 with every line right{other}")
        return (f"{path} is UTF-8 with bytes that are not UTF-8 (the first: {where}; a file saved by two "
                f"programs, or a character cut short): fix those bytes (save the file as UTF-8){other}")
    shown = "utf-8" if encoding == "utf-8-sig" else encoding  # utf-8-sig: UTF-8 with or without a BOM
    fix = f"set {force} (e.g. utf-8, gb18030, latin-1)" if force else "save it as UTF-8"
    return f"{path} cannot be decoded as {shown} ({where}); {fix}"
