"""``array:PATH.npy``: images saved as a NumPy array, e.g. by another data-free method."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import SynthcalibError
from ..rng import TAG_ORDER, item_rng
from .base import Items, Source, SourceContext, take_options

#: Value range assumed for each dtype when the spec does not declare one (``?range=low,high``).
DEFAULT_RANGES = {"u1": (0.0, 255.0), "u2": (0.0, 65535.0), "f": (0.0, 1.0)}
_CHUNK = 4096


class ArraySource(Source):
    """Images [N, 3, H, W] or [N, H, W, 3] of any value range; item i is image ``perm[i mod N]`` of a
    seeded permutation, so each seed walks the whole file before repeating."""

    scheme = "array"
    conditional = False

    def __init__(
        self, spec: str, images: np.ndarray, num_classes: int, layout: str, value_range: tuple[float, float]
    ) -> None:
        super().__init__(spec)
        self.arrays = images
        self.num_classes = num_classes
        self.layout = layout
        self.value_range = value_range
        self.image_size = tuple(images.shape[2:4] if layout == "NCHW" else images.shape[1:3])
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def _canonical(self, rows: np.ndarray) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float32)
        if self.layout == "NHWC":
            x = x.transpose(0, 3, 1, 2)
        lo, hi = self.value_range
        return np.ascontiguousarray(np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0))

    def images(self, items: Items) -> Iterator[np.ndarray]:
        n, seed, indices = len(self.arrays), items.seed, items.indices
        for start in range(0, len(indices), self.batch_size):
            rows = []
            for i in indices[start : start + self.batch_size]:
                epoch, k = divmod(int(i), n)
                if (seed, epoch) not in self._orders:
                    if len(self._orders) > 8:
                        self._orders.clear()
                    self._orders[(seed, epoch)] = item_rng(seed, TAG_ORDER + 1, epoch).permutation(n)
                rows.append(self._orders[(seed, epoch)][k])
            yield self._canonical(self.arrays[rows])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layout": self.layout, "value_range": list(self.value_range)}


def _span(data: np.ndarray) -> tuple[float, float]:
    """(min, max) of an array read in chunks (it may be a memory map of a large file)."""
    lo, hi = np.inf, -np.inf
    for start in range(0, len(data), _CHUNK):
        chunk = np.asarray(data[start : start + _CHUNK])
        if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
            return float("nan"), float("nan")
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return lo, hi


def make(arg: str, options: dict[str, Any], context: SourceContext) -> ArraySource:
    spec = f"array:{arg}"
    opts = take_options(spec, options, {"num_classes": None, "range": None}, {"num_classes": "int>0", "range": "range"})
    try:
        data = np.load(arg, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise SynthcalibError(f"source '{spec}': file '{arg}' does not exist") from None
    except Exception as exc:
        raise SynthcalibError(f"source '{spec}': cannot read '{arg}' as a .npy array: {exc}") from None
    shape = f"{data.dtype}{list(data.shape)}"
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "uif" or data.ndim != 4 or len(data) == 0:
        raise SynthcalibError(
            f"source '{spec}': expected images [N, 3, H, W] or [N, H, W, 3] (uint8, uint16 or float), got {shape}"
        )
    if data.shape[1] == 3:
        layout = "NCHW"
    elif data.shape[3] == 3:
        layout = "NHWC"
    else:
        raise SynthcalibError(f"source '{spec}': expected 3 colour channels in dim 1 or 3, got {shape}")
    declared = opts["range"]
    key = data.dtype.str[1:] if data.dtype.kind == "u" else data.dtype.kind
    value_range = declared or DEFAULT_RANGES.get(key)
    if value_range is None:
        raise SynthcalibError(f"source '{spec}': {data.dtype} images need their value range: add ?range=low,high")
    lo, hi = _span(data)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SynthcalibError(f"source '{spec}': the array contains NaN or inf values")
    tol = 1e-3 * (value_range[1] - value_range[0])
    if lo < value_range[0] - tol or hi > value_range[1] + tol:
        how = "declared" if declared else f"assumed for {data.dtype}"
        raise SynthcalibError(
            f"source '{spec}': values span [{lo:.4g}, {hi:.4g}], outside the {how} range "
            f"[{value_range[0]:g}, {value_range[1]:g}]: declare the range, e.g. ?range=0,255"
        )
    num_classes = int(opts["num_classes"] or context.num_classes or 1)
    return ArraySource(spec, data, num_classes, layout, value_range)
