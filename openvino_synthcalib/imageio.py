"""Writing images: uint8 conversion, PNG files and bytes, the preview grid, and the sample set
``synthcalib generate`` writes (also what ``synthcalib serve`` zips)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from .defaults import DEFAULTS
from .files import class_folder_names, safe_filename, write_bytes
from .imagefolder import GRID_FILE


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

    buffer = io.BytesIO()
    Image.fromarray(image_hwc).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def save_png(image_hwc: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write one uint8 [H, W, 3] image as a PNG file, atomically."""
    write_bytes(path, png_bytes(image_hwc), "image")


def safe_name(name: str) -> str:
    """A name usable as a file or folder name on every system (see :func:`.files.safe_filename`)."""
    return safe_filename(name, "class")


class SampleFile(NamedTuple):
    """One file of a sample set: relative path, PNG bytes, class label (``None`` for the grid)."""

    path: str
    data: bytes
    label: int | None


def sample_pngs(
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    names: Sequence[str],
    grid_per_class: int = DEFAULTS["grid_per_class"],
    ids: Sequence[str] | None = None,
) -> Iterator[SampleFile]:
    """The files ``synthcalib generate`` writes for a stream's canonical ``(images, labels)`` batches:
    ``<class>/<index:06d>.png`` per item in stream order, then ``grid.png`` (one row per class,
    its first ``grid_per_class`` images). Memory holds the grid's images only.

    Class folders are named by :func:`.files.class_folder_names` (the class id, WordNet id for
    ImageNet, from ``ids`` where the source has them, else the class index, then the name): unique on
    case-insensitive file systems and read back by ``images:`` without a class list."""
    folders = class_folder_names(names, ids)
    per_class: list[list[np.ndarray]] = [[] for _ in names]
    index = 0
    for images, labels in batches:
        for img, label in zip(to_uint8(images), labels):
            label = int(label)
            yield SampleFile(f"{folders[label]}/{index:06d}.png", png_bytes(img), label)
            if len(per_class[label]) < grid_per_class:
                per_class[label].append(img)
            index += 1
    yield SampleFile(GRID_FILE, png_bytes(grid([np.stack(r) for r in per_class if r])), None)


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
