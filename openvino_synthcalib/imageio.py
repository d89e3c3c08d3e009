"""Writing images: per-class PNG files and a preview grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Canonical float [N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3]."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def save_png(image_hwc: np.ndarray, path: str | os.PathLike[str]) -> None:
    from PIL import Image

    Image.fromarray(image_hwc).save(path, format="PNG", optimize=False)


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
