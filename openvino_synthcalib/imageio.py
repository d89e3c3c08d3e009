"""Writing images: per-class PNG files and a preview grid."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .defaults import DEFAULTS


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Canonical float [N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3]."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def png_bytes(image_hwc: np.ndarray) -> bytes:
    """A uint8 [H, W, 3] image as PNG file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image_hwc).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def save_png(image_hwc: np.ndarray, path: str | os.PathLike[str]) -> None:
    Path(path).write_bytes(png_bytes(image_hwc))


def safe_name(name: str) -> str:
    """A class name usable as a folder name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "class"


class SampleFile(NamedTuple):
    """One file of a sample set: relative path, PNG bytes, class label (``None`` for the grid)."""

    path: str
    data: bytes
    label: int | None


def sample_pngs(
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    names: Sequence[str],
    grid_per_class: int = DEFAULTS["grid_per_class"],
) -> Iterator[SampleFile]:
    """The files ``synthcalib generate`` writes for a stream's canonical ``(images, labels)`` batches:
    ``<class>/<index:06d>.png`` per item in stream order, then ``grid.png`` (one row per class,
    its first ``grid_per_class`` images)."""
    per_class: list[list[np.ndarray]] = [[] for _ in names]
    index = 0
    for images, labels in batches:
        for img, label in zip(to_uint8(images), labels):
            label = int(label)
            yield SampleFile(f"{safe_name(names[label])}/{index:06d}.png", png_bytes(img), label)
            if len(per_class[label]) < grid_per_class:
                per_class[label].append(img)
            index += 1
    yield SampleFile("grid.png", png_bytes(grid([np.stack(r) for r in per_class if r])), None)


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


def ensure_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    from .errors import SynthcalibError

    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthcalibError(f"{what} '{p}' cannot be created: {exc.strerror}") from None
    if not os.access(p, os.W_OK):
        raise SynthcalibError(f"{what} '{p}' is not writable")
    return p
