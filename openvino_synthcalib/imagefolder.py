"""Labelled image folders (``root/<class>/*.png|jpg``) and image files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SynthcalibError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm")


class ImageFolder:
    """Class folders in sorted order; files sorted by name within each class."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise SynthcalibError(f"image folder '{self.root}' does not exist")
        if not self.root.is_dir():
            raise SynthcalibError(f"image folder '{self.root}' is not a directory: expected root/<class>/*.jpg")
        classes, files = [], []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            found = sorted(
                f.name for f in os.scandir(entry.path) if f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES)
            )
            if found:
                classes.append(entry.name)
                files.append([os.path.join(entry.path, name) for name in found])
        if not classes:
            raise SynthcalibError(
                f"image folder '{self.root}' has no class folders with images: expected root/<class>/*.png|jpg"
            )
        self.classes: tuple[str, ...] = tuple(classes)
        self.files: list[list[str]] = files

    def __len__(self) -> int:
        return sum(len(f) for f in self.files)

    def samples(self) -> list[tuple[str, int]]:
        """Every (path, class index), class by class."""
        return [(path, c) for c, paths in enumerate(self.files) for path in paths]


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as RGB float32 [3, H, W] in [0, 1], whatever its mode (8/16-bit, grey, palette, float)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            arr = _rgb01(im)
    except SynthcalibError:
        raise
    except Exception as exc:
        raise SynthcalibError(f"cannot read image '{path}': {exc}") from None
    if not np.isfinite(arr).all():
        raise SynthcalibError(f"image '{path}' contains NaN or inf values")
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _rgb01(im: Any) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]. ``convert("RGB")`` clips 16-bit and float modes to 255, hence
    the modes with wider values are scaled here first."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        x = np.asarray(im, dtype=np.float32)
        if mode == "F":
            top = float(x.max()) if x.size else 1.0
            # float images carry no declared range: [0, 1], 8-bit or 16-bit values, by their maximum
            scale = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
        else:
            scale = 65535.0
        grey = np.clip(x / np.float32(scale), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.float32) * np.float32(1 / 255)
