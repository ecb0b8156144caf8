"""Which text encoding a file's bytes are in, when ``data.encoding`` is ``auto``: one rule shared by
the table readers (``sources.py``), the text-folder reader (``text_folder.py``), and the commands that
read a user's file outside ingest (``init --source``'s header, ``predict --data``, ``evaluate --data``),
so a GBK or Shift-JIS CSV saved by Excel is read alike everywhere, and a UTF-8 file with a few bad bytes
is reported as that everywhere."""

from __future__ import annotations

import codecs
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["SAMPLE_BYTES", "detect_encoding", "file_encoding", "file_version", "project_encoding", "undecodable",
           "where_undecodable"]

SAMPLE_BYTES = 8 << 20  # bytes read to detect a file's encoding
_GB_ALIASES = {"gbk", "gb2312", "gb18030", "cp936", "hz"}


def _codepoints(text: str) -> Any:
    """The text's code points as a NumPy array, to count characters in ranges at C speed over the 8 MB
    sample, where a Python loop over it took seconds (the text has no lone surrogate)."""
    import numpy as np

    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _kana(cp: Any) -> int:
    return int(((cp >= 0x3040) & (cp <= 0x30FF)).sum())


def _japanese(raw: bytes, gb: str | None) -> bool:
    """Shift-JIS Japanese (Japanese Excel's CSV), told from GBK, whose two-byte ranges cover Shift-JIS's:
    the sample decodes as Windows' Shift-JIS (cp932), at least 5% of that reading's non-ASCII characters
    (and two) are kana (hiragana, katakana: nearly every Japanese text has them), and the GB18030
    reading, where it decodes, is the soup of rare characters mis-decoding makes: at most a fifth as
    many kana as the Shift-JIS reading, and at least half its non-ASCII characters outside GB2312
    (Shift-JIS kana, punctuation and most kanji are byte pairs GB2312 leaves to GBK's rare and
    traditional characters). Chinese GBK text of common characters has no byte that makes a kana in
    Shift-JIS (0x82 or 0x83 before a trail byte) and every character in GB2312. Nor UTF-8 with a few bad
    bytes (``_Utf8Read.mostly_utf8``), whose Japanese reads as cp932 too.

    A Japanese file without kana (kanji names, addresses and company names only) is Shift-JIS too, since
    2026-12-07 (it was read as GB18030, every name other characters), when the cp932 reading has at least
    ``KANJI_ONLY`` kanji, they are at least half its non-ASCII characters, it has no half-width katakana,
    and at least three quarters of the GB18030 reading lie outside GB2312. GBK Chinese fails each of
    these: its common characters (leads 0xB0-0xF7) and its full-width punctuation (0xA1-0xA3) are
    half-width katakana bytes in Shift-JIS, where it decodes at all, and lie in GB2312; Shift-JIS
    kanji-only text read as GB18030 lies wholly outside it."""
    try:
        text = codecs.getincrementaldecoder("cp932")().decode(raw, final=False)
    except UnicodeDecodeError:
        return False
    sj = _codepoints(text)
    kana, wide = _kana(sj), int((sj > 127).sum())
    if kana >= 2 and 20 * kana >= wide:
        if gb is not None and (5 * _kana(_codepoints(gb)) > kana or 2 * _gb2312_chars(gb) > _wide(gb)):
            return False
    elif not _kanji_only(sj, wide, gb):
        return False
    return not _utf8_read(raw, letters=False).mostly_utf8


KANJI_ONLY = 10  # kanji a kana-free sample needs to be taken for Japanese (``_japanese``)


def _kanji_only(sj: Any, wide: int, gb: str | None) -> bool:
    """The kana-free Japanese rule of ``_japanese`` on the cp932 reading's code points ``sj``."""
    kanji = int(((sj >= 0x4E00) & (sj <= 0x9FFF)).sum())
    half_kana = int(((sj >= 0xFF61) & (sj <= 0xFF9F)).sum())
    if kanji < KANJI_ONLY or 2 * kanji < wide or half_kana:
        return False
    return gb is None or 4 * _gb2312_chars(gb) <= _wide(gb)


def _wide(text: str) -> int:
    return len(text) - len(text.encode("ascii", "ignore"))


def _gb2312_chars(text: str) -> int:
    """The characters of ``text`` in GB2312 (two bytes each there), ASCII aside."""
    return (len(text.encode("gb2312", "ignore")) - len(text.encode("ascii", "ignore"))) // 2


def _mostly_cjk(text: str) -> bool:
    cp = _codepoints(text)
    wide = int((cp > 127).sum())
    cjk = int((((cp >= 0x3000) & (cp <= 0x9FFF)) | ((cp >= 0xFF00) & (cp <= 0xFFEF))).sum())
    return bool(wide) and cjk / wide >= 0.9


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
        ``data.encoding: cp1252``. GBK and Shift-JIS text is GB18030 or cp932 before this rule is asked (its
        chance pairs lie on lines of bytes that are not UTF-8 where it is not)."""
        return not self.mostly_utf8 and self.letters >= 2 and self.bad > 0


def _utf8_read(raw: bytes, *, letters: bool = True) -> _Utf8Read:
    """``raw`` read as UTF-8 (``_Utf8Read``). The counts come from whole-string encodes (an undecodable byte
    is one lone surrogate, which ``ignore`` drops); the letters need a pass over the lines, taken only
    where ``mixed`` can hold (bytes that are not UTF-8, not mostly UTF-8) and ``letters`` asks: a Shift-JIS
    sample of 8 MB took that pass 2 s where ``_japanese`` needs the counts alone."""
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(raw, final=False)
    kept, ascii_ = len(text.encode("utf-8", "ignore")), len(text.encode("ascii", "ignore"))
    bad = len(text.encode("utf-8", "surrogateescape")) - kept
    counts = _Utf8Read(len(text) - bad - ascii_, kept - ascii_, bad, 0, 0)
    if not letters or not bad or counts.mostly_utf8:
        return counts
    found = first_line = 0
    for number, line in enumerate(text.split("\n"), 1):
        if line.isascii() or any("\udc80" <= ch <= "\udcff" for ch in line):  # a line with a bad byte
            continue
        if n := sum(ch.isalpha() for ch in line if ord(ch) > 127):
            found, first_line = found + n, first_line or number
    return counts._replace(letters=found, first_line=first_line)


def detect_encoding(raw: bytes) -> str:
    """UTF-16 or UTF-32 (``_utf16_or_32``: a byte-order mark, or UTF-16's NUL bytes), else UTF-8 (with or
    without BOM), else, unless its accented letters lie inside Latin words (``_in_latin_words``:
    Windows-1252 German, French, Spanish), Shift-JIS (``cp932``, Windows' Shift-JIS, which Japanese Excel
    writes) when it decodes to Japanese text with kana and the GB18030 reading is rare-character soup
    (``_japanese``), else GB18030 when it decodes to Chinese text, else UTF-8 again when
    it is UTF-8 with a few bad bytes (``_Utf8Read.mostly_utf8``) or a legacy file with lines in UTF-8
    (``_Utf8Read.mixed``): its read then stops at the first bad byte, and ``undecodable`` says where,
    where Windows-1252 read every Chinese or accented character of those lines wrong, with no word;
    else Windows-1252 / Latin-1. Deterministic on purpose: statistical guessers
    mistake short Western files for Baltic or Cyrillic code pages. Other encodings are set with
    ``data.encoding``."""
    def decoded(enc: str) -> str | None:
        try:  # not final: the sample may end inside a multi-byte character, and nowhere else
            return codecs.getincrementaldecoder(enc)().decode(raw, final=False)
        except UnicodeDecodeError:
            return None

    if (wide := _utf16_or_32(raw)) is not None:
        return wide
    if decoded("utf-8-sig") is not None:
        return "utf-8-sig"
    if not _in_latin_words(raw):
        gb = decoded("gb18030")
        if _japanese(raw, gb):
            return "cp932"
        if gb is not None and _mostly_cjk(gb):
            return "gb18030"
    if (read := _utf8_read(raw)).mostly_utf8 or read.mixed:
        return "utf-8-sig"
    return "cp1252" if decoded("cp1252") is not None else "latin-1"


def _utf16_or_32(raw: bytes) -> str | None:
    """UTF-16 or UTF-32 by its byte-order mark (Excel's "Unicode Text" is UTF-16 with one, tab-separated), or
    UTF-16 without one where every other byte is NUL (ASCII letters and digits, which text in such a file
    mostly is, have a zero high byte): ``utf-16-le`` when at least 40 % of the odd bytes and under 10 % of the
    even ones are NUL, ``utf-16-be`` the other way round. Such a file read as Windows-1252 was 'ÿþb e t r a g'
    (its header one garbled column). None for anything else: text files of other encodings hold no NUL."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    import numpy as np

    b = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype=np.uint8)
    if len(b) < 4:
        return None
    even, odd = float((b[0::2] == 0).mean()), float((b[1::2] == 0).mean())
    if odd >= 0.4 and even < 0.1:
        return "utf-16-le"
    if even >= 0.4 and odd < 0.1:
        return "utf-16-be"
    return None


def _in_latin_words(raw: bytes) -> bool:
    """Whether at least half of the sample's bytes of 0x80 and above are Windows-1252 letters (À-ÿ) beside an
    ASCII letter: accented letters inside words (Müller, Schäfer, Größe), as German, French or Spanish text
    is written. GBK and Shift-JIS text has its bytes in runs, two a character, and next to ASCII letters only
    where a word of Latin letters meets it: at most a quarter of them on simplified and traditional Chinese
    mixed with brand names (iPhone手机), at most 5 % on Japanese, and all of them on German, French and
    Spanish (``tests/core/test_sources.py``). Without this rule over 90 % of that test's German files, and its
    French ones, read as GB18030 (each umlaut and the letter after it one Chinese character: 'Müller' as
    'M黮ler', a header's 'Größe' another name), since their pairs decode there; a file escaped only where an
    accent before a space or a comma is no GB18030 pair."""
    import numpy as np

    b = np.frombuffer(raw, dtype=np.uint8)
    high = b >= 0x80
    n_high = int(high.sum())
    if not n_high:
        return False
    folded = b | 0x20
    ascii_letter = (folded >= 0x61) & (folded <= 0x7A) & ~high
    beside = np.zeros(len(b), dtype=bool)
    beside[1:] |= ascii_letter[:-1]
    beside[:-1] |= ascii_letter[1:]
    latin = (b >= 0xC0) & (b != 0xD7) & (b != 0xF7) & beside
    return 2 * int(latin.sum()) >= n_high


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
            if s.format != "sql" and not is_sql_source(s.source) and file_kind(s.source, s.format) not in ("parquet", "excel")}
    return text.pop() if len(text) == 1 else data.encoding


def file_encoding(path: Path, encoding: str = "auto") -> str:
    """The codec a text file is read with: ``auto`` detected from its first ``SAMPLE_BYTES`` (once per
    version of the file: ``_detected``); a GB name as GB18030, the superset Python decodes every GBK and
    GB2312 file with."""
    if encoding == "auto":
        return _detected(*file_version(path))
    if encoding.lower().replace("-", "").replace("_", "") in _GB_ALIASES:
        return "gb18030"
    return encoding


def file_version(path: Path) -> tuple[str, int, int, int, int]:
    """A key for what is detected from a file's bytes (its encoding, its CSV dialect): its real path, inode,
    size and times, so a detection is made once per version of the file and redone when it changes."""
    st = os.stat(path)
    return os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@functools.lru_cache(maxsize=64)
def _detected(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """``detect_encoding`` of a file's first ``SAMPLE_BYTES``, kept per file version (inode, size and times):
    ``predict --data`` asked it three times of one file (its output encoding, its blank headers, its rows),
    each an 8 MB read and a detection (0.2-0.6 s for a legacy file of that size)."""
    with open(path, "rb") as fh:
        return detect_encoding(fh.read(SAMPLE_BYTES))


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
