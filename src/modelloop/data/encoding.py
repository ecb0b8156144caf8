"""Which text encoding a file's bytes are in, when ``data.encoding`` is ``auto``: one rule shared by
the table readers (``sources.py``) and the text-folder reader (``text_folder.py``)."""

from __future__ import annotations

import codecs

__all__ = ["detect_encoding"]


def _mostly_cjk(text: str) -> bool:
    wide = [ch for ch in text if ord(ch) > 127]
    cjk = sum(1 for ch in wide if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return bool(wide) and cjk / len(wide) >= 0.9


def detect_encoding(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 when it decodes to Chinese text, else Windows-1252
    / Latin-1. Deterministic on purpose: statistical guessers mistake short Western files for Baltic
    or Cyrillic code pages. Other encodings are set with ``data.encoding``."""
    for enc in ("utf-8-sig", "gb18030", "cp1252"):
        try:  # not final: the sample may end inside a multi-byte character, and nowhere else
            text = codecs.getincrementaldecoder(enc)().decode(raw, final=False)
        except UnicodeDecodeError:
            continue
        if enc != "gb18030" or _mostly_cjk(text):
            return enc
    return "latin-1"
