"""Image sources -> one table row per image: its bytes (base64), where it came from, its label, its size.

``data.source`` of an ``image_classification`` project is any of::

    parts/                      a folder with one sub-folder per class
      bolt/  0001.jpg  sub/0002.png ...
      nut/   0001.webp ...
    labels.csv | .parquet | .jsonl   a table of image paths (relative to the table's folder) and labels
    parts.zip                   a zip of either (a table inside it names paths inside the zip)

Every format Pillow decodes is read (JPEG, PNG, GIF's first frame, WebP, BMP, TIFF); the EXIF orientation
is applied and grayscale, CMYK, palette, 16-bit and transparent images become 8-bit RGB (transparency on
white), so that training and serving see the same pixels: both call :func:`decode_image` on the same
bytes. A file that does not decode (not an image, truncated, over ``MAX_PIXELS``) is a *bad file*:
``data.on_bad_files: error`` (the default) stops with its path, ``skip`` leaves it out and counts it in
the read report (``bad_files``), which the profile lists.

The table keeps the file's own bytes (``image``, base64: what a client sends to ``/v1/predict``), so a
dataset version is content-addressed by its images and self-contained, and per image the statistics that
quality checks and drift monitoring read (``width``, ``height``, ``aspect``, ``brightness``, ``contrast``).
Rows come sorted by class and path: the same source always gives the same dataset version.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, cap_list

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

__all__ = ["IMAGE_COLUMN", "IMAGE_SUFFIXES", "image_paths", "mostly_images", "MAX_PIXELS", "PATH_COLUMN", "STAT_COLUMNS", "BadImage", "ImageTooLarge",
           "decode_base64", "decode_image", "image_kinds", "image_stats", "iter_pixels", "path_column",
           "read_image_source", "resize", "visible_files"]

IMAGE_COLUMN = "image"
PATH_COLUMN = "path"
STAT_COLUMNS = ("width", "height", "aspect", "brightness", "contrast")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 40_000_000  # a decompression bomb is refused from its header, before any pixel is decoded
_PATH_NAMES = ("image", "path", "file", "filename", "filepath", "image_path", "file_path")
_TABLES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


class BadImage(DataError):
    """Bytes that are not a decodable image (or a truncated one)."""


class ImageTooLarge(BadImage):
    """An image whose header declares more than the allowed pixels (a decompression bomb)."""


# ---------------------------------------------------------------------------------------------- decoding
def decode_image(raw: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """8-bit RGB pixels of an encoded image, upright (EXIF orientation applied). Raises ``BadImage``."""
    from PIL import Image, ImageOps

    try:
        img: Image.Image = Image.open(io.BytesIO(raw))
        w, h = img.size
        if w * h > max_pixels:
            raise ImageTooLarge(f"{w}x{h} pixels is more than the {max_pixels:,} allowed")
        img.load()  # a truncated file fails here, not later
        img = ImageOps.exif_transpose(img) or img
        return _to_rgb(img)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError... on broken files
        what = "not an image Pillow can read" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise BadImage(what or type(exc).__name__) from None


def _to_rgb(img: Image.Image) -> Image.Image:
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grayscale: stretch to 8 bits
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.round().astype(np.uint8), "L").convert("RGB")
    if (img.mode == "P" and "transparency" in img.info) or img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def decode_base64(text: str) -> bytes:
    """The bytes of a base64 string (standard or URL-safe alphabet, optional ``data:`` prefix)."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("not base64 (send the file's bytes, base64-encoded)") from None


def image_stats(img: Image.Image) -> dict[str, float]:
    """Size and simple pixel statistics (0-1 grey level mean and spread) of an RGB image."""
    w, h = img.size
    small = img.copy()
    small.thumbnail((64, 64))
    grey = np.asarray(small.convert("L"), dtype=np.float64) / 255.0
    return {"width": float(w), "height": float(h), "aspect": float(w / h), "brightness": float(grey.mean()),
            "contrast": float(grey.std())}


def image_kinds() -> dict[str, str]:
    """Column kinds of an image table: the image is the model's input (its text-like role), the path and
    the statistics are kept beside it, never features."""
    return {IMAGE_COLUMN: "text", PATH_COLUMN: "identifier", **dict.fromkeys(STAT_COLUMNS, "identifier")}


# ---------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class _Item:
    name: str                       # where the image came from, as the profile lists it
    label: Any
    read: Callable[[], bytes]


def read_image_source(source: str, *, root: Path, target: str, on_bad_files: str = "error",
                      encoding: str = "auto", report: dict[str, Any] | None = None) -> pd.DataFrame:
    """``DataFrame[image, path, <target>, width, height, aspect, brightness, contrast]`` of ``source``
    (a class-folder tree, a table of paths and labels, or a zip of either); ``report`` gets the classes,
    formats seen and the bad files."""
    import pandas as pd

    path = Path(source) if Path(source).is_absolute() else root / source
    if not path.exists():
        raise DataError(f"data.source: not found: {path}")
    if path.is_dir():
        items = _folder_items(path, target, encoding)
    elif zipfile.is_zipfile(path):
        items = _zip_items(path, target, encoding)
    elif path.suffix.lower() in _TABLES:
        items = _table_items(path, target, encoding, opener=lambda p: (path.parent / p).read_bytes())
    else:
        raise DataError(f"data.source: {path} is not a folder of class folders, a table of image paths "
                        f"(.csv, .parquet, .jsonl) or a .zip of either")
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []
    formats: dict[str, int] = {}
    for item in items:
        try:
            raw = item.read()
            img = decode_image(raw)
        except (BadImage, OSError) as exc:
            bad.append({"file": item.name, "reason": str(exc)})
            continue
        fmt = _format_of(raw)
        formats[fmt] = formats.get(fmt, 0) + 1
        rows.append({IMAGE_COLUMN: base64.b64encode(raw).decode("ascii"), PATH_COLUMN: item.name,
                     target: item.label, **image_stats(img)})
    if bad and on_bad_files != "skip":
        first = bad[0]
        more = f" ({len(bad)} bad files: {cap_list(b['file'] for b in bad)})" if len(bad) > 1 else ""
        raise DataError(f"{first['file']}: {first['reason']}; fix or remove it, or set data.on_bad_files: "
                        f"skip to leave bad files out{more}")
    df = pd.DataFrame(rows, columns=[IMAGE_COLUMN, PATH_COLUMN, target, *STAT_COLUMNS])
    _check_classes(path, df, target, bad)
    if report is not None:
        report.update({"source": str(path), "format": "images", "files": len(df),
                       "classes": {str(k): int(v) for k, v in df[target].value_counts(sort=False).items()},
                       "image_formats": formats, "bad_files": bad, "skipped_files": bad})
    return df


def _check_classes(path: Path, df: pd.DataFrame, target: str, bad: list[dict[str, str]]) -> None:
    if df.empty:
        raise DataError(f"{path}: no readable image ({len(bad)} bad files, e.g. "
                        f"{bad[0]['file'] if bad else 'none'}); allowed formats: {', '.join(IMAGE_SUFFIXES)}")
    if df[target].nunique() < 2:
        raise DataError(f"{path}: only one class ({df[target].iloc[0]!r}); image classification needs at least "
                        "two (one sub-folder per class, or two labels in the table)")


def _format_of(raw: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as img:
        return str(img.format or "unknown").lower()


def _visible(parts: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def visible_files(folder: Path, root: Path | None = None) -> list[Path]:
    """The files below ``folder`` in path order, leaving out hidden ones (``.x``, ``__MACOSX``) below ``root``."""
    base = folder if root is None else root
    return sorted(f for f in folder.rglob("*") if f.is_file() and _visible(f.relative_to(base).parts))


def _folder_items(root: Path, target: str, encoding: str) -> list[_Item]:
    tables = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in _TABLES]
    classes = sorted(d for d in root.iterdir() if d.is_dir() and _visible((d.name,)))
    if not classes and len(tables) == 1:  # a folder holding a table of paths
        return _table_items(tables[0], target, encoding, opener=lambda p: (root / p).read_bytes())
    if not classes:
        raise DataError(f"{root}: has no class sub-folders; put each class's images in a folder named after "
                        "the class (e.g. parts/bolt/1.jpg, parts/nut/2.png), or point data.source at a table "
                        "of image paths and labels")
    items: list[_Item] = []
    for folder in classes:
        files = visible_files(folder, root)
        if not files:
            raise DataError(f"{folder}: class folder '{folder.name}' is empty; add its images or remove it")
        items += [_Item(str(f.relative_to(root)), folder.name, f.read_bytes) for f in files]
    return items


def _zip_items(path: Path, target: str, encoding: str) -> list[_Item]:
    archive = zipfile.ZipFile(path)
    names = [n for n in archive.namelist() if not n.endswith("/") and _visible(PurePosixPath(n).parts)]
    tables = [n for n in names if PurePosixPath(n).suffix.lower() in _TABLES]
    if len(tables) == 1:
        base = PurePosixPath(tables[0]).parent
        inside = {PurePosixPath(n) for n in names}

        def opener(p: str) -> bytes:
            member = base / p
            if member not in inside:
                raise OSError(f"{p} is not in {path.name}")
            return archive.read(str(member))

        return _table_items(path, target, encoding, opener=opener, data=archive.read(tables[0]),
                            name=f"{path.name}:{tables[0]}")
    parts = [PurePosixPath(n).parts for n in names]
    strip = 1 if parts and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1 else 0
    by_class: dict[str, list[str]] = {}
    for n, p in zip(names, parts, strict=True):
        if len(p) - strip < 2:
            continue  # a loose file beside the class folders
        by_class.setdefault(p[strip], []).append(n)
    if len(by_class) == 0:
        raise DataError(f"{path}: holds no class folders and no table of image paths")
    for folder in {p[strip] for p in parts if len(p) - strip >= 2} - set(by_class):
        raise DataError(f"{path}: class folder '{folder}' is empty")
    return [_Item(f"{path.name}:{n}", label, _reader(archive.read, n))
            for label in sorted(by_class) for n in sorted(by_class[label])]


def _reader(read: Callable[[str], bytes], name: str) -> Callable[[], bytes]:
    return lambda: read(name)


def _table_items(path: Path, target: str, encoding: str, *, opener: Callable[[str], bytes],
                 data: bytes | None = None, name: str | None = None) -> list[_Item]:
    from .sources import read_table

    where = name or str(path)
    if data is not None:  # a table inside a zip: read from memory through the same readers
        import tempfile

        suffix = PurePosixPath(where).suffix
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / f"table{suffix}"
            f.write_bytes(data)
            df, _ = read_table(str(f), encoding=encoding)
    else:
        df, _ = read_table(str(path), encoding=encoding)
    if target not in df.columns:
        raise DataError(f"data.target: column '{target}' is not in {where}; columns: {cap_list(df.columns)}")
    column = path_column(df, target, where)
    df = df[df[target].notna()]
    return [_Item(str(p), label, _reader(opener, str(p)))
            for p, label in sorted(zip(df[column], df[target], strict=True), key=lambda r: (str(r[1]), str(r[0])))]


def image_paths(values: Iterable[Any]) -> tuple[int, int]:
    """(values ending in an image suffix, values) of a column or a list of file names: more than half
    make a column of image paths (``path_column``, and the task a left-out ``task:`` is inferred as)."""
    names = [str(v).lower() for v in values]
    return sum(n.endswith(IMAGE_SUFFIXES) for n in names), len(names)


def mostly_images(hits: int, total: int) -> bool:
    return total > 0 and hits * 2 > total


def path_column(df: pd.DataFrame, target: str, where: str) -> str:
    """The column of image paths: the one whose values end in an image suffix (or a usual name)."""
    found = [c for c in df.columns if c != target and df[c].dtype == object
             and mostly_images(*image_paths(df[c].dropna()))]
    if len(found) != 1:
        named = [c for c in df.columns if str(c).lower() in _PATH_NAMES and c != target]
        found = named if len(named) == 1 else found
    if len(found) != 1:
        raise DataError(f"{where}: cannot tell which column holds the image paths ({cap_list(df.columns)}); "
                        f"name it one of {', '.join(_PATH_NAMES)}")
    return str(found[0])


def iter_pixels(images: Any, *, size: int) -> Iterator[np.ndarray]:
    """Each base64 image of ``images`` as a ``size x size x 3`` uint8 array (the served preprocessing)."""
    for text in images:
        yield resize(decode_image(decode_base64(str(text))), size)


def resize(img: Image.Image, size: int) -> np.ndarray:
    """The network's input: the image squashed to ``size x size`` (bilinear, antialiased), uint8 HWC."""
    from PIL import Image

    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None), dtype=np.uint8)
