"""``images:DIR``: real images from a labelled folder, class-balanced and deterministic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..imagefolder import ImageFolder, load_image
from ..rng import TAG_ORDER, item_rng
from ..transforms import resize
from .base import Source, SourceContext, parse_size, take_options


class ImageFolderSource(Source):
    """The k-th item of class c is file ``perm_c[k]`` of a seeded permutation of that class."""

    scheme = "images"
    conditional = True
    real = True

    def __init__(self, spec: str, folder: ImageFolder, image_size: tuple[int, int] | None) -> None:
        super().__init__(spec)
        self.folder = folder
        self.num_classes = len(folder.classes)
        self.class_names = folder.classes
        self.image_size = image_size or load_image(folder.files[0][0]).shape[1:]
        self._orders: dict[tuple[int, int, int], np.ndarray] = {}

    def _file(self, seed: int, label: int, occurrence: int) -> str:
        files = self.folder.files[label]
        epoch, k = divmod(occurrence, len(files))
        key = (seed, label, epoch)
        if key not in self._orders:
            if len(self._orders) > 4 * self.num_classes:
                self._orders.clear()
            self._orders[key] = item_rng(seed, TAG_ORDER, label * 1_000_003 + epoch).permutation(len(files))
        return files[self._orders[key][k]]

    def iter_images(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        seed: int,
        size: tuple[int, int] | None = None,
        occurrences: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        if occurrences is None:
            occurrences = np.asarray(indices) // self.num_classes
        for start in range(0, len(indices), self.batch_size):
            batch = [
                resize(load_image(self._file(seed, int(c), int(k)))[None], self.image_size)[0]
                for c, k in zip(labels[start : start + self.batch_size], occurrences[start : start + self.batch_size])
            ]
            yield np.stack(batch)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": str(self.folder.root), "files": len(self.folder)}


def make(arg: str, options: dict[str, Any], context: SourceContext) -> ImageFolderSource:
    spec = f"images:{arg}"
    opts = take_options(spec, options, {"size": None})
    size = parse_size(opts["size"], f"{spec}: size") if opts["size"] is not None else None
    return ImageFolderSource(spec, ImageFolder(arg), size)
