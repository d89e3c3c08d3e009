"""Writing images: uint8 conversion, PNG files and bytes, and a preview grid."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .files import write_bytes


def to_uint8(
    images: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0), channels_last: bool = True
) -> np.ndarray:
    """Float images [N, 3, H, W] in ``value_range`` -> rounded uint8, [N, H, W, 3] (or NCHW)."""
    lo, hi = value_range
    x = (np.asarray(images, dtype=np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    out = (np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)
    return out.transpose(0, 2, 3, 1) if channels_last else out


def png_bytes(image_hwc: np.ndarray) -> bytes:
    """One uint8 [H, W, 3] image as PNG file bytes (always the same bytes for the same pixels)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_hwc).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_png(image_hwc: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write one uint8 [H, W, 3] image as a PNG file, atomically."""
    write_bytes(path, png_bytes(image_hwc), "image")


def grid(images_by_class: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """One row per class: uint8 [H', W', 3] from lists of uint8 [n, H, W, 3] (rows may be short)."""
    rows = len(images_by_class)
    cols = max((len(r) for r in images_by_class), default=0)
    if rows == 0 or cols == 0:
        return np.zeros((1, 1, 3), np.uint8)
    h, w = next(r for r in images_by_class if len(r)).shape[1:3]
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(images_by_class):
        for c, img in enumerate(row):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + h, x : x + w] = img
    return out


def safe_name(name: str) -> str:
    """A class name usable as a folder name (what ``synthcalib generate`` writes per class)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".") or "class"


def generated_files(stream: Any) -> Iterator[tuple[str, np.ndarray, int]]:
    """``(relative path, uint8 [H, W, 3] image, label)`` of every item of a stream, in order: what
    ``synthcalib generate`` writes (``<class>/<index:06d>.png``; encode with :func:`png_bytes`)."""
    names = stream.source.names
    index = 0
    for images, labels in stream.batches():
        for img, label in zip(to_uint8(images), labels):
            yield f"{safe_name(names[label])}/{index:06d}.png", img, int(label)
            index += 1


def class_grid(items: Iterable[tuple[np.ndarray, int]], per_class: int) -> np.ndarray:
    """The preview grid of ``(image, label)`` pairs: up to ``per_class`` images in a row per class."""
    rows: dict[int, list[np.ndarray]] = {}
    for img, label in items:
        row = rows.setdefault(label, [])
        if len(row) < per_class:
            row.append(img)
    return grid([np.stack(rows[c]) for c in sorted(rows)])
