"""``array:PATH.npy``: images saved as a NumPy array, e.g. by another data-free method."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import SynthcalibError
from ..rng import TAG_ORDER, item_rng
from .base import Source, SourceContext, take_options


class ArraySource(Source):
    """Float [N, 3, H, W] (or uint8 [N, H, W, 3]) images; item i is image ``perm[i mod N]`` of a
    seeded permutation, so each seed walks the whole file before repeating."""

    scheme = "array"
    conditional = False

    def __init__(self, spec: str, images: np.ndarray, num_classes: int) -> None:
        super().__init__(spec)
        self.images = images
        self.num_classes = num_classes
        self.image_size = tuple(images.shape[2:])
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def iter_images(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        seed: int,
        size: tuple[int, int] | None = None,
        occurrences: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        n = len(self.images)
        for start in range(0, len(indices), self.batch_size):
            rows = []
            for i in indices[start : start + self.batch_size]:
                epoch, k = divmod(int(i), n)
                if (seed, epoch) not in self._orders:
                    self._orders[(seed, epoch)] = item_rng(seed, TAG_ORDER + 1, epoch).permutation(n)
                rows.append(self._orders[(seed, epoch)][k])
            yield np.asarray(self.images[rows], dtype=np.float32)


def make(arg: str, options: dict[str, Any], context: SourceContext) -> ArraySource:
    spec = f"array:{arg}"
    opts = take_options(spec, options, {"num_classes": None})
    try:
        data = np.load(arg, mmap_mode="r")
    except FileNotFoundError:
        raise SynthcalibError(f"source '{spec}': file '{arg}' does not exist") from None
    except Exception as exc:
        raise SynthcalibError(f"source '{spec}': cannot read '{arg}' as a .npy array: {exc}") from None
    if data.ndim == 4 and data.shape[-1] == 3 and data.dtype == np.uint8:
        data = np.ascontiguousarray(data.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    if data.ndim != 4 or data.shape[1] != 3 or len(data) == 0:
        raise SynthcalibError(
            f"source '{spec}': expected images float [N, 3, H, W] in [0, 1] or uint8 [N, H, W, 3], got {data.dtype}{list(data.shape)}"
        )
    return ArraySource(spec, data, int(opts["num_classes"] or context.num_classes or 1))
