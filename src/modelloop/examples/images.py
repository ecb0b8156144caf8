"""The ``images`` example: a seeded generator of small images of parts in a folder per class.

Four classes, drawn with Pillow on a noisy background of a random colour: ``bolt`` (a long bar with a
hexagonal head), ``nut`` (a hexagon with a hole), ``washer`` (a ring) and ``spring`` (a zigzag). Each
image gets a random colour shift, scale, position and rotation, and pixel noise; a few are saved as JPEG
(with an EXIF orientation tag), grayscale PNG or WebP, so the example exercises the readers as real data
would. The same seed always writes the same files::

    python -m modelloop.examples.images out/ --per-class 60 --size 64
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLASSES", "draw_part", "generate_images"]

CLASSES = ("bolt", "nut", "spring", "washer")


def _hexagon(cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(turn + k * math.pi / 3), cy + r * math.sin(turn + k * math.pi / 3)) for k in range(6)]


def draw_part(kind: str, size: int, rng: np.random.Generator) -> Any:
    """One RGB image of ``kind`` (a PIL image of ``size x size``)."""
    from PIL import Image, ImageDraw

    big = size * 4  # drawn large, then shrunk: smooth edges
    bg = tuple(int(v) for v in rng.integers(40, 215, 3))
    fg = tuple(int(np.clip(255 - v + rng.integers(-60, 60), 0, 255)) for v in bg)
    img = Image.new("RGB", (big, big), bg)
    d = ImageDraw.Draw(img)
    c = big / 2 + rng.uniform(-0.1, 0.1, 2) * big
    r = big * rng.uniform(0.22, 0.34)
    w = max(2, int(big * 0.05))
    if kind == "bolt":
        d.rectangle([c[0] - r * 0.18, c[1] - r * 0.2, c[0] + r * 0.18, c[1] + r * 1.2], fill=fg)
        d.polygon(_hexagon(c[0], c[1] - r * 0.45, r * 0.45, 0.0), fill=fg)
    elif kind == "nut":
        d.polygon(_hexagon(c[0], c[1], r, rng.uniform(0, math.pi)), fill=fg)
        d.ellipse([c[0] - r * 0.45, c[1] - r * 0.45, c[0] + r * 0.45, c[1] + r * 0.45], fill=bg)
    elif kind == "washer":
        d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], outline=fg, width=int(r * 0.45))
    else:  # spring: a zigzag
        turns = int(rng.integers(4, 7))
        ys = np.linspace(c[1] - r, c[1] + r, 2 * turns + 1)
        pts = [(c[0] + (r * 0.6 if k % 2 else -r * 0.6), float(y)) for k, y in enumerate(ys)]
        d.line(pts, fill=fg, width=w)
    img = img.rotate(float(rng.uniform(-180, 180)), resample=Image.Resampling.BILINEAR, fillcolor=bg)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.float64) * rng.uniform(0.8, 1.2) + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _encode(img: Any, rng: np.random.Generator) -> tuple[bytes, str]:
    """Mostly PNG; some JPEG with an EXIF orientation (stored rotated), grayscale PNG and WebP."""
    from PIL import Image

    buf = io.BytesIO()
    roll = rng.random()
    if roll < 0.15:  # stored turned by 90 degrees, with the tag that turns it back
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 CW to display
        img.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=92, exif=exif)
        return buf.getvalue(), ".jpg"
    if roll < 0.25:
        img.convert("L").save(buf, "PNG")
        return buf.getvalue(), ".png"
    if roll < 0.32:
        img.save(buf, "WEBP", quality=90)
        return buf.getvalue(), ".webp"
    img.save(buf, "PNG")
    return buf.getvalue(), ".png"


def generate_images(root: str | Path, *, per_class: int = 60, size: int = 64, seed: int = 0,
                    classes: tuple[str, ...] = CLASSES) -> dict[str, int]:
    """Write ``root/<class>/<class>_NNNN.<ext>`` for each class; returns the count per class."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    counts = {}
    for kind in classes:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            data, ext = _encode(draw_part(kind, size, rng), rng)
            (folder / f"{kind}_{i:04d}{ext}").write_bytes(data)
        counts[kind] = per_class
    return counts


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(generate_images(a.out, per_class=a.per_class, size=a.size, seed=a.seed))
