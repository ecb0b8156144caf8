"""Folders of ``.txt`` files with one sub-folder per class -> a ``text, label`` table.

The layout of most public text-classification sets (IMDB, 20 Newsgroups, ...)::

    reviews/
      negative/  0001.txt  0002.txt ...
      positive/  0001.txt  sub/more.txt ...

Each file is one example whose label is the name of its top-level sub-folder (files in deeper
folders belong to the same class). Files are read as UTF-8, else decoded the way CSV sources are
(``detect_encoding``: cp932 for Shift-JIS Japanese with kana, GB18030 for Chinese text, else
Windows-1252; a UTF-8 file with a few bad bytes is reported, not misread), so a folder mixing encodings reads cleanly; empty files and hidden files
are skipped and counted in the report. Rows come sorted
by class and path so the same folder always gives the same dataset version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, cap_list
from .encoding import detect_encoding, undecodable

__all__ = ["read_text_folder"]


def read_text_folder(path: str | Path, *, encoding: str = "auto", suffixes: tuple[str, ...] = (".txt",),
                     report: dict[str, Any] | None = None) -> pd.DataFrame:
    """``DataFrame[text, label]`` from ``path/<label>/**/*.txt``; ``report`` (if given) is filled with
    what the read noticed: classes, files read, encodings used, files skipped and why."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected one sub-folder per class holding .txt files")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: has no class sub-folders; put each class's .txt files in a folder named "
                        "after the class (e.g. reviews/positive/1.txt, reviews/negative/2.txt)")
    rows: list[tuple[str, str]] = []
    encodings: dict[str, int] = {}
    skipped: list[dict[str, str]] = []
    for folder in classes:
        for file in sorted(f for f in folder.rglob("*") if f.is_file()):
            rel = str(file.relative_to(root))
            if any(part.startswith(".") for part in file.relative_to(root).parts):
                continue
            if file.suffix.lower() not in suffixes:
                skipped.append({"file": rel, "reason": f"not {'/'.join(suffixes)}"})
                continue
            text, used = _read_text(file, encoding)
            if not text.strip():
                skipped.append({"file": rel, "reason": "empty"})
                continue
            encodings[used] = encodings.get(used, 0) + 1
            rows.append((text.strip(), folder.name))
    loose = [f.name for f in root.iterdir() if f.is_file() and f.suffix.lower() in suffixes]
    if not rows:
        raise DataError(f"{root}: no non-empty {'/'.join(suffixes)} files in its class folders "
                        f"({cap_list(d.name for d in classes)})")
    if report is not None:
        report.update({"source": str(root), "format": "text_folder", "files": len(rows),
                       "classes": {d.name: sum(1 for _, c in rows if c == d.name) for d in classes},
                       "encodings": encodings, "skipped_files": skipped,
                       "ignored_top_level_files": loose})
    return pd.DataFrame(rows, columns=["text", "label"])


def _read_text(file: Path, encoding: str) -> tuple[str, str]:
    raw = file.read_bytes()
    enc = detect_encoding(raw) if encoding == "auto" else encoding
    try:
        text = raw.decode(enc)
    except UnicodeDecodeError as exc:
        raise DataError(undecodable(file, enc, exc, detected=encoding == "auto", force="data.encoding")) from None
    except LookupError:
        raise DataError(f"data.encoding: unknown encoding '{enc}'; use e.g. utf-8, gb18030, latin-1") from None
    return text.removeprefix("\ufeff"), "utf-8" if enc == "utf-8-sig" else enc
