"""Labelled image folders (``root/<class>/*.png|jpg``) and image files."""

from __future__ import annotations

import os
from pathlib import Path

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


def load_image(path: str) -> np.ndarray:
    """An image file as RGB float32 [3, H, W] in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except Exception as exc:
        raise SynthcalibError(f"cannot read image '{path}': {exc}") from None
    return arr.transpose(2, 0, 1) * np.float32(1 / 255)
